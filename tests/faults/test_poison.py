"""Poisoned numbers and files: a NaN or non-positive metric fails its case and is never a
baseline; workload files are read only if regular and small; corrupt history lines are
skipped with a warning naming file and line."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_mig.errors import ConfigError, ResultParseError
from pytest_mig.report.compare import Baselines, CompareSpec
from pytest_mig.report.history import (HistoryEntry, append_history, entry_from_record,
                                       read_baseline_source, read_history)
from pytest_mig.results.summary import parse_summary

from .helpers import FAULTY, HEALTHY

METRIC = "Samples per second"


def entry(value, run="r1", outcome="passed") -> HistoryEntry:
    return HistoryEntry(case="c", run_id=run, timestamp="t", outcome=outcome, gpu_model="g",
                        backend="simulated", metric=METRIC, value=value)


# -- 3. NaN and friends --------------------------------------------------------------------

def test_a_nan_metric_fails_the_case_and_is_never_written_as_a_number(project):
    r = project.run({"metric": "nan"})
    r.assert_outcomes(failed=2)
    r.stdout.fnmatch_lines(["*metric is NaN: Samples per second = nan is not a measurement*"])
    lines = (project.reports / "history.jsonl").read_text().splitlines()
    assert len(lines) == 2
    for line in lines:
        data = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in history"))
        assert data["value"] is None and data["outcome"] == "failed"
    assert {FAULTY, HEALTHY} == {json.loads(x)["case"] for x in lines}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 0.0, -5.0])
def test_unusable_baselines_are_no_baseline(bad):
    b = Baselines(CompareSpec("last"), [entry(bad)], current_run="now")
    (c,) = b.compare(entry(0.03, "now"), {"throughput": 5.0})
    assert c.baseline is None and c.verdict() == "no baseline" and not c.regressed


def test_a_later_good_run_is_compared_with_the_last_usable_baseline():
    b = Baselines(CompareSpec("last"), [entry(100.0), entry(math.nan, "r2")], current_run="now")
    (c,) = b.compare(entry(50.0, "now"), {"throughput": 5.0})
    assert c.baseline == 100.0 and c.regressed


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -1.0])
def test_an_unusable_value_never_passes_the_gate(bad):
    b = Baselines(CompareSpec("last"), [entry(100.0)], current_run="now")
    (c,) = b.compare(entry(bad, "now"), {"throughput": 5.0})
    assert c.regressed and c.verdict().startswith("INVALID value")


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, -5.0, None])
def test_an_unusable_baseline_fails_a_gated_comparison_saying_so(bad):
    # A NaN/inf/0/negative baseline named by --mig-compare=PATH (None: what a NaN becomes in
    # results.json) must not turn the gate off without a word.
    b = Baselines(CompareSpec("path"), [entry(bad)], current_run="now")
    (c,) = b.compare(entry(100.0, "now"), {"throughput": 5.0})
    assert c.regressed and c.verdict().startswith("INVALID baseline ("), c.verdict()
    assert "not a number to compare with" in c.verdict()
    (c,) = b.compare(entry(100.0, "now"), {})  # report only: shown, not failed
    assert not c.regressed and c.verdict().startswith("invalid baseline (")


def test_non_finite_numbers_become_null_in_history():
    e = entry_from_record({"case": "c", "outcome": "passed",
                           "result": {"metric": METRIC, "value": math.nan,
                                      "latencies_ns": {"p99": math.inf, "p50": 3.0}}},
                          "r", "simulated")
    assert e.value is None and e.latencies_ns == {"p50": 3.0} and "NaN" not in e.to_json()


# -- 6. workload files: regular, capped, never blocking --------------------------------------

def test_a_fifo_summary_fails_the_case_instead_of_hanging(project):
    r = project.run({"cases": {"resnet50": {"main": "summary_fifo"}}}, timeout=180)
    r.assert_outcomes(failed=1, passed=1)
    r.stdout.fnmatch_lines(["*mlperf_log_summary.txt: refused to read it: it is a FIFO*"])


def test_a_fifo_summary_with_alluredir_is_one_line_not_a_copy_error(project):
    r = project.run({"cases": {"resnet50": {"main": "summary_fifo"}}},
                    f"--alluredir={project.path / 'allure'}", timeout=180)
    r.assert_outcomes(failed=1, passed=1)
    out = r.stdout.str() + r.stderr.str()
    assert "SpecialFileError" not in out and "INTERNALERROR" not in out, out[-3000:]


def _poison(path: Path, how: str) -> None:
    if how == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_harness_path_record_is_read_guarded(tmp_path, how):
    from pytest_mig.harness.base import PATH_RECORD, collect_loadgen_outputs
    from pytest_mig.types import WorkSpec
    (tmp_path / "mlperf_log_summary.txt").write_text("")
    _poison(tmp_path / PATH_RECORD, how)
    work = WorkSpec(role="main", name="main", benchmark="resnet50", scenario="Offline",
                    mode="performance", min_duration_ms=1, min_query_count=1, log_dir=tmp_path)
    res = collect_loadgen_outputs(work, tmp_path)
    assert any("harness_path.json: refused to read it" in e for e in res.errors), res.errors


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_completions_log_is_read_guarded(tmp_path, how):
    from pytest_mig.results.window import FILE_NAME, window_in_dir
    _poison(tmp_path / FILE_NAME, how)
    assert window_in_dir(tmp_path, 1.0, 2.0) is None


@pytest.mark.timeout(30)
@pytest.mark.parametrize("how", ["fifo", "devzero"])
def test_allure_log_tail_is_read_guarded(tmp_path, how):
    from pytest_mig.report.allure_report import tail_text
    _poison(tmp_path / "main.log", how)
    assert tail_text(tmp_path / "main.log").startswith("not attached: ")


@pytest.mark.timeout(30)
def test_summary_linked_to_dev_zero_is_refused(tmp_path):
    link = tmp_path / "mlperf_log_summary.txt"
    link.symlink_to("/dev/zero")
    with pytest.raises(ResultParseError, match="it is a character device, not a regular file"):
        parse_summary(link)


@pytest.mark.timeout(30)
def test_an_oversized_summary_is_refused(tmp_path):
    big = tmp_path / "mlperf_log_summary.txt"
    with open(big, "wb") as fh:
        fh.truncate(65 << 20)  # sparse: costs no disk
    with pytest.raises(ResultParseError, match="more than the 64 MiB cap"):
        parse_summary(big)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", ["history.jsonl", "results.json"])
def test_compare_with_a_fifo_is_a_config_error(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        read_baseline_source(fifo)


# -- 7. corrupt history ----------------------------------------------------------------------

GOOD = entry(10.0).to_json()
BAD_LINES = {
    b"\xff\xfe not utf-8": "not UTF-8 text",
    b"[" * 100_000: "nested too deeply",
    json.dumps({**json.loads(GOOD), "value": "fast"}).encode(): "field 'value' is str",
    json.dumps({**json.loads(GOOD), "case": 3}).encode(): "field 'case' is int",
    b'{"no": "case"}': "not a history entry",
    b'"just a string"': "not a history entry",
}


@pytest.mark.parametrize("bad", list(BAD_LINES))
def test_a_corrupt_history_line_is_skipped_and_named(tmp_path, bad):
    path = tmp_path / "history.jsonl"
    path.write_bytes(GOOD.encode() + b"\n" + bad + b"\n" + GOOD.encode() + b"\n")
    problems: list[str] = []
    assert [e.value for e in read_history(path, problems)] == [10.0, 10.0]
    assert len(problems) == 1 and problems[0].startswith(f"{path} line 2 skipped: ")
    assert BAD_LINES[bad] in problems[0]


def test_a_corrupt_history_warns_and_the_run_goes_on(project):
    project.reports.mkdir()
    (project.reports / "history.jsonl").write_bytes(
        GOOD.encode() + b"\n\xff\xfe\n" + b"[" * 50_000 + b"\n")
    r = project.pytester.runpytest_subprocess(*project.args("--mig-compare=last", "--co"),
                                              timeout=120)
    assert r.ret == 0, r.stdout.str()[-2000:]
    r.stdout.fnmatch_lines(["*history.jsonl line 2 skipped: not UTF-8 text*",
                            "*history.jsonl line 3 skipped: nested too deeply*"])


_VALUES = st.one_of(st.floats(), st.text(max_size=5), st.none(), st.booleans(),
                   st.lists(st.integers()))
_LINES = st.one_of(st.binary(max_size=60), st.just(GOOD.encode()),
                   st.builds(lambda v: json.dumps({**json.loads(GOOD), "value": v}).encode(),
                             _VALUES))


@settings(max_examples=60, deadline=None)
@given(st.lists(_LINES, max_size=12))
def test_any_history_contents_read_without_error(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("h") / "history.jsonl"
    path.write_bytes(b"\n".join(lines))
    problems: list[str] = []
    got = read_history(path, problems)
    assert all(isinstance(e, HistoryEntry) for e in got)
    assert all(e.value is None or isinstance(e.value, (int, float)) for e in got)
    b = Baselines(CompareSpec("median", 3), got, current_run="now")
    for c in b.compare(entry(5.0, "now"), {"throughput": 5.0}):
        assert c.baseline is None or (math.isfinite(c.baseline) and c.baseline > 0)
    append_history(path, [entry(1.0, "after")])
    assert read_history(path)[-1].run_id == "after"
