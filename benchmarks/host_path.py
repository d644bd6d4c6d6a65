"""Host-path benchmark: what the built-in SUT delivers when the model costs nothing.

The built-in harness's SUT (`pytest_mig.workload.sut.BatchingSUT`, its batch worker, response
packing and completion log) under real LoadGen Offline (mlperf_loadgen, the QSL constructed as
the harness does), with a zero-cost model: no compute, one resnet50-shaped response per sample
(an int32 top-1 class) from a batch output the model "returned" (`responses.BatchOutput`, the shape
every GPU predictor hands the SUT). The whole process is pinned to one core, so samples/s is
what the host path gives on one core: the ceiling of every built-in workload, whatever the GPU.

    python benchmarks/host_path.py --json benchmarks/results/host_path.json

Each repeat is a fresh LoadGen test (`--repeats`, default 3, best reported: other processes on
a shared machine only slow a repeat down). LoadGen's own figure is used (the summary's
"Samples per second"). The last stdout line is a JSON object with `samples_per_s`.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GOAL = 100_000  # samples/s (issue 22: four times the fastest GPU figure measured)
PILOT_MARGIN = 1.25


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def one_test(batch: int, samples: int, duration_ms: int, expected_qps: float, log_dir: Path) -> dict:
    import mlperf_loadgen as lg
    import numpy as np

    from pytest_mig.results.summary import parse_summary
    from pytest_mig.workload import sut
    from pytest_mig.workload.completions import CompletionLog
    from pytest_mig.workload.responses import BatchOutput

    rows = np.arange(batch, dtype=np.int32).reshape(batch, 1)  # resnet50: one int32 class per sample

    def zero_cost(indices):  # the model: nothing computed, a batch of rows handed back
        return BatchOutput(rows[:len(indices)])

    worker = sut.BatchingSUT(zero_cost, batch, CompletionLog(log_dir))
    handle = lg.ConstructFastSUT(worker.issue, worker.flush)
    qsl = lg.ConstructQSL(samples, samples, lambda _: None, lambda _: None)
    cfg = sut.RunConfig(benchmark="resnet50", scenario="Offline", mode="performance", log_dir=log_dir,
                        min_duration_ms=duration_ms, target_qps=expected_qps)
    cal = sut.Calibration(latency_s=1e-6, batch_size=batch, batch_s=batch * 1e-6)
    settings, _ = sut.test_settings(cfg, cal)
    t0 = time.perf_counter()
    sut._start_test(handle, qsl, settings, log_dir).join()
    wall = time.perf_counter() - t0
    worker.stop()
    lg.DestroyQSL(qsl)
    lg.DestroyFastSUT(handle)
    summary = parse_summary(log_dir / "mlperf_log_summary.txt")
    name, rate = summary.headline_name, summary.headline_value
    assert name == "Samples per second", name
    return {"samples_per_s": round(rate, 1), "valid": summary.valid, "wall_s": round(wall, 2),
            "completed": worker.completions.count if worker.completions else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the result object here too")
    ap.add_argument("--batch", type=int, default=1024, help="SUT batch size (default 1024)")
    ap.add_argument("--samples", type=int, default=1024, help="QSL sample count (default 1024)")
    ap.add_argument("--duration-ms", type=int, default=2000, help="LoadGen min duration (default 2000)")
    ap.add_argument("--expected-qps", type=float, default=None,
                    help="offline_expected_qps (LoadGen issues 1.1 x this x duration samples); default: "
                         "1.25 x the rate of an uncounted 0.5 s pilot test, so each test outlasts its min duration")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--core", type=int, default=None, help="core to pin to (default: the first allowed)")
    args = ap.parse_args(argv)
    allowed = sorted(os.sched_getaffinity(0))
    core = allowed[0] if args.core is None else args.core
    os.sched_setaffinity(0, {core})  # LoadGen's threads and the SUT worker inherit it
    import torch

    torch.set_num_threads(1)
    runs = []
    with tempfile.TemporaryDirectory(prefix="pytest-mig-host-path-") as tmp:
        expected = args.expected_qps
        if expected is None:
            (Path(tmp) / "pilot").mkdir()
            pilot = one_test(args.batch, args.samples, 500, 300_000.0, Path(tmp) / "pilot")
            expected = PILOT_MARGIN * pilot["samples_per_s"]
            print(f"[host-path] pilot: {pilot['samples_per_s']:,.0f} samples/s; offline_expected_qps "
                  f"{expected:,.0f}", flush=True)
        for k in range(args.repeats):
            log_dir = Path(tmp) / f"run-{k}"
            log_dir.mkdir()
            run = one_test(args.batch, args.samples, args.duration_ms, expected, log_dir)
            print(f"[host-path] repeat {k + 1}/{args.repeats}: {run['samples_per_s']:,.0f} samples/s "
                  f"(valid={run['valid']}, {run['completed']} samples, {run['wall_s']} s)", flush=True)
            runs.append(run)
    valid = [r for r in runs if r["valid"]] or runs  # LoadGen's VALID tests (too short ones are not)
    best = max(r["samples_per_s"] for r in valid)
    result = {"samples_per_s": best, "goal": GOAL, "meets_goal": best >= GOAL,
              "statistic": f"best of {len(valid)} {'VALID' if valid[0]['valid'] else 'INVALID (none valid)'} "
                           f"of {len(runs)}",
              "runs": runs, "offline_expected_qps": round(expected), "batch": args.batch, "cores": 1, "core": core, "cpu": cpu_model(),
              "cpus_on_machine": os.cpu_count(), "python": platform.python_version(),
              "measured": "built-in BatchingSUT + real LoadGen Offline, zero-cost model, resnet50-shaped responses"}
    line = json.dumps(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
