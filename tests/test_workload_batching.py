"""workload/batching.py, the SUT worker both the vision SUT and the LLM SUT use: real threads,
no LoadGen (the module is standard library only)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest

from pytest_mig.workload.batching import BatchWorker


class Recorder(BatchWorker):
    """Holds its first batch until `gate` opens, so what is issued meanwhile queues up."""

    def __init__(self, max_batch: int, rest_s: float = 0.0) -> None:
        self.batches: list[tuple[list[int], bool]] = []
        self.gate, self.rest_s = threading.Event(), rest_s
        super().__init__(max_batch, "test-worker")

    def _run(self, batch: list, draining: bool) -> None:
        self.batches.append((list(batch), draining))
        self.gate.wait(10)
        if self.rest_s:
            self.rest(self.rest_s)


def wait_for(predicate, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "worker did not get there in time"
        time.sleep(0.01)


def test_queued_samples_run_in_batches_of_at_most_max_batch_in_order():
    worker = Recorder(max_batch=3)
    worker.issue([0])
    wait_for(lambda: worker.batches)  # the worker holds [0]
    worker.issue(range(1, 8))
    worker.gate.set()
    worker.stop()  # runs what is queued, then ends
    assert worker.batches == [([0], False), ([1, 2, 3], False), ([4, 5, 6], False), ([7], False)]
    assert not worker._worker.is_alive()


def test_drain_takes_everything_queued_at_once():
    worker = Recorder(max_batch=2)
    worker.issue([0])
    wait_for(lambda: worker.batches)
    worker.issue(range(1, 6))
    worker.drain()
    worker.gate.set()
    worker.stop()
    assert worker.batches == [([0], False), ([1, 2, 3, 4, 5], True)]


def test_stop_ends_a_pacing_rest_at_once():
    worker = Recorder(max_batch=4, rest_s=60.0)
    worker.gate.set()
    worker.issue([0, 1])
    wait_for(lambda: worker.batches)
    t0 = time.monotonic()
    worker.stop()
    assert time.monotonic() - t0 < 5.0
    assert worker.batches == [([0, 1], False)]


def test_a_failing_batch_ends_the_process_with_exit_1_and_its_traceback():
    program = textwrap.dedent("""
        import time
        from pytest_mig.workload.batching import BatchWorker

        class Broken(BatchWorker):
            def _run(self, batch, draining):
                raise RuntimeError("model blew up on " + repr(batch))

        Broken(4, "w").issue([7])
        time.sleep(30)
        print("not reached")
    """)
    proc = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert "RuntimeError: model blew up on [7]" in proc.stderr
    assert "not reached" not in proc.stdout


def test_chunk_queue_slices_batches_across_issued_chunks_in_order():
    from pytest_mig.workload.batching import ChunkQueue

    queue = ChunkQueue()
    queue.put([10, 11, 12], [0, 1, 2])
    queue.put([13, 14], [3, 4])
    assert len(queue) == 5
    first = queue.take(2)
    assert (first.ids, first.indices, len(first)) == ([10, 11], [0, 1], 2)
    second = queue.take(2)  # the end of one chunk and the start of the next
    assert (second.ids, second.indices) == ([12, 13], [2, 3])
    rest = queue.take(100)
    assert (rest.ids, rest.indices, len(queue)) == ([14], [4], 0)
    with pytest.raises(ValueError, match="3 response ids for 2 sample indices"):
        queue.put([1, 2, 3], [0, 1])


def test_a_worker_on_a_chunk_queue_gets_chunks():
    from pytest_mig.workload.batching import ChunkQueue

    class Chunks(BatchWorker):
        def __init__(self) -> None:
            self.seen: list[tuple[list[int], list[int]]] = []
            super().__init__(4, "chunk-worker", ChunkQueue())

        def _run(self, batch, draining):
            self.seen.append((batch.ids, batch.indices))

    worker = Chunks()
    worker.issue(list(range(100, 106)), list(range(6)))
    worker.stop()
    assert [i for ids, _ in worker.seen for i in ids] == list(range(100, 106))
    assert all(len(ids) <= 4 for ids, _ in worker.seen)


def test_in_flight_batches_are_settled_before_the_worker_ends():
    class Ahead(BatchWorker):
        def __init__(self) -> None:
            self.pending: list[list[int]] = []
            self.settled: list[list[int]] = []
            super().__init__(2, "ahead-worker")

        def _run(self, batch, draining):
            self.pending.append(batch)  # launched, left in flight

        def _settle(self):
            if not self.pending:
                return False
            self.settled.append(self.pending.pop(0))
            return True

    worker = Ahead()
    worker.issue(range(5))
    worker.stop()
    assert worker.settled == [[0, 1], [2, 3], [4]] and not worker.pending
