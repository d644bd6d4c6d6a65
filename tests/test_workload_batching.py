"""workload/batching.py, the SUT worker both the vision SUT and the LLM SUT use: real threads,
no LoadGen (the module is standard library only)."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

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
