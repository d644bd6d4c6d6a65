"""workload/duration.py: a LoadGen test's expected duration from its settings and calibrated rates."""
from __future__ import annotations

import pytest

from pytest_mig.workload.duration import PlanPacer, Rates, plan_accuracy, plan_test

RATES = Rates(latency_s=0.01, batch_size=8, batch_s=0.04)  # 200 samples/s batched


def test_offline_runs_loadgens_sample_count_in_batches():
    # int(1.1 * 2 s * 100/s) = 220 samples: 27 full batches and one of 4
    plan = plan_test("Offline", "performance", {"min_duration_ms": 2000, "min_query_count": 1,
                                                "offline_expected_qps": 100.0}, RATES, 64)
    assert plan.samples == 220
    assert plan.test_s == pytest.approx(27 * 0.04 + 0.01 + 0.03 * 3 / 7)
    small = plan_test("Offline", "performance", {"min_duration_ms": 0, "min_query_count": 64,
                                                 "offline_expected_qps": 100.0}, RATES, 64)
    assert small.samples == 64 and small.test_s == pytest.approx(8 * 0.04)
    acc = plan_test("Offline", "accuracy", {"min_duration_ms": 2000, "min_query_count": 1,
                                            "offline_expected_qps": 100.0}, RATES, 16)
    assert acc.samples == 16 and acc.test_s == pytest.approx(0.08)


def test_server_is_the_larger_of_min_duration_and_min_queries_at_the_target():
    shown = {"min_duration_ms": 1000, "min_query_count": 662, "server_target_qps": 50.0,
             "server_target_latency_ms": 100.0}
    plan = plan_test("Server", "performance", shown, RATES, 64)
    assert plan.samples == 662 and plan.test_s == pytest.approx(662 / 50 + 0.04)
    long = plan_test("Server", "performance", {**shown, "min_duration_ms": 60000}, RATES, 64)
    assert long.samples == 3000 and long.test_s == pytest.approx(60.04)
    assert "662 queries at 50.0/s" in plan.describe()


def test_stream_scenarios():
    shown = {"min_duration_ms": 1000, "min_query_count": 64}
    assert plan_test("SingleStream", "performance", shown, RATES, 64).test_s == pytest.approx(1.0)
    slow = Rates(latency_s=0.05, batch_size=1, batch_s=0.05)
    assert plan_test("SingleStream", "performance", shown, slow, 64).test_s == pytest.approx(3.2)
    assert plan_test("SingleStream", "accuracy", shown, slow, 10).test_s == pytest.approx(0.5)
    multi = plan_test("MultiStream", "performance", {"min_duration_ms": 1000, "min_query_count": 662},
                      RATES, 64)
    assert multi.test_s == pytest.approx(662 * 0.04) and multi.samples == 662 * 8


def test_accuracy_scoring_at_the_batched_rate():
    assert plan_accuracy(64, RATES) == pytest.approx(64 * 0.04 / 8)


def test_pacer_rests_to_the_planned_end_never_below_the_duty():
    pacer = PlanPacer(duty=0.1, planned_test_s=10.0, samples=100)
    # ahead of plan: the first 10 of 100 samples took 0.05 s (from 0.95 s) -> 90 left for 9.95 s:
    # each batch of 10 may take 9.95 / 9 s, so rest that less its compute (the duty asks 0.45 s)
    assert pacer.rest_after(10, compute_s=0.05, now=1.0) == pytest.approx(9.95 / 9 - 0.05)
    # behind plan: the duty's rest only (compute x 9), never less
    assert pacer.rest_after(10, compute_s=0.5, now=9.5) == pytest.approx(4.5)
    # the last batch: nothing to pace
    late = PlanPacer(duty=0.1, planned_test_s=10.0, samples=10)
    assert late.rest_after(10, compute_s=0.05, now=0.05) == 0.0
