"""Placement planning: what fits, where, and the arithmetic when it does not."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import LayoutError
from pytest_mig.gpu.planner import Placement, describe_request, plan, plan_case
from pytest_mig.gpu.profiles import get_model

A100 = get_model("A100-SXM4-80GB")
H100 = get_model("H100-SXM5-80GB")
A30 = get_model("A30-24GB")
LGIPP = Path(__file__).parent / "data" / "nvml" / "h100-sxm5-80gb" / "nvidia-smi_mig_lgipp.txt"


def starts(placements):
    return [(p.profile, p.start, p.size) for p in placements]


def test_seven_1g_fill_the_a100():
    assert starts(plan(A100, {"1g.10gb": 7})) == [("1g.10gb", k, 1) for k in range(7)]


def test_3g_plus_four_1g_fits_by_moving_the_3g_up():
    assert starts(plan(A100, {"1g.10gb": 4, "3g.40gb": 1})) == [
        ("3g.40gb", 4, 4), ("1g.10gb", 0, 1), ("1g.10gb", 1, 1), ("1g.10gb", 2, 1), ("1g.10gb", 3, 1)]


def test_3g_plus_five_1g_is_refused_with_the_arithmetic():
    with pytest.raises(LayoutError) as err:
        plan(A100, {"3g.40gb": 1, "1g.10gb": 5})
    assert str(err.value) == "3g.40gb + 5 x 1g.10gb needs 8 of 7 compute slices on A100-SXM4-80GB"


def test_memory_slices_and_instance_counts_are_checked():
    with pytest.raises(LayoutError) as err:
        plan(A100, {"3g.40gb": 1, "1g.20gb": 3})
    assert str(err.value) == "3g.40gb + 3 x 1g.20gb needs 10 of 8 memory slices on A100-SXM4-80GB"
    with pytest.raises(LayoutError) as err:
        plan(A100, {"1g.10gb+me": 2})
    assert str(err.value) == "2 x 1g.10gb+me: A100-SXM4-80GB allows at most 1 x 1g.10gb+me, not 2"
    with pytest.raises(LayoutError, match=r"A100-SXM4-80GB has no MIG profile '1g\.5gb' "
                                          r"\(did you mean '1g\.20gb'\?\); its profiles: 1g\.10gb, "):
        plan(A100, {"1g.5gb": 7})
    with pytest.raises(LayoutError, match="count of 1g.10gb must be a whole number"):
        plan(A100, {"1g.10gb": -1})


def test_a30_takes_four_1g():
    assert starts(plan(A30, {"1g.6gb": 4})) == [("1g.6gb", k, 1) for k in range(4)]
    with pytest.raises(LayoutError, match="allows at most 4 x 1g.6gb, not 5"):
        plan(A30, {"1g.6gb": 5})
    assert starts(plan(A30, {"2g.12gb": 1, "1g.6gb": 2})) == [
        ("2g.12gb", 0, 2), ("1g.6gb", 2, 1), ("1g.6gb", 3, 1)]


def test_h100_placements_match_the_capture():
    text = LGIPP.read_text()
    for name, count, line in (("1g.20gb", 4, "Profile ID 15 Placements: {0,2,4,6}:2"),
                              ("2g.20gb", 3, "Profile ID 14 Placements: {0,2,4}:2"),
                              ("3g.40gb", 2, "Profile ID  9 Placements: {0,4}:4"),
                              ("7g.80gb", 1, "Profile ID  0 Placement : {0}:8")):
        assert line in text
        got = plan(H100, {name: count})
        assert f"{{{','.join(str(p.start) for p in got)}}}:{got[0].size}" in line


def test_no_placement_around_occupied_slices_names_the_starts():
    taken = [Placement("1g.10gb", 0, 1), Placement("1g.10gb", 4, 1)]
    with pytest.raises(LayoutError) as err:
        plan(A100, {"3g.40gb": 1}, occupied=taken)
    assert str(err.value) == ("3g.40gb fits the slice counts of A100-SXM4-80GB but no placement "
                              "exists with memory slices [0, 4] taken: 3g.40gb starts at 0,4 (size 4)")
    assert starts(plan(A100, {"2g.20gb": 1}, occupied=taken)) == [("2g.20gb", 2, 2)]


def test_plan_case_fills_with_the_main_profile():
    assert plan_case(A100, "1g.10gb", 6) == {"1g.10gb": 7}
    assert plan_case(A100, "1g.10gb", 3) == {"1g.10gb": 4}
    assert plan_case(A100, "1g.10gb", 0) == {"1g.10gb": 1}
    assert plan_case(A100, "3g.40gb", 6) == {"3g.40gb": 2}
    assert plan_case(A100, "2g.20gb", 6) == {"2g.20gb": 3}
    assert plan_case(A100, "7g.80gb", 6) == {"7g.80gb": 1}
    assert plan_case(A30, "1g.6gb", 6) == {"1g.6gb": 4}
    with pytest.raises(LayoutError, match="no MIG profile '1g.10gb'"):
        plan_case(A30, "1g.10gb", 3)


def test_describe_request_lists_the_largest_first():
    assert describe_request(A100, {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1, "4g.40gb": 0}) == (
        "3g.40gb + 2g.20gb + 2 x 1g.10gb")
    assert describe_request(A100, {}) == "no instances"
    assert plan(A100, {}) == []
