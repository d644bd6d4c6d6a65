"""Finding NVIDIA's LoadGen logs and audit verdicts in its LOG_DIR layout, and `collect` on them,
with real LoadGen outputs from tests/data."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from pytest_mig.harness.nvidia import NvidiaHarness
from pytest_mig.harness.nvidia_logs import benchmark_matches, describe_missing, find_run_logs
from pytest_mig.types import ACCURACY, PERFORMANCE, Finished, WorkSpec

DATA = Path(__file__).parent / "data" / "mlperf_logs"
LOADGEN = DATA / "loadgen-6.0.17"
HETERO = DATA / "v1.1" / "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT_HeteroMultiUse"
COMPLIANCE = DATA / "v1.1" / "compliance"
SYSTEM = "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT_HeteroMultiUse"
OLD, NEW = "2021.08.10-06.16.59", "2021.08.11-01.02.03"


def put(log_dir: Path, rel: str, source: Path, name: str | None = None, mtime: float | None = None) -> Path:
    dest = log_dir / rel / (name or source.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, dest)
    if mtime is not None:
        os.utime(dest, (mtime, mtime))
    return dest


def work(log_dir: Path, benchmark="resnet50", scenario="Offline", mode=PERFORMANCE) -> WorkSpec:
    return WorkSpec(role="main", name="main", benchmark=benchmark, scenario=scenario, mode=mode,
                    min_duration_ms=400, min_query_count=1, log_dir=log_dir)


def finished(log_dir: Path, started_at: float) -> Finished:
    return Finished(name="main", started_at=started_at, ready_at=started_at + 1,
                    ended_at=started_at + 2, exit_code=0, log_path=log_dir.parent / "main.log")


@pytest.fixture
def root(tmp_path) -> Path:
    d = tmp_path / "NVIDIA"
    d.mkdir()
    (d / "Makefile").write_text("run_harness:\n")
    return d


@pytest.mark.parametrize("name, benchmark, expected", [
    ("bert-99", "bert", True), ("bert-99.9", "bert", True), ("bert", "bert", True),
    ("BERT-99", "bert", True), ("dlrm-99.9", "dlrm", True), ("3d-unet-99", "3d-unet", True),
    ("bertx", "bert", False), ("bert-98", "bert", False), ("ssd-resnet34", "ssd-mobilenet", False),
    # Submitters' v0.5 folder names are aliases of today's benchmarks.
    ("resnet50", "resnet", True), ("resnet", "resnet50", True), ("ssd-small", "ssd-mobilenet", True),
    ("ssd-small", "ssd-resnet34", False),
])
def test_benchmark_matches(name, benchmark, expected):
    assert benchmark_matches(name, benchmark) is expected


def test_newest_timestamp_wins_over_mtime(tmp_path):
    summary = LOADGEN / "Server-valid" / "mlperf_log_summary.txt"
    put(tmp_path, f"{OLD}/{SYSTEM}/bert-99/Server", summary, mtime=time.time())
    put(tmp_path, f"{NEW}/{SYSTEM}/bert-99/Server", summary, mtime=time.time() - 3600)
    put(tmp_path, f"{NEW}/{SYSTEM}/bert-99/Offline", summary)  # other scenario
    put(tmp_path, f"{NEW}/{SYSTEM}/rnnt/Server", summary)  # other benchmark
    runs = find_run_logs(tmp_path, "bert", "Server")
    assert [(r.timestamp, r.system_id, r.benchmark_dir) for r in runs] == [
        (NEW, SYSTEM, "bert-99"), (OLD, SYSTEM, "bert-99")]
    assert runs[0].directory == tmp_path / NEW / SYSTEM / "bert-99" / "Server"


def test_layout_without_timestamp_and_accuracy_only_dirs(tmp_path):
    put(tmp_path, f"{SYSTEM}/3d-unet-99.9/Offline", HETERO / "3d-unet-99/Offline/accuracy/accuracy.txt")
    (run,) = find_run_logs(tmp_path, "3d-unet", "Offline")
    assert (run.timestamp, run.system_id, run.benchmark_dir) == ("", SYSTEM, "3d-unet-99.9")


def test_missing_dir_and_mismatch_messages(tmp_path):
    assert find_run_logs(tmp_path / "nope", "bert", "Server") == []
    assert describe_missing(tmp_path / "nope", "bert", "Server") == (
        f"no LoadGen logs for bert Server under {tmp_path / 'nope'} (looked for [<timestamp>/]<system id>/"
        "bert[-99|-99.9]/Server/{mlperf_log_summary.txt,mlperf_log_detail.txt,accuracy.txt}); "
        f"{tmp_path / 'nope'} does not exist: the harness never wrote there (is LOG_DIR honoured?)")
    put(tmp_path, f"{NEW}/{SYSTEM}/rnnt/Server", LOADGEN / "Server-valid" / "mlperf_log_summary.txt")
    assert describe_missing(tmp_path, "bert", "Server").endswith(
        f"; found instead: {NEW}/{SYSTEM}/rnnt/Server")


def test_collect_valid_performance(tmp_path, root):
    log_dir = tmp_path / "main"
    start = time.time()
    run = f"{NEW}/{SYSTEM}/bert-99/Server"
    put(log_dir, run, LOADGEN / "Server-valid" / "mlperf_log_summary.txt")
    put(log_dir, run, LOADGEN / "Server-valid" / "mlperf_log_detail.txt")
    res = NvidiaHarness({"mlperf_root": str(root)}).collect(
        work(log_dir, "bert", "Server"), finished(log_dir, start), log_dir)
    assert (res.valid, res.result_text, res.metric_name, res.metric_value) == (
        True, "VALID", "Completed samples per second", 1983.38)
    assert res.result_dir == log_dir / run
    assert res.files == {"summary": log_dir / run / "mlperf_log_summary.txt",
                         "detail": log_dir / run / "mlperf_log_detail.txt"}
    assert res.errors == []


def test_collect_invalid(tmp_path, root):
    log_dir = tmp_path / "main"
    put(log_dir, f"{NEW}/{SYSTEM}/resnet50/Offline", LOADGEN / "Offline-invalid" / "mlperf_log_summary.txt")
    res = NvidiaHarness({"mlperf_root": str(root)}).collect(work(log_dir), finished(log_dir, time.time()),
                                                             log_dir)
    assert (res.valid, res.result_text, res.metric_value) == (False, "INVALID", 428937.0)
    assert res.invalid_reasons == ["Min duration not satisfied", "Increase expected QPS so the loadgen "
                                   "pre-generates a larger (coalesced) query."]


def test_collect_accuracy(tmp_path, root):
    log_dir = tmp_path / "main"
    run = f"{NEW}/{SYSTEM}/resnet50/Offline"
    put(log_dir, run, HETERO / "resnet50/Offline/accuracy/accuracy.txt")
    res = NvidiaHarness({"mlperf_root": str(root)}).collect(
        work(log_dir, mode=ACCURACY), finished(log_dir, time.time()), log_dir)
    assert (res.accuracy_metric, res.accuracy_value, res.valid) == ("accuracy", 76.042, None)
    assert res.files == {"accuracy": log_dir / run / "accuracy.txt"}
    assert res.errors == []


def test_collect_without_logs_says_where_it_looked(tmp_path, root):
    log_dir = tmp_path / "main"
    log_dir.mkdir()
    res = NvidiaHarness({"mlperf_root": str(root)}).collect(work(log_dir), finished(log_dir, time.time()),
                                                             log_dir)
    assert res.valid is None
    assert res.errors == [f"no LoadGen logs for resnet50 Offline under {log_dir} (looked for [<timestamp>/]"
                          "<system id>/resnet50[-99|-99.9]/Offline/{mlperf_log_summary.txt,"
                          f"mlperf_log_detail.txt,accuracy.txt}}); {log_dir} holds no mlperf_log_summary.txt at all"]


def test_collect_ignores_logs_older_than_the_run(tmp_path, root):
    log_dir = tmp_path / "main"
    start = time.time()
    old = put(log_dir, f"{OLD}/{SYSTEM}/resnet50/Offline", LOADGEN / "Offline-valid" / "mlperf_log_summary.txt",
              mtime=start - 600)
    res = NvidiaHarness({"mlperf_root": str(root)}).collect(work(log_dir), finished(log_dir, start), log_dir)
    assert res.valid is None
    assert res.errors == [f"only logs older than this run under {log_dir} (newest: {old.parent}); "
                          "this run wrote none"]


def audit_harness(root: Path, action="run_audit_test04") -> NvidiaHarness:
    return NvidiaHarness({"mlperf_root": str(root), "action": action})


def test_audit_pass_in_log_dir(tmp_path, root):
    log_dir = tmp_path / "main"
    run = f"{NEW}/{SYSTEM}/resnet50/Offline"
    put(log_dir, run, LOADGEN / "Offline-valid" / "mlperf_log_summary.txt")
    verdict = put(log_dir, f"{run}/TEST04", COMPLIANCE / "TEST04-A" / "verify_performance.txt")
    res = audit_harness(root).collect(work(log_dir), finished(log_dir, time.time()), log_dir)
    assert (res.valid, res.result_text, res.invalid_reasons) == (True, "VALID", [])
    assert res.files["audit_performance"] == verdict


def test_audit_fail_makes_the_result_invalid(tmp_path, root):
    log_dir = tmp_path / "main"
    run = f"{NEW}/{SYSTEM}/resnet50/Offline"
    put(log_dir, run, LOADGEN / "Offline-valid" / "mlperf_log_summary.txt")
    verdict = log_dir / run / "TEST04" / "verify_performance.txt"
    verdict.parent.mkdir()
    verdict.write_text("Verifying performance.\nTEST04-A score = 5319.42\nTEST04-B score = 4711.3\nTEST FAIL\n")
    res = audit_harness(root).collect(work(log_dir), finished(log_dir, time.time()), log_dir)
    assert (res.valid, res.result_text) == (False, "INVALID")
    assert res.invalid_reasons == [f"TEST04 FAIL: reference score 5319.42 vs test score 4711.3 ({verdict})"]


def test_audit_verdicts_in_compliance_logs(tmp_path, root):
    """NVIDIA's audit targets write to build/compliance_logs, not LOG_DIR: found there too."""
    log_dir = tmp_path / "main"
    log_dir.mkdir()
    start = time.time()
    comp = root / "build" / "compliance_logs"
    rel = f"{SYSTEM}/resnet50/Offline"
    acc = put(comp, f"{rel}/TEST01", COMPLIANCE / "TEST01" / "verify_accuracy.txt")
    perf = put(comp, f"{rel}/TEST01", COMPLIANCE / "TEST01" / "verify_performance.txt")
    put(comp, f"{rel}/TEST05", COMPLIANCE / "TEST05" / "verify_performance.txt")  # another audit
    put(comp, f"{SYSTEM}/bert-99/Offline/TEST01", COMPLIANCE / "TEST01" / "verify_performance.txt")
    res = audit_harness(root, "run_audit_test01").collect(work(log_dir), finished(log_dir, start), log_dir)
    assert (res.valid, res.result_text, res.errors) == (True, "VALID", [])
    assert res.files == {"audit_accuracy": acc, "audit_performance": perf}


