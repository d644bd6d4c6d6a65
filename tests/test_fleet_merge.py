"""`pytest-mig merge`: three real shards of the smoke suite merged into one run (every case
once, history without duplicates on a second merge, one Allure folder), and each refusal."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fleet_helpers import SMOKE_CASES, shard_args, smoke_project
from pytest_mig.fleet.merge import MergeError, merge_runs
from pytest_mig.report.history import read_history
from pytest_mig.report.records import failure_record

CLI = [sys.executable, "-m", "pytest_mig.fleet.cli"]


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> list[Path]:
    """Three shards of the smoke suite, run at once as separate pytest processes."""
    root = smoke_project(tmp_path_factory.mktemp("fleet"))
    env = dict(os.environ, PYTEST_MIG_COMMIT="c0ffee")
    procs = [subprocess.Popen(shard_args(root, i, 3, root / f"node{i}"), cwd=root, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2, 3)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    runs = [d for i in (1, 2, 3) for d in (root / f"node{i}").iterdir()
            if d.is_dir() and d.name.endswith(f"-shard-{i}-of-3")]
    assert len(runs) == 3, outs
    return runs


def test_three_shards_merge_into_one_run(shards, tmp_path):
    # each shard names itself: folder, results.json header, shard.json
    for i, run in enumerate(shards, start=1):
        header = json.loads((run / "results.json").read_text())["run"]
        assert header["shard"] == {"index": i, "count": 3, "name": f"shard-{i}-of-3",
                                   "commit": "c0ffee"}
        info = json.loads((run / "shard.json").read_text())
        assert info["name"] == f"shard-{i}-of-3" and info["total_cases"] == SMOKE_CASES
        assert info["suites"] and list(info["suites"]) == ["fleet-smoke"]
    plans = {json.loads((r / "shard.json").read_text())["plan"] for r in shards}
    assert len(plans) == 1  # every shard computed the same split
    out = tmp_path / "reports" / "nightly-7"
    done = subprocess.run([*CLI, "merge", *map(str, shards), "-o", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{SMOKE_CASES} case(s)" in done.stdout
    merged = json.loads((out / "results.json").read_text())
    cases = [t["case"] for t in merged["tests"]]
    assert len(cases) == SMOKE_CASES == len(set(cases))  # every case exactly once
    assert {t["outcome"] for t in merged["tests"]} == {"passed"}
    assert {t["shard"] for t in merged["tests"]} == {f"shard-{i}-of-3" for i in (1, 2, 3)}
    assert merged["run"]["run_id"] == "nightly-7" and merged["run"]["simulated"] is True
    assert len(merged["run"]["merged_from"]) == 3
    for t in merged["tests"]:  # the case folders came along, paths point into the merge
        assert Path(t["paths"]["dir"]).parent == out and Path(t["paths"]["main_log"]).is_file()
    page = (out / "index.html").read_text()
    assert page.count('<tr class="passed"') == SMOKE_CASES and 'id="merged"' in page
    assert "merged from 3 run(s)" in page
    # history: one line per case under the merged run id, with the call duration ...
    hist = read_history(out.parent / "history.jsonl")
    assert sorted(e.case for e in hist) == sorted(cases)
    assert {e.run_id for e in hist} == {"nightly-7"} and all(e.duration_s for e in hist)
    # ... and a second merge of the same shards adds none
    again = subprocess.run([*CLI, "merge", *map(str, shards), "-o", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "history: 0 new line(s)" in again.stdout, again.stdout
    assert len(read_history(out.parent / "history.jsonl")) == SMOKE_CASES
    # Allure: every shard's results in one folder with one environment and one history id
    results = [json.loads(p.read_text()) for p in (out / "allure-results").glob("*-result.json")]
    assert len(results) == SMOKE_CASES
    assert len({r["historyId"] for r in results}) == SMOKE_CASES
    env = (out / "allure-results" / "environment.properties").read_text()
    assert "Run\\ id=nightly-7" in env and "Merged\\ shards=shard-1-of-3 (" in env


def test_next_nights_shards_balance_with_the_merged_history(shards, tmp_path):
    out = tmp_path / "reports" / "night-1"
    merge_runs(shards, out)
    hist = out.parent / "history.jsonl"
    # make one case very slow in the history: it must get a shard of its own
    lines = [json.loads(x) for x in hist.read_text().splitlines()]
    slow = lines[0]["case"]
    for line in lines:
        line["duration_s"] = 100.0 if line["case"] == slow else 1.0
    hist.write_text("".join(json.dumps(x) + "\n" for x in lines))
    root = shards[0].parents[1]
    done = subprocess.run(shard_args(root, 1, 3, tmp_path / "plan", "--collect-only",
                                     f"--mig-shard-durations={hist}"),
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    (run,) = [d for d in (tmp_path / "plan").iterdir() if d.name.endswith("-of-3")]
    info = json.loads((run / "shard.json").read_text())
    assert info["durations"]["measured"] == SMOKE_CASES
    alone = [part for part in info["shards"] if any(slow in n for n in part)]
    assert len(alone) == 1 and len(alone[0]) == 1, info["shards"]
    assert max(info["loads_s"]) == 100.0


# -- refusals, on copies of real shard folders ------------------------------------------------

def _copy(run: Path, dest: Path, **shard_changes) -> Path:
    import shutil
    target = dest / run.name
    shutil.copytree(run, target)
    if shard_changes:
        info = json.loads((target / "shard.json").read_text())
        info.update(shard_changes)
        (target / "shard.json").write_text(json.dumps(info))
    return target


@pytest.mark.parametrize("change, message", [
    ({"commit": "deadbeef"}, "runs of different commits"),
    ({"suites": {"fleet-smoke": "000000000000"}}, "runs of different suites"),
    ({"plan": "0123456789abcdef"}, "shards of different plans"),
])
def test_refuses_runs_that_do_not_belong_together(shards, tmp_path, change, message):
    odd = _copy(shards[2], tmp_path, **change)
    with pytest.raises(MergeError, match=message):
        merge_runs([shards[0], shards[1], odd], tmp_path / "out")
    merge_runs([shards[0], shards[1], odd], tmp_path / "forced", force=True)  # told otherwise
    assert len(json.loads((tmp_path / "forced" / "results.json").read_text())["tests"]) \
        == SMOKE_CASES


def test_refuses_a_missing_or_doubled_shard_with_one_line(shards, tmp_path):
    done = subprocess.run([*CLI, "merge", str(shards[0]), str(shards[1]), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "shard(s) 3 of 3 missing" in done.stderr
    twin = _copy(shards[0], tmp_path / "twin")
    info = json.loads((twin / "results.json").read_text())
    info["run"]["run_id"] += "-again"
    (twin / "results.json").write_text(json.dumps(info))
    with pytest.raises(MergeError, match="shard 1 given twice"):
        merge_runs([*shards, twin], tmp_path / "out")
    with pytest.raises(MergeError, match="no results.json"):
        merge_runs([tmp_path], tmp_path / "out2")


def test_partial_set_with_force_marks_the_lost_cases(shards, tmp_path):
    summary = merge_runs(shards[:2], tmp_path / "partial", force=True)
    lost = json.loads((shards[2] / "shard.json").read_text())["nodeids"]
    assert sorted(summary.missing) == sorted(lost) and summary.cases == SMOKE_CASES
    merged = json.loads((tmp_path / "partial" / "results.json").read_text())["tests"]
    errors = [t for t in merged if t["outcome"] == "error"]
    assert len(errors) == len(lost) and "shard-3-of-3 ended before" in errors[0]["message"]


def test_output_folder_is_never_clobbered(shards, tmp_path):
    other = tmp_path / "busy"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(MergeError, match="not a pytest-mig merge output"):
        merge_runs(shards, other)
    merge_runs(shards, tmp_path / "m")
    merge_runs(shards, tmp_path / "m")  # the same inputs again: fine
    record = json.loads((tmp_path / "m" / "merge.json").read_text())
    record["inputs"][0]["run_id"] = "yesterday"
    (tmp_path / "m" / "merge.json").write_text(json.dumps(record))
    with pytest.raises(MergeError, match="holds a merge of other runs"):
        merge_runs(shards, tmp_path / "m")
    with pytest.raises(MergeError, match="is one of the inputs"):
        merge_runs(shards, shards[0])


def test_skipped_cases_are_skipped_not_missing(shards, tmp_path):
    run = _copy(shards[1], tmp_path / "s")
    info = json.loads((run / "shard.json").read_text())
    gone = info["nodeids"][0]
    results = json.loads((run / "results.json").read_text())
    results["tests"] = [t for t in results["tests"] if t["nodeid"] != gone]
    (run / "results.json").write_text(json.dumps(results))
    info["skipped"] = {gone: "no MIG on this node"}
    (run / "shard.json").write_text(json.dumps(info))
    summary = merge_runs([shards[0], run, shards[2]], tmp_path / "m")
    assert summary.missing == [] and summary.outcomes.get("skipped") == 1
    rec = failure_record(gone, "skipped", "x")
    assert rec["case"] in (tmp_path / "m" / "summary.txt").read_text()


def test_a_shard_left_empty_by_the_plan_exits_zero(shards, tmp_path):
    root = shards[0].parents[1]
    done = subprocess.run(shard_args(root, 7, 7, tmp_path / "r"), cwd=root, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]  # 6 cases, 7 shards: nothing to do
    (run,) = [d for d in (tmp_path / "r").iterdir() if d.name.endswith("-shard-7-of-7")]
    info = json.loads((run / "shard.json").read_text())
    assert info["cases"] == 0 and sum(map(len, info["shards"])) == SMOKE_CASES
    assert json.loads((run / "results.json").read_text())["tests"] == []
