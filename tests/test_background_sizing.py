"""Per-test backgrounds sized from the main's expected duration (orchestration/hetero_run.py)."""
from __future__ import annotations

from pytest_mig.orchestration.hetero_run import DurationEstimator, HeteroSettings, background_duration_ms
from pytest_mig.types import PERFORMANCE, Case, RunProfile

PROFILE = RunProfile("smoke", min_duration_ms=1000, min_query_count=64, end_time_buffer_min_s=0.5)


def case(scenario: str) -> Case:
    return Case(suite="s", benchmark="ssd-resnet34", scenario=scenario, profile="1g.10gb", mode=PERFORMANCE,
                gpu_model="A100-SXM4-80GB", background=("bert",), background_spec="datacenter",
                run_profile=PROFILE, accuracy_fraction=0.99, accuracy_metric="mAP", accuracy_reference=20.0)


def test_an_unseen_case_is_unknown_not_the_longest_other_one():
    est = DurationEstimator()
    assert est.expect(case("Offline")) is None
    est.observe(case("Offline"), 5.5)
    est.observe(case("Offline"), 4.0)  # the longest of a key is kept
    assert est.expect(case("Offline")) == 5.5
    # The Server main after Offline ones ran 11 s: 5.5 s would have sized its backgrounds to 8.1 s.
    assert est.expect(case("Server")) is None


def test_background_duration_from_the_expected_main_else_the_start_up_rule():
    base = dict(run_id="r", main_startup_s=20.0, main_timeout_s=900.0, lenient=False, isolated_baseline=False)
    known = HeteroSettings(**base, expected_main_s=10.0)
    assert background_duration_ms(case("Server"), known) == 10_000 * 1.2 + 500 + 1000
    unknown = HeteroSettings(**base)
    assert background_duration_ms(case("Server"), unknown) == 1500 + 20_000 + 500
