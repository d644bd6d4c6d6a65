"""--mig-rounds N: each main runs N times in its case under the same backgrounds (sized to
outlast all N); the headline is the median round's, with min, max and spread in the record,
history, the metrics files and the table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

CASE = "resnet50-Offline-1g.10gb-performance"


def test_three_rounds_of_the_main_in_one_case(mini):
    r = mini.run({}, "-k", "resnet50", "--mig-rounds=3")
    r.assert_outcomes(passed=1)
    rec = mini.records()[CASE]
    rounds = rec["rounds"]
    assert rounds["n"] == 3 and len(rounds["values"]) == 3
    assert rounds["min"] <= rounds["median"] <= rounds["max"]
    assert rec["result"]["value"] == rounds["median"]
    test_dir = Path(rec["paths"]["dir"])
    for log in ("main.log", "main-r2.log", "main-r3.log"):
        assert (test_dir / log).is_file(), log
    assert {"main", "main-r2", "main-r3"} <= set(rec["commands"])
    # the per-test backgrounds outlasted every round of the main
    assert all(h["healthy"] for h in rec["health"]), rec["health"]
    history = [json.loads(line) for line in (mini.reports / "history.jsonl").read_text()
               .splitlines()]
    assert (history[-1]["rounds"], history[-1]["value_min"]) == (3, rounds["min"])
    r.stdout.fnmatch_lines([f"{CASE} * passed VALID * samples/s (*-*) *"])


def test_rounds_must_be_a_small_whole_number(mini):
    r = mini.run({}, "--mig-rounds=0")
    assert r.ret == 4
    r.stderr.fnmatch_lines(["*--mig-rounds=0: must be a whole number from 1 to 50*"])
