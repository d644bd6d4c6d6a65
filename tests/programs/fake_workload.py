"""A small stand-in for a harness, for fault tests: behaves as a JSON script tells it.

Behaviours: valid | invalid (LoadGen INVALID summary) | crash_before_ready |
crash_after_ready (exits 3 a moment after its ready line) | never_ready | exit_nonzero
(finishes its duration, exits 4) | no_summary | early (finishes 0.1 s after ready).
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "mlperf_logs" / "loadgen-6.0.17"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--role", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--min-duration-ms", type=int, default=1000)
    ap.add_argument("--noise-lines", type=int, default=3)
    a = ap.parse_args()
    script = json.loads(Path(a.script).read_text())
    how = (script.get(a.name) or script.get(a.name.split("-")[0]) or script.get(a.role)
           or "valid")
    out = Path(a.log_dir)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(a.noise_lines):
        print(f"[fake] warming up {i}", flush=True)
    if how == "crash_before_ready":
        print("[fake] fatal: cannot open engine", flush=True)
        return 7
    if how == "never_ready":
        time.sleep(3600)
        return 0
    print("[fake] Starting running actual test.", flush=True)
    if how == "crash_after_ready":
        time.sleep(0.3)
        print("[fake] segmentation fault (simulated)", flush=True)
        return 3
    if how != "die_on_sigterm":
        # Stopped in its timed phase (session backgrounds): end cleanly, exit 0.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    duration = 0.1 if how == "early" else a.min_duration_ms / 1000
    time.sleep(duration)
    if how != "no_summary":
        src = "Offline-invalid" if how == "invalid" else "Offline-valid"
        shutil.copy(DATA / src / "mlperf_log_summary.txt", out / "mlperf_log_summary.txt")
    print("[fake] done", flush=True)
    return 4 if how == "exit_nonzero" else 0


if __name__ == "__main__":
    sys.exit(main())
