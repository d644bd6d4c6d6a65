"""How long `pytest-mig merge` takes as a fleet run grows: 10, 100, 1,000, 10,000 case records.

Builds synthetic shard run folders on disk that look like real ones (results.json, shard.json,
one folder per case with record.json, main.log and a LoadGen summary, one Allure result and
container per case), split over --shards shards, then times fleet.merge.merge_runs (the whole
command: checks, case folders hard-linked, results.json, history.jsonl, index.html,
summary.txt, Allure folder) into a fresh output folder per repeat. Writes a JSON with the
machine, load average, repeats and min/median/max per size.

    python benchmarks/merge_scaling.py --out benchmarks/results/merge_scaling.json
    python benchmarks/merge_scaling.py --sizes 10,100 --repeats 2 --out /tmp/m.json   # quick
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_mig.fleet.merge import merge_runs  # noqa: E402
from pytest_mig.report.records import failure_record  # noqa: E402

SUMMARY = (Path(__file__).resolve().parent.parent / "tests" / "data" / "mlperf_logs" /
           "loadgen-6.0.17" / "Offline-valid" / "mlperf_log_summary.txt")
BENCHES = ["resnet50", "ssd-resnet34", "bert", "rnnt", "dlrm", "3d-unet", "ssd-mobilenet"]


def record(n: int, run_dir: Path) -> dict:
    case = f"{BENCHES[n % len(BENCHES)]}-Offline-1g.10gb-performance-{n:05d}"
    nodeid = f"suites/datacenter/test_datacenter.py::test_hetero[{case}]"
    test_dir = run_dir / f"test_hetero_{case}"
    rec = failure_record(nodeid, "passed", "", test_dir=test_dir)
    rec.update(case=case, suite="datacenter", benchmark=BENCHES[n % len(BENCHES)],
               scenario="Offline", profile="1g.10gb", mode="performance",
               gpu_model="A100-SXM4-80GB", run_profile="nightly", duration_s=60.0 + n % 17)
    rec["result"] = {"valid": True, "result": "VALID", "invalid_reasons": [],
                     "metric": "Samples per second", "value": 1000.0 + n,
                     "latencies_ns": {"p50": 1e6, "p90": 2e6, "p99": 3e6},
                     "accuracy_metric": None, "accuracy": None, "accuracy_target": None,
                     "errors": [], "files": {"summary": str(test_dir / "main" /
                                                            "mlperf_log_summary.txt")}}
    rec["health"] = [{"name": f"bg{k}-dlrm", "healthy": True, "problems": []} for k in range(6)]
    rec["phases"] = {"backgrounds_started": 0.0, "backgrounds_ready": 2.0, "main_start": 2.0,
                     "main_end": 62.0}
    rec["paths"]["main_log"] = str(test_dir / "main.log")
    return rec


def build(root: Path, cases: int, shards: int) -> list[Path]:
    parts = [list(range(k, cases, shards)) for k in range(shards)]
    nodeids = [[record(n, root)["nodeid"] for n in part] for part in parts]
    runs = []
    summary = SUMMARY.read_text()
    for k, part in enumerate(parts, start=1):
        run = root / f"shards/{k}/20260101-000000-{k}-shard-{k}-of-{shards}"
        allure = run / "allure-results"
        allure.mkdir(parents=True)
        recs = []
        for n in part:
            rec = record(n, run)
            d = Path(rec["paths"]["dir"])
            (d / "main").mkdir(parents=True)
            (d / "main" / "mlperf_log_summary.txt").write_text(summary)
            (d / "main.log").write_text("[harness] line\n" * 120)
            (d / "record.json").write_text(json.dumps(rec))
            uid = uuid.uuid4()
            (allure / f"{uid}-result.json").write_text(json.dumps({
                "uuid": str(uid), "historyId": f"h{n}", "name": f"test_hetero[{rec['case']}]",
                "status": "passed", "labels": [{"name": "suite", "value": "datacenter"}]}))
            (allure / f"{uuid.uuid4()}-container.json").write_text(json.dumps(
                {"children": [str(uid)], "befores": []}))
            recs.append(rec)
        header = {"run_id": run.name, "backend": "nvml", "simulated": False, "driver": "x",
                  "gpus": [{"index": 0, "name": "A100", "model": "A100-SXM4-80GB"}],
                  "layout": {"0": {"1g.10gb": 7}}, "harness": "loadgen",
                  "shard": {"index": k, "count": shards, "name": f"shard-{k}-of-{shards}",
                            "commit": "c0ffee"}}
        (run / "results.json").write_text(json.dumps({"run": header, "tests": recs}))
        (run / "shard.json").write_text(json.dumps({
            **header["shard"], "plan": "p", "suites": {"datacenter": "abc"},
            "nodeids": nodeids[k - 1], "shards": nodeids, "alluredir": str(allure)}))
        runs.append(run)
    return runs


def machine() -> dict:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform(),
            "load_average_at_start": os.getloadavg()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,1000,10000")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    result = {"what": "pytest-mig merge wall time (fleet.merge.merge_runs), synthetic shards",
              "machine": machine(), "shards": args.shards, "repeats": args.repeats,
              "sizes": []}
    for size in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory(prefix="merge-scaling-") as tmp:
            root = Path(tmp)
            t0 = time.perf_counter()
            runs = build(root, size, args.shards)
            built = time.perf_counter() - t0
            times = []
            for r in range(args.repeats):
                out = root / f"reports-{r}" / "merged"
                t0 = time.perf_counter()
                summary = merge_runs(runs, out)
                times.append(time.perf_counter() - t0)
                assert summary.cases == size and summary.allure_results == size, summary
                shutil.rmtree(out.parent)
        row = {"cases": size, "seconds": [round(t, 4) for t in times],
               "min_s": round(min(times), 4), "median_s": round(statistics.median(times), 4),
               "max_s": round(max(times), 4),
               "ms_per_case_median": round(1000 * statistics.median(times) / size, 3),
               "build_s": round(built, 2), "load_average_after": os.getloadavg()}
        result["sizes"].append(row)
        print(f"{size:>6} cases: median {row['median_s']:.3f} s ({row['ms_per_case_median']:.2f} "
              f"ms/case), min {row['min_s']:.3f} s, max {row['max_s']:.3f} s", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)  # after each size: nothing lost
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
