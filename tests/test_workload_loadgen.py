"""`python -m pytest_mig.workload` as a real subprocess: real LoadGen, real PyTorch, tiny models."""
from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

BENCHMARKS = ("resnet50", "ssd-resnet34", "ssd-mobilenet", "bert", "rnnt", "dlrm", "3d-unet", "retinanet")
READY = "[pytest-mig loadgen] Starting running actual test."
REPO = Path(__file__).resolve().parents[1]
ACCURACY_LINES = {
    "resnet50": r"accuracy=\d+\.\d{3}%, good=\d+, total=64",
    "ssd-resnet34": r"mAP=\d+\.\d{3}%",
    "ssd-mobilenet": r"mAP=\d+\.\d{3}%",
    "retinanet": r"mAP=\d+\.\d{3}%",
    "bert": r'\{"exact_match": [\d.]+, "f1": [\d.]+\}',
    "rnnt": r"Word Error Rate: [\d.e-]+%, accuracy=[\d.]+%",
    "dlrm": r"AUC=\d+\.\d{3}%, accuracy=\d+\.\d{3}%, good=\d+, total=2048, queries=64",
    "3d-unet": r"Accuracy: mean = \d\.\d{5}, whole tumor = \d\.\d{4}, tumor core = \d\.\d{4}, "
               r"enhancing tumor = \d\.\d{4}",
}


@dataclass
class Run:
    returncode: int
    lines: list[str]
    summary_at_ready: str | None  # what mlperf_log_summary.txt held when the ready line was read
    log_dir: Path

    @property
    def summary(self) -> str:
        return (self.log_dir / "mlperf_log_summary.txt").read_text()

    def accuracy(self) -> dict:
        return json.loads((self.log_dir / "accuracy.json").read_text())


def harness(log_dir: Path, *args: str, stop_after_ready: int | None = None, timeout: float = 120) -> Run:
    """Run the program, reading its output line by line; optionally signal it once it is ready."""
    argv = [sys.executable, "-m", "pytest_mig.workload", "--log-dir", str(log_dir), *args]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    at_ready = None
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.rstrip().endswith("running actual test."):
                summary = log_dir / "mlperf_log_summary.txt"
                at_ready = summary.read_text() if summary.exists() else ""
                if stop_after_ready is not None:
                    time.sleep(0.3)
                    proc.send_signal(stop_after_ready)
            if time.monotonic() > deadline:
                break
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return Run(proc.returncode, lines, at_ready, log_dir)


def explain(run: Run) -> str:
    return "\n".join(run.lines[-40:])


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_offline_performance_is_valid_and_ready_line_comes_first(tmp_path, benchmark):
    run = harness(tmp_path, "--benchmark", benchmark, "--scenario", "Offline", "--mode", "performance",
                  "--min-duration-ms", "300")
    assert run.returncode == 0, explain(run)
    assert [line for line in run.lines if line.endswith("running actual test.")] == [READY]
    # LoadGen creates its log files when the test starts and fills the summary at the end.
    assert run.summary_at_ready is not None and "Result is" not in run.summary_at_ready
    ready_at = run.lines.index(READY)
    assert ready_at < run.lines.index("MLPerf Results Summary")  # LoadGen's own copy, same stream
    assert any(line.startswith("[pytest-mig loadgen] calibration:") for line in run.lines[:ready_at])
    assert "Result is : VALID" in run.summary
    assert "Scenario : Offline" in run.summary
    assert (tmp_path / "mlperf_log_detail.txt").exists()
    trace = tmp_path / "mlperf_log_trace.json"
    assert not trace.exists() or trace.stat().st_size == 0


