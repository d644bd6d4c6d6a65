"""How long a LoadGen test will take, from its settings and the SUT's calibrated rates: its plan.

Rules:
- Rates are the calibration's medians (measured in the child, at the precision it runs, on the
  samples it runs, with the load present while it calibrates; paced for a paced background).
- LoadGen's own arithmetic: Offline issues one query of max(min_query_count,
  int(1.1 x min_duration x expected_qps)) samples (accuracy mode: every QSL sample), run in
  batches; Server issues at target_qps until both min_duration and min_query_count are met;
  Single-/MultiStream issue one query after another until both are met. Accuracy mode issues
  each QSL sample once.
- Pure arithmetic (no torch, no LoadGen): the child prints the plan before its ready line and
  records it in harness_path.json; the plugin reads it there (its `expected` for the main).
- A paced background holds its plan with `PlanPacer`: after each batch it rests so the samples
  left end when planned, never computing more than its duty (it is planned at a rate below the
  one it calibrated, PACED_PLAN_LOAD, so it runs ahead and rests more rather than fall behind).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

OFFLINE_SLACK = 1.1  # LoadGen's kSlack on the Offline sample count
# A paced background is planned at this fraction of its calibrated (median, paced) rate: it
# calibrates while its neighbours start up, yet may run slower later; PlanPacer absorbs the rest.
PACED_PLAN_LOAD = 0.8
MULTISTREAM_SAMPLES = 8


@dataclass(frozen=True)
class Rates:
    """A SUT's calibrated timings (seconds), as run (paced or not)."""

    latency_s: float  # one-sample batch
    batch_size: int
    batch_s: float  # a full batch


@dataclass(frozen=True)
class Plan:
    test_s: float  # LoadGen test: ready line to the end of the timed phase
    samples: int  # samples the test will run
    how: str  # one line: where the figure comes from

    def describe(self) -> str:
        return f"LoadGen test ~{self.test_s:.1f} s ({self.how})"


def _batches(samples: int, rates: Rates) -> float:
    full, rest = divmod(samples, rates.batch_size)
    partial = rates.latency_s + (rates.batch_s - rates.latency_s) * (rest - 1) / max(1, rates.batch_size - 1)
    return full * rates.batch_s + (partial if rest else 0.0)


def plan_test(scenario: str, mode: str, settings: dict, rates: Rates, sample_count: int) -> Plan:
    """The test's expected duration. `settings`: the shown LoadGen settings (sut.test_settings)."""
    min_s = float(settings.get("min_duration_ms", 0)) / 1000.0
    queries = int(settings.get("min_query_count", 1))
    accuracy = mode == "accuracy"
    if scenario == "Offline":
        qps = float(settings["offline_expected_qps"])
        samples = sample_count if accuracy else max(queries, int(OFFLINE_SLACK * min_s * qps))
        return Plan(_batches(samples, rates), samples,
                    f"{samples} samples in batches of {rates.batch_size} at {rates.batch_s * 1e3:.1f} ms")
    if scenario == "Server":
        qps = float(settings["server_target_qps"])
        count = sample_count if accuracy else max(queries, math.ceil(min_s * qps))
        # The last query is answered about one batch after it arrives.
        tail = min(rates.batch_s, float(settings.get("server_target_latency_ms", 0)) / 1e3 or rates.batch_s)
        return Plan(count / qps + tail, count, f"{count} queries at {qps:.1f}/s")
    if scenario == "SingleStream":
        count = sample_count if accuracy else queries
        took = count * rates.latency_s
        return Plan(took if accuracy else max(min_s, took), count,
                    f"{count} queries of {rates.latency_s * 1e3:.1f} ms, min duration {min_s:g} s")
    count = math.ceil(sample_count / MULTISTREAM_SAMPLES) if accuracy else queries
    took = count * rates.batch_s
    return Plan(took if accuracy else max(min_s, took), count * MULTISTREAM_SAMPLES,
                f"{count} queries of {rates.batch_s * 1e3:.1f} ms, min duration {min_s:g} s")


def plan_accuracy(sample_count: int, rates: Rates) -> float:
    """Scoring in accuracy mode: the FP32 reference over every sample, estimated at the run's
    unpaced batched rate (the same model; exact where the run is fp32)."""
    return sample_count * rates.batch_s / max(1, rates.batch_size)


class PlanPacer:
    """Rest after each batch of a paced SUT so its Offline test ends when planned.

    The rest brings the samples left to the planned end, and is never below what the duty asks
    (compute x (1/duty - 1)): a SUT ahead of plan rests longer, one behind computes at its duty.
    """

    def __init__(self, duty: float, planned_test_s: float, samples: int) -> None:
        self.duty, self.planned_test_s, self.samples = duty, planned_test_s, samples
        self.done = 0
        self.started: float | None = None

    def rest_after(self, count: int, compute_s: float, now: float) -> float:
        if self.started is None:
            self.started = now - compute_s
        self.done += count
        floor = compute_s * (1.0 / self.duty - 1.0)
        left = self.samples - self.done
        if left <= 0:
            return 0.0  # the last batch: nothing left to pace
        time_left = self.started + self.planned_test_s - now
        return max(floor, time_left * count / left - compute_s)
