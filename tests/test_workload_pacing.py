"""A paced SUT (a background's --cpu-duty on the CPU) rests after each batch for its compute
time x (1/duty - 1): the compute is timed from before the batch is launched, since on the CPU
the launch is the compute (a plain predictor runs inside it)."""
from __future__ import annotations

import time

from pytest_mig.workload import sut as sut_mod


class Answers:
    """Stands in for LoadGen's completion call: records each batch's response ids."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def complete(self, ids, outputs) -> None:
        self.batches.append(list(ids))


def test_a_paced_cpu_sut_rests_its_duty_share_after_each_batch():
    compute_s = 0.05

    def predictor(indices):
        time.sleep(compute_s)  # the batch's compute, done inside launch on the CPU
        return [i for i in indices]

    batching = sut_mod.BatchingSUT(predictor, max_batch=2, duty=0.5)
    batching._responder = Answers()
    rests: list[float] = []
    batching.rest = rests.append  # the worker calls self.rest(seconds) after each batch
    batching.issue([10, 11, 12, 13], [0, 1, 2, 3])
    batching.stop()
    assert batching._responder.batches == [[10, 11], [12, 13]]
    # duty 0.5: rest = compute x (1/0.5 - 1) = compute; a compute timed after launch reads ~0
    assert len(rests) == 2 and all(r >= 0.8 * compute_s for r in rests), rests