def test_audit_verdict_missing_or_stale(tmp_path, root):
    log_dir = tmp_path / "main"
    start = time.time()
    run = f"{NEW}/{SYSTEM}/resnet50/Offline"
    put(log_dir, run, LOADGEN / "Offline-valid" / "mlperf_log_summary.txt")
    put(log_dir, f"{run}/TEST01", COMPLIANCE / "TEST01" / "verify_accuracy.txt")
    put(log_dir, f"{run}/TEST01", COMPLIANCE / "TEST01" / "verify_performance.txt", mtime=start - 600)
    res = audit_harness(root, "run_audit_test01").collect(work(log_dir), finished(log_dir, start), log_dir)
    assert (res.valid, res.result_text) == (False, "INVALID")
    comp = root / "build" / "compliance_logs"
    assert res.invalid_reasons == [
        f"TEST01: no verify_performance.txt written since the run started under {log_dir}, {comp}: the "
        "audit's verification step did not run or wrote elsewhere (set the harness option compliance_dir=DIR)"]
    assert set(res.files) == {"summary", "audit_accuracy"}


def test_compliance_dir_option(tmp_path, root):
    log_dir = tmp_path / "main"
    comp = tmp_path / "elsewhere"
    verdict = put(comp, f"TEST05/{SYSTEM}/resnet50/Offline", COMPLIANCE / "TEST05" / "verify_performance.txt")
    h = NvidiaHarness({"mlperf_root": str(root), "action": "run_audit_test05", "compliance_dir": str(comp)})
    res = h.collect(work(log_dir), finished(log_dir, time.time()), log_dir)
    assert (res.valid, res.files) == (True, {"audit_performance": verdict})
