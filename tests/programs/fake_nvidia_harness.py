"""A stand-in for NVIDIA's `code/main.py`, run by a throwaway Makefile's run_harness target.

It parses RUN_ARGS as NVIDIA's harness does, prints noise then `Starting running actual
test.`, sleeps for --min_duration, and writes real LoadGen outputs (copied from tests/data)
into `$LOG_DIR/<timestamp>/<system id>/<benchmark>/<scenario>/`. Each call is appended to
calls.jsonl in the working directory (the Makefile's). What it does comes from
behaviour.json there, keyed "<role>:<benchmark>" or "<role>" (role: main | background):
valid | invalid | exit<N> (fails after its ready line) | never_ready | no_logs | audit_fail |
crash_during_main (a background that exits 3 once calls.jsonl shows a main started).
Every workload keeps Python's default SIGTERM action: like `make run_harness`, it dies of it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "mlperf_logs"
LOADGEN = DATA / "loadgen-6.0.17"
HETERO = DATA / "v1.1" / "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT_HeteroMultiUse"
COMPLIANCE = DATA / "v1.1" / "compliance"
ACCURACY = {"resnet50": "resnet50/Offline", "bert": "bert-99/Server", "rnnt": "rnnt/Offline",
            "ssd-resnet34": "ssd-resnet34/Offline", "dlrm": "dlrm-99/Offline",
            "3d-unet": "3d-unet-99/Offline"}
HIGH_ACCURACY_ENABLED = ("bert", "dlrm", "3d-unet")
SUMMARIES = {("Offline", True): "Offline-valid", ("Offline", False): "Offline-invalid",
             ("Server", True): "Server-valid", ("Server", False): "Server-invalid-latency",
             ("SingleStream", True): "SingleStream-valid", ("MultiStream", True): "MultiStream-valid",
             ("MultiStream", False): "MultiStream-invalid"}
AUDITS = {"run_audit_test01": ("TEST01", "TEST01"), "run_audit_test04": ("TEST04", "TEST04-A"),
          "run_audit_test05": ("TEST05", "TEST05")}
TEST04_FAIL = "Verifying performance.\nTEST04-A score = 5319.42\nTEST04-B score = 4711.3\nTEST FAIL\n"


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    ap = argparse.ArgumentParser()
    for flag in ("--benchmarks", "--scenarios", "--config_ver", "--test_mode", "--action",
                 "--start_from_device", "--server_target_qps"):
        ap.add_argument(flag)
    ap.add_argument("--min_duration", type=int, default=60000)
    ap.add_argument("--min_query_count", type=int)
    ap.add_argument("--verbose", action="store_true")
    return ap.parse_known_args(argv)


def benchmark_dir(benchmark: str, config_ver: str) -> str:
    """NVIDIA's submission name: bert-99, dlrm-99.9 (high accuracy configs), resnet50."""
    if benchmark not in HIGH_ACCURACY_ENABLED:
        return benchmark
    return f"{benchmark}-99.9" if "high_accuracy" in config_ver else f"{benchmark}-99"


def record(a: argparse.Namespace, role: str, argv: list[str], unknown: list[str]) -> None:
    line = json.dumps({"role": role, "benchmark": a.benchmarks, "action": a.action, "argv": argv,
                       "unknown": unknown, "cwd": os.getcwd(),
                       "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
                       "LOG_DIR": os.environ.get("LOG_DIR")}) + "\n"
    fd = os.open("calls.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write per line: concurrent callers never interleave
    finally:
        os.close(fd)


def write_logs(a: argparse.Namespace, how: str) -> Path:
    system = "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT" + (
        "_HeteroMultiUse" if "hetero" in a.config_ver else "")
    out = (Path(os.environ["LOG_DIR"]) / time.strftime("%Y.%m.%d-%H.%M.%S") / system
           / benchmark_dir(a.benchmarks, a.config_ver) / a.scenarios)
    out.mkdir(parents=True, exist_ok=True)
    src = LOADGEN / SUMMARIES.get((a.scenarios, how != "invalid"), SUMMARIES[("Offline", how != "invalid")])
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    if a.test_mode == "AccuracyOnly" and a.benchmarks in ACCURACY:
        shutil.copy(HETERO / ACCURACY[a.benchmarks] / "accuracy" / "accuracy.txt", out / "accuracy.txt")
    if a.action in AUDITS:
        test, folder = AUDITS[a.action]
        (out / test).mkdir(exist_ok=True)
        for verdict in sorted((COMPLIANCE / folder).glob("verify_*.txt")):
            shutil.copy(verdict, out / test / verdict.name)
        if how == "audit_fail":
            (out / test / "verify_performance.txt").write_text(TEST04_FAIL)
    return out


def main(argv: list[str]) -> int:
    a, unknown = parse(argv)
    role = "background" if "background_logs" in Path(os.environ.get("LOG_DIR", "")).parts else "main"
    behaviour = Path("behaviour.json")
    script = json.loads(behaviour.read_text()) if behaviour.exists() else {}
    how = script.get(f"{role}:{a.benchmarks}") or script.get(role) or "valid"
    record(a, role, argv, unknown)
    print(f"[I] fake NVIDIA harness: {a.benchmarks} {a.scenarios} config_ver={a.config_ver}", flush=True)
    print(f"[I] CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')}", flush=True)
    print("[I] Loading engines and warming up", flush=True)
    if how == "never_ready":
        time.sleep(3600)
        return 0
    print("[I] Starting running actual test.", flush=True)
    if how == "crash_during_main":
        while not any(json.loads(line).get("role") == "main"
                      for line in Path("calls.jsonl").read_text().splitlines()):
            time.sleep(0.05)
        time.sleep(0.3)
        print("[E] fatal: CUDA error 700 (simulated) during the main", flush=True)
        return 3
    if how.startswith("exit"):
        time.sleep(0.1)
        print("[E] fatal: CUDA error 700 (simulated)", flush=True)
        return int(how[4:])
    time.sleep(a.min_duration / 1000)
    if how != "no_logs":
        print(f"[I] logs in {write_logs(a, how)}", flush=True)
    print("&&&& PASSED fake harness", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
