"""History lines and baseline comparison: option parsing, last / median:N / PATH baselines,
metric direction, thresholds, the table."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_mig.errors import ConfigError
from pytest_mig.report.compare import (Baselines, Comparison, CompareSpec, failure_message,
                                       format_table, headline_kind, parse_compare,
                                       parse_thresholds)
from pytest_mig.report.history import (HistoryEntry, append_history, entry_from_record,
                                       read_baseline_source, read_history)

CASE = "resnet50-Offline-1g.10gb-performance"
SS = "resnet50-SingleStream-1g.10gb-performance"


def entry(value: float, run_id: str, case: str = CASE, outcome: str = "passed",
          metric: str = "Samples per second", p99: float = 1000.0, backend: str = "simulated",
          accuracy: float | None = None) -> HistoryEntry:
    return HistoryEntry(case=case, run_id=run_id, timestamp="t", outcome=outcome,
                        gpu_model="H100-SXM5-80GB", backend=backend, metric=metric, value=value,
                        p99_ns=p99, latencies_ns={"p99": p99, "p50": p99 / 2},
                        accuracy_metric="acc" if accuracy is not None else None, accuracy=accuracy)


def test_parse_thresholds():
    assert parse_thresholds("throughput:5%,p99:10%") == {"throughput": 5.0, "p99": 10.0}
    assert parse_thresholds(" latency:2.5 , p99.9:20%,accuracy:0.1%") == {
        "latency": 2.5, "p99.9": 20.0, "accuracy": 0.1}


@pytest.mark.parametrize("text, message", [
    ("throughput=5%", "'throughput=5%' is not KIND:PERCENT; e.g. --mig-compare-fail="
                      "throughput:5%,p99:10%"),
    ("thruput:5%", "unknown metric 'thruput' (did you mean 'throughput'?)"),
    ("throughput:fast", "'fast' for throughput is not a percentage >= 0"),
    ("p99:-3%", "'-3%' for p99 is not a percentage >= 0"),
    ("", "no thresholds given"),
])
def test_bad_thresholds_name_the_fix(text, message):
    with pytest.raises(ConfigError) as exc:
        parse_thresholds(text)
    assert message in str(exc.value)


def test_parse_compare(tmp_path: Path):
    assert parse_compare("last", tmp_path) == CompareSpec("last")
    assert parse_compare("median:5", tmp_path) == CompareSpec("median", 5)
    (tmp_path / "h.jsonl").write_text("")
    assert parse_compare("h.jsonl", tmp_path) == CompareSpec("path", path=tmp_path / "h.jsonl")
    for bad in ("median", "median:0", "median:x"):
        with pytest.raises(ConfigError, match=f"--mig-compare={bad}: expected median:N with N >= 1"):
            parse_compare(bad, tmp_path)
    with pytest.raises(ConfigError, match="--mig-compare=lats: no such file or folder"):
        parse_compare("lats", tmp_path)


def test_history_roundtrip_skips_torn_lines(tmp_path: Path):
    path = tmp_path / "reports" / "history.jsonl"
    assert append_history(path, [entry(10.0, "r1"), entry(11.0, "r2")]) == 2
    with open(path, "a") as fh:
        fh.write('{"case": "cut off')  # a run killed mid-write
    assert append_history(path, []) == 0
    got = read_history(path)
    assert [(e.run_id, e.value) for e in got] == [("r1", 10.0), ("r2", 11.0)]
    assert got[0] == entry(10.0, "r1")
    assert read_history(tmp_path / "missing.jsonl") == []


def test_entry_from_record():
    record = {"case": CASE, "suite": "dc", "benchmark": "resnet50", "scenario": "Offline",
              "mode": "performance", "gpu_model": "A100-SXM4-80GB", "outcome": "passed",
              "result": {"metric": "Samples per second", "value": 123.5,
                         "latencies_ns": {"p99": 7.0e6, "p50": 2.0e6}, "accuracy": None,
                         "accuracy_metric": None}}
    e = entry_from_record(record, "run-1", "nvml", "2026-01-01T00:00:00")
    assert (e.case, e.run_id, e.backend, e.metric, e.value, e.p99_ns, e.outcome) == (
        CASE, "run-1", "nvml", "Samples per second", 123.5, 7.0e6, "passed")
    assert e.key == (CASE, "A100-SXM4-80GB", "nvml")
    bare = entry_from_record({"case": CASE, "outcome": "failed", "result": None}, "r", "nvml")
    assert bare.value is None and bare.metric == ""


def test_directions():
    assert headline_kind("Samples per second") == ("throughput", "higher")
    assert headline_kind("Completed samples per second") == ("throughput", "higher")
    assert headline_kind("90.0th percentile latency (ns)") == ("latency", "lower")
    assert headline_kind("99.0th percentile latency (ns)") == ("latency", "lower")
    assert headline_kind("Tokens") == ("metric", "")


def test_last_baseline_skips_failed_other_gpus_and_this_run():
    history = [entry(100.0, "r1"), entry(90.0, "r2"), entry(50.0, "r3", outcome="failed"),
               entry(10.0, "r4", backend="nvml"), entry(1.0, "now")]
    b = Baselines(CompareSpec("last"), history, current_run="now")
    (c,) = b.compare(entry(85.5, "now"), {})
    assert (c.metric, c.baseline, c.value, c.better, c.baseline_runs) == (
        "Samples per second", 90.0, 85.5, "higher", 1)
    assert c.change_pct == pytest.approx(-5.0)
    assert not c.regressed and c.verdict() == ""


def test_throughput_gate_and_p99_gate():
    b = Baselines(CompareSpec("last"), [entry(100.0, "r1", p99=1000.0)], "now")
    comps = b.compare(entry(94.0, "now", p99=1150.0), {"throughput": 5.0, "p99": 10.0})
    assert [(c.metric, c.kind, c.regressed) for c in comps] == [
        ("Samples per second", "throughput", True), ("p99 latency (ns)", "p99", True)]
    assert comps[1].change_pct == pytest.approx(15.0)
    just = b.compare(entry(95.0, "now", p99=1100.0), {"throughput": 5.0, "p99": 10.0})
    assert [c.regressed for c in just] == [False, False]  # exactly at the threshold: not beyond
    better = b.compare(entry(150.0, "now", p99=500.0), {"throughput": 5.0, "p99": 10.0})
    assert [c.regressed for c in better] == [False, False]


def test_latency_headline_is_lower_is_better():
    metric = "90.0th percentile latency (ns)"
    b = Baselines(CompareSpec("last"), [entry(5000.0, "r1", case=SS, metric=metric)], "now")
    (slower,) = b.compare(entry(5600.0, "now", case=SS, metric=metric), {"latency": 10.0})
    assert slower.better == "lower" and slower.regressed and slower.change_pct == pytest.approx(12.0)
    (faster,) = b.compare(entry(4000.0, "now", case=SS, metric=metric), {"latency": 10.0})
    assert not faster.regressed
    # a throughput threshold never gates a latency headline
    (other,) = b.compare(entry(9000.0, "now", case=SS, metric=metric), {"throughput": 1.0})
    assert other.threshold_pct is None and not other.regressed


def test_median_of_last_n_ignores_one_outlier():
    runs = [entry(v, f"r{i}") for i, v in enumerate([10.0, 100.0, 101.0, 40.0, 99.0, 102.0])]
    b = Baselines(CompareSpec("median", 3), runs, "now")
    (c,) = b.compare(entry(97.0, "now"), {"throughput": 5.0})
    # last 3: 40, 99, 102 -> median 99; the 40 outlier does not drag it
    assert (c.baseline, c.baseline_runs) == (99.0, 3)
    assert c.spread_pct == pytest.approx((102 - 40) / 99 * 100)
    assert not c.regressed
    (last,) = Baselines(CompareSpec("last"), runs, "now").compare(entry(97.0, "now"),
                                                                   {"throughput": 5.0})
    assert last.baseline == 102.0 and not last.regressed


def test_no_baseline_and_changed_metric_name():
    b = Baselines(CompareSpec("last"), [entry(100.0, "r1", metric="Completed samples per second")],
                  "now")
    (c,) = b.compare(entry(50.0, "now"), {"throughput": 5.0})
    assert c.baseline is None and c.change_pct is None and not c.regressed
    assert c.verdict() == "no baseline"


def test_accuracy_threshold():
    b = Baselines(CompareSpec("last"), [entry(100.0, "r1", accuracy=76.0)], "now")
    comps = b.compare(entry(100.0, "now", accuracy=75.0), {"accuracy": 1.0})
    assert [(c.metric, c.regressed) for c in comps] == [("Samples per second", False),
                                                        ("acc", True)]


def test_path_baseline_from_results_json(tmp_path: Path):
    run = tmp_path / "reports" / "20260101-000000-1"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps({
        "run": {"run_id": run.name, "backend": "simulated", "written_at": "w"},
        "tests": [{"case": CASE, "outcome": "passed", "gpu_model": "H100-SXM5-80GB",
                   "result": {"metric": "Samples per second", "value": 200.0,
                              "latencies_ns": {"p99": 1.0}}}]}))
    assert [e.value for e in read_baseline_source(run)] == [200.0]
    b = Baselines(parse_compare(str(run), tmp_path), [], "now")
    (c,) = b.compare(entry(150.0, "now"), {"throughput": 5.0})
    assert c.baseline == 200.0 and c.regressed
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="bad.json: cannot read it"):
        read_baseline_source(tmp_path / "bad.json")


def test_table_and_failure_message():
    b = Baselines(CompareSpec("median", 2), [entry(100.0, "r1"), entry(104.0, "r2")], "now")
    comps = b.compare(entry(90.0, "now"), {"throughput": 5.0})
    assert format_table(comps) == [
        "case                                  metric              baseline               "
        "value  change",
        f"{CASE}  Samples per second  102 (n=2, range 3.9%)  90     -11.8%  REGRESSED (> 5%)"]
    assert failure_message(CASE, comps, b.spec) == (
        f"{CASE}: performance regression against the median of the last 2 passed runs "
        "(--mig-compare-fail):\n  Samples per second 90 vs baseline 102 (-11.8%; higher is "
        "better, threshold 5%)")
    again = Comparison.from_dict(json.loads(json.dumps(comps[0].to_dict())))
    assert again == comps[0]


def test_gate_fails_only_beyond_threshold_and_the_baselines_own_spread():
    from dataclasses import replace
    noisy = replace(entry(100.0, "r1"), rounds=5, value_min=88.0, value_max=104.0)
    b = Baselines(CompareSpec("last"), [noisy], "now")
    (inside,) = b.compare(entry(90.0, "now"), {"throughput": 5.0})  # -10 %, inside 88-104
    assert not inside.regressed and inside.within_spread
    assert (inside.baseline_min, inside.baseline_max) == (88.0, 104.0)
    assert "inside the baseline's spread 88-104" in inside.verdict()
    (outside,) = b.compare(entry(87.0, "now"), {"throughput": 5.0})  # below its lowest round
    assert outside.regressed and not outside.within_spread
    # without rounds: the threshold alone, as before
    (plain,) = Baselines(CompareSpec("last"), [entry(100.0, "r1")], "now").compare(
        entry(90.0, "now"), {"throughput": 5.0})
    assert plain.regressed
    # median:N: the last N runs' own range is the spread
    runs = [entry(v, f"r{i}") for i, v in enumerate([100.0, 92.0, 101.0])]
    (med,) = Baselines(CompareSpec("median", 3), runs, "now").compare(entry(93.0, "now"),
                                                                        {"throughput": 5.0})
    assert med.baseline == 100.0 and med.within_spread and not med.regressed
    (low,) = Baselines(CompareSpec("median", 3), runs, "now").compare(entry(91.0, "now"),
                                                                        {"throughput": 5.0})
    assert low.regressed


def test_rounds_reach_history_from_the_record():
    rec = {"case": CASE, "outcome": "passed", "result": {"metric": "Samples per second",
                                                          "value": 100.0},
           "rounds": {"n": 3, "values": [99.0, 100.0, 104.0], "min": 99.0, "max": 104.0}}
    e = entry_from_record(rec, "r9", "simulated")
    assert (e.rounds, e.value_min, e.value_max) == (3, 99.0, 104.0)
    assert HistoryEntry.from_dict(json.loads(e.to_json())) == e
