"""Ordering cases by MIG layout: grouped, otherwise stable; fewer reconfigurations."""
from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from pytest_mig.plan.ordering import case_layout, group_by_key, order_cases
from pytest_mig.types import Case, RunProfile

SMOKE = RunProfile(name="smoke", min_duration_ms=1000, min_query_count=1)


def case(bench: str, profile: str, background: int = 3, model: str = "A100-SXM4-80GB",
         skip: str | None = None) -> Case:
    return Case(suite="s", benchmark=bench, scenario="Offline", profile=profile,
                mode="performance", gpu_model=model,
                background=tuple(f"bg{i}" for i in range(background)), background_spec="x",
                run_profile=SMOKE, accuracy_fraction=0.99, accuracy_metric="acc",
                accuracy_reference=76.0, skip_reason=skip)


def reconfigurations(layouts: list[str | None]) -> int:
    """Layout changes a single GPU goes through running cases in this order."""
    count, current = 0, None
    for layout in layouts:
        if layout is not None and layout != current:
            count, current = count + 1, layout
    return count


def test_case_layout_is_the_planned_layout_of_the_gpu_model():
    assert case_layout(case("a", "1g.10gb", 3)) == "A100-SXM4-80GB: 4 x 1g.10gb"
    assert case_layout(case("a", "1g.10gb", 9)) == "A100-SXM4-80GB: 7 x 1g.10gb"
    assert case_layout(case("a", "2g.20gb", 3)) == "A100-SXM4-80GB: 3 x 2g.20gb"
    assert case_layout(case("a", "3g.40gb", 0)) == "A100-SXM4-80GB: 3g.40gb"
    assert case_layout(case("a", "1g.6gb", 6, model="A30-24GB")) == "A30-24GB: 4 x 1g.6gb"
    assert case_layout(case("a", "1g.10gb", 2, model="B200-NOPE")) == (
        "B200-NOPE: 1g.10gb + 2 background")
    assert case_layout(case("a", "1g.10gb", skip="no such GPU")) is None


def test_interleaved_cases_are_grouped_by_layout_in_first_seen_order():
    items = [case("resnet50", "1g.10gb"), case("resnet50", "2g.20gb"),
             case("bert", "1g.10gb"), case("bert", "2g.20gb"),
             case("rnnt", "1g.10gb", 9), case("rnnt", "2g.20gb", 9)]
    ordered = order_cases(items, lambda c: c)
    assert [(c.benchmark, c.profile, len(c.background)) for c in ordered] == [
        ("resnet50", "1g.10gb", 3), ("bert", "1g.10gb", 3), ("resnet50", "2g.20gb", 3),
        ("bert", "2g.20gb", 3), ("rnnt", "2g.20gb", 9),  # 9 backgrounds: still 3 x 2g.20gb
        ("rnnt", "1g.10gb", 9)]
    assert reconfigurations([case_layout(c) for c in items]) == 6
    assert reconfigurations([case_layout(c) for c in ordered]) == 3


def test_items_without_a_case_and_skipped_cases_keep_their_place():
    a1, b1, a2 = case("a", "1g.10gb"), case("b", "2g.20gb"), case("c", "1g.10gb")
    skipped = case("d", "1g.10gb", skip="unsupported")
    items = ["unit-test", a1, skipped, b1, a2, "other"]
    ordered = order_cases(items, lambda x: x if isinstance(x, Case) else None)
    assert ordered == ["unit-test", a1, a2, skipped, b1, "other"]


def test_group_by_key_is_stable():
    assert group_by_key([3, 1, 4, 1, 5, 9, 2, 6], lambda n: n % 3) == [3, 9, 6, 1, 4, 1, 5, 2]


@given(st.lists(st.sampled_from(["1g.10gb", "2g.20gb", "3g.40gb"]), max_size=12),
       st.lists(st.integers(min_value=0, max_value=8), min_size=12, max_size=12))
def test_grouping_reaches_the_optimum_and_keeps_every_item(profiles, backgrounds):
    items = [replace(case(f"b{i}", p), background=("x",) * backgrounds[i])
             for i, p in enumerate(profiles)]
    ordered = order_cases(items, lambda c: c)
    assert sorted(map(id, ordered)) == sorted(map(id, items))
    layouts = [case_layout(c) for c in ordered]
    assert reconfigurations(layouts) == len(set(layouts))
    for layout in set(layouts):  # inside a group the collection order is kept
        group = [c for c in ordered if case_layout(c) == layout]
        assert group == [c for c in items if case_layout(c) == layout]
