"""The shard planner (pytest_mig/plan/shard.py): every case in exactly one shard, layout
groups kept whole, LPT balance by measured durations, estimates from the run profile."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mig.errors import ConfigError
from pytest_mig.plan.shard import (ShardItem, ShardSpec, estimate_seconds, measured_durations,
                                   plan_shards, shard_items)
from pytest_mig.report.history import HistoryEntry, entry_from_record
from pytest_mig.types import PERFORMANCE, Case, RunProfile

PROFILE = RunProfile("smoke", min_duration_ms=1000, min_query_count=1, end_time_buffer_min_s=0.5)


def case(bench: str, scenario: str = "Offline", profile: str = "1g.10gb", mode=PERFORMANCE,
         background=("dlrm",)) -> Case:
    return Case(suite="s", benchmark=bench, scenario=scenario, profile=profile, mode=mode,
                gpu_model="A100-SXM4-80GB", background=background, background_spec="explicit",
                run_profile=PROFILE, accuracy_fraction=0.99, accuracy_metric="acc",
                accuracy_reference=1.0)


def items(spec: list[tuple[str | None, float]]) -> list[ShardItem]:
    return [ShardItem(f"t{n}", group, sec, True) for n, (group, sec) in enumerate(spec)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["A", "B", "C", "D", None]),
                          st.floats(0.0, 100.0)), max_size=40), st.integers(1, 7))
def test_every_case_in_exactly_one_shard_and_groups_whole(spec, count):
    its = items(spec)
    plan = plan_shards(its, count)
    flat = [n for part in plan.shards for n in part]
    assert sorted(flat) == sorted(i.nodeid for i in its)  # each once, none lost
    groups = {i.group for i in its if i.group}
    if len(groups) + sum(1 for i in its if i.group is None) >= count:
        for g in groups:  # enough groups: no layout split across shards
            holders = [k for k, part in enumerate(plan.shards)
                       if any(i.nodeid in part for i in its if i.group == g)]
            assert len(holders) == 1, (g, plan.shards)
    assert plan_shards(its, count).fingerprint == plan.fingerprint  # deterministic


def test_lpt_balance_by_measured_durations():
    # eight layouts, durations 8..1 (36 s) on three shards: largest first to the least loaded
    plan = plan_shards(items([(f"L{d}", float(d)) for d in range(8, 0, -1)]), 3)
    assert plan.loads == (13.0, 12.0, 11.0)
    assert plan.shards[0] == ("t0", "t5", "t6")  # 8 + 3 + 2
    # a naive round-robin of the same order would give 8+5+2=15 / 7+4+1=12 / 6+3=9
    # the same cases with other durations make another plan: the fingerprint shows it
    other = plan_shards(items([(f"L{d}", float(9 - d)) for d in range(8, 0, -1)]), 3)
    assert other.fingerprint != plan.fingerprint


def test_a_single_layout_is_split_evenly_only_when_shards_would_be_empty():
    plan = plan_shards(items([("A", 1.0)] * 6), 3)
    assert [len(p) for p in plan.shards] == [2, 2, 2]
    assert plan.shards[0] == ("t0", "t1")  # runs keep collection order
    plan = plan_shards(items([("A", 1.0)] * 10 + [("B", 1.0)]), 3)
    assert sorted(len(p) for p in plan.shards) == [1, 5, 5]
    plan = plan_shards(items([("A", 1.0)] * 2), 3)
    assert sorted(len(p) for p in plan.shards) == [0, 1, 1]
    plan = plan_shards(items([("A", 10.0), ("B", 1.0), ("B", 1.0)]), 2)
    assert plan.loads == (10.0, 2.0) and plan.groups == (("A",), ("B",))


def test_shard_keeps_layout_groups_in_collection_order():
    plan = plan_shards(items([("A", 1), ("B", 5), ("A", 1), ("C", 1), ("B", 5)]), 2)
    assert ("t1", "t4") in plan.shards
    assert ("t0", "t2", "t3") in plan.shards  # A's cases together, then C


def test_measured_durations_median_of_recent_runs_per_gpu_model():
    def entry(run: str, sec: float | None, gpu: str = "A100-SXM4-80GB") -> HistoryEntry:
        return HistoryEntry(case="c", run_id=run, timestamp="", outcome="passed",
                            gpu_model=gpu, duration_s=sec)
    got = measured_durations([entry("r0", 100.0)] + [entry(f"r{n}", float(n)) for n in
                                                       range(1, 6)] + [entry("x", None),
                                                                       entry("h", 7.0, "H100")])
    assert got == {("c", "A100-SXM4-80GB"): 3.0, ("c", "H100"): 7.0}  # r0 fell out of the last 5


def test_history_lines_carry_the_call_duration():
    rec = {"case": "c", "outcome": "passed", "duration_s": 12.5, "result": None}
    entry = entry_from_record(rec, "run", "simulated", "t")
    assert entry.duration_s == 12.5
    assert HistoryEntry.from_dict({"case": "c", "run_id": "r", "timestamp": "", "outcome": "p"}
                                  ).duration_s is None  # old lines still read


def test_estimates_follow_the_run_profile_and_scale_to_measured_cases():
    fast, slow = case("resnet50"), case("bert", background=())
    assert estimate_seconds(fast, 20.0) == pytest.approx(20 + 1.5 + 0.5)
    assert estimate_seconds(slow, 20.0) == pytest.approx(21.5)
    # resnet50 was measured at 2x its estimate: bert's estimate is scaled the same way
    got = shard_items([("a", fast, "L"), ("b", slow, "L"), ("c", None, None)],
                      {(fast.id, fast.gpu_model): 44.0}, 20.0)
    assert [(i.seconds, i.measured) for i in got] == [(44.0, True), (43.0, False), (1.0, False)]


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0"])
def test_bad_shard_spec_names_the_fix(text):
    with pytest.raises(ConfigError, match=r"--mig-shard=.*expected I/N"):
        ShardSpec.parse(text)


def test_shard_spec_names_itself():
    spec = ShardSpec.parse(" 2/3 ")
    assert (spec.index, spec.count, spec.name) == (2, 3, "shard-2-of-3")
