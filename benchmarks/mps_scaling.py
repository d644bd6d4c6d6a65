"""MPS partitions on a real GPU: does one share emulating a MIG profile get its fraction?

Runs the built-in harness (real LoadGen, Offline) for one benchmark: on the whole GPU with
no MPS, then as one MPS client limited like `--profile` alone, then as N such clients at
once. Reports samples/s and the ratios (a 1g.10gb share of an H100 is 16 of 132 SMs).
Needs an NVIDIA GPU and nvidia-cuda-mps-control; the daemon is always stopped.

    python benchmarks/mps_scaling.py --benchmark resnet50 --profile 1g.10gb --json out.json
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_mig.gpu.backend import open_backend  # noqa: E402
from pytest_mig.gpu.mps import MpsDaemon, share_for  # noqa: E402
from pytest_mig.gpu.profiles import get_model, profile_fraction  # noqa: E402
from pytest_mig.orchestration.process import child_env  # noqa: E402
from pytest_mig.results.summary import parse_summary  # noqa: E402


def harness_argv(args, log_dir: Path) -> list[str]:
    return [sys.executable, "-m", "pytest_mig.workload", "--benchmark", args.benchmark,
            "--scenario", "Offline", "--mode", "performance", "--log-dir", str(log_dir),
            "--min-duration-ms", str(args.min_duration_ms), "--size", args.size,
            "--precision", args.precision, "--device", "cuda", "--batch-size", str(args.batch_size),
            "--start-from-device"]


def run_many(args, tmp: Path, tag: str, n: int, extra_env: dict[str, str]) -> list[float]:
    procs = []
    for i in range(n):
        log_dir = tmp / f"{tag}-{i}"
        env = child_env({"CUDA_VISIBLE_DEVICES": args.gpu_uuid, **extra_env}, f"mps-{tag}")
        procs.append((log_dir, subprocess.Popen(harness_argv(args, log_dir), env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                text=True)))
    rates = []
    for log_dir, p in procs:
        out, _ = p.communicate(timeout=args.timeout)
        if p.returncode != 0:
            raise RuntimeError(f"{tag}: harness exited {p.returncode}:\n{out[-2000:]}")
        s = parse_summary(log_dir / "mlperf_log_summary.txt")
        rates.append(s.headline_value)
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="resnet50")
    ap.add_argument("--profile", default="1g.10gb")
    ap.add_argument("--size", default="full")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--min-duration-ms", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=7)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--timeout", type=float, default=240)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        nvml = open_backend("nvml", state_path=tmp / "unused.json")
        gpu = nvml.topology().gpus[0]
        args.gpu_uuid = gpu.uuid
        model = get_model(gpu.model_key)
        share = share_for(*profile_fraction(model, args.profile))
        whole = run_many(args, tmp, "whole", 1, {})[0]
        daemon = MpsDaemon(tmp, gpu.uuid)
        daemon.start()
        try:
            env = share.env(daemon.pipe_dir)
            alone = run_many(args, tmp, "alone", 1, env)[0]
            together = run_many(args, tmp, "together", args.clients, env)
        finally:
            daemon.stop()
    sm = profile_fraction(model, args.profile)[0]
    out = {"gpu": gpu.name, "benchmark": args.benchmark, "size": args.size,
           "precision": args.precision, "profile": args.profile, "sm_fraction": sm,
           "mps_thread_percentage": share.thread_percentage, "mps_memory_mb": share.memory_mb,
           "whole_gpu_samples_s": whole, "one_share_alone_samples_s": alone,
           "ratio_alone_over_whole": alone / whole, "expected_ratio_seventh": 1 / 7,
           "n_shares_together_samples_s": together, "sum_together_over_whole": sum(together) / whole}
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