@pytest.mark.parametrize("benchmark, scenario", [("dlrm-99", "Server"), ("bert-99.9", "SingleStream")])
def test_latency_scenarios_are_valid(tmp_path, benchmark, scenario):
    run = harness(tmp_path, "--benchmark", benchmark, "--scenario", scenario, "--mode", "performance",
                  "--min-duration-ms", "300")
    assert run.returncode == 0, explain(run)
    summary = run.summary
    assert "Result is : VALID" in summary, summary
    assert "Early stopping satisfied: Yes" in summary
    if scenario == "Server":
        assert "min_query_count : 662" in summary
        assert "target_latency (ns): 100000000" in summary


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_fp32_accuracy_scores_the_reference_and_writes_real_format(tmp_path, benchmark):
    run = harness(tmp_path, "--benchmark", benchmark, "--scenario", "Offline", "--mode", "accuracy",
                  "--min-duration-ms", "0", "--sample-count", "64", "--precision", "fp32")
    assert run.returncode == 0, explain(run)
    line, hash_line = (tmp_path / "accuracy.txt").read_text().splitlines()
    assert re.fullmatch(ACCURACY_LINES[benchmark], line), line
    log = tmp_path / "mlperf_log_accuracy.json"
    assert hash_line == f"hash={hashlib.sha256(log.read_bytes()).hexdigest()}"
    assert len(json.loads(log.read_text())) == 64  # every sample logged once, bytes and all
    result = run.accuracy()
    assert result["benchmark"] == benchmark and result["reference"] == 100.0
    assert result["value"] >= 99.9, line


def test_auto_precision_is_the_cpus_native_one_said_and_recorded(tmp_path):
    from pytest_mig import cpu_native

    run = harness(tmp_path, "--benchmark", "dlrm", "--scenario", "Offline", "--mode", "performance",
                  "--min-duration-ms", "0", "--device", "cpu")  # no --precision: auto
    assert run.returncode == 0, explain(run)
    want, why = cpu_native.resolve("auto", "cpu", "dlrm")
    assert f"[pytest-mig loadgen] precision {want}: {why}" in run.lines
    assert any(f" precision={want} device=cpu" in line for line in run.lines)
    record = json.loads((tmp_path / "harness_path.json").read_text())
    assert (record["precision"], record["precision_reason"]) == (want, why)


def test_int4_resnet50_falls_below_99_percent(tmp_path):
    run = harness(tmp_path, "--benchmark", "resnet50", "--scenario", "Offline", "--mode", "accuracy",
                  "--min-duration-ms", "0", "--precision", "int4")
    assert run.returncode == 0, explain(run)
    result = run.accuracy()
    assert result["metric"] == "accuracy" and result["fields"]["total"] == 256
    assert 50.0 < result["value"] < 99.0


def test_sigterm_stops_a_long_run_promptly(tmp_path):
    started = time.monotonic()
    run = harness(tmp_path, "--benchmark", "dlrm", "--scenario", "SingleStream", "--mode", "performance",
                  "--min-duration-ms", "600000", "--target-latency-ms", "100",
                  stop_after_ready=signal.SIGTERM, timeout=60)
    assert run.returncode == 143, explain(run)
    assert READY in run.lines
    assert "[pytest-mig loadgen] stopped by signal 15" in run.lines
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("args", [
    ["--benchmark", "resnet", "--scenario", "Offline", "--mode", "performance", "--min-duration-ms", "10"],
    ["--benchmark", "resnet50", "--scenario", "offline", "--mode", "performance", "--min-duration-ms", "10"],
    ["--benchmark", "resnet50", "--scenario", "Offline", "--mode", "performance"],
    ["--benchmark", "resnet50", "--scenario", "Offline", "--mode", "performance", "--min-duration-ms", "-1"],
    ["--benchmark", "bert", "--scenario", "Server", "--mode", "accuracy", "--min-duration-ms", "10",
     "--threads", "0"],
    ["--benchmark", "bert", "--scenario", "Server", "--mode", "accuracy", "--min-duration-ms", "10",
     "--precision", "fp8"],
])
def test_bad_arguments_exit_2_with_usage(tmp_path, args):
    proc = subprocess.run([sys.executable, "-m", "pytest_mig.workload", "--log-dir", str(tmp_path), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "usage: python -m pytest_mig.workload" in proc.stderr
    assert not (tmp_path / "mlperf_log_summary.txt").exists()
