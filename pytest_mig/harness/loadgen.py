"""`python -m pytest_mig.harness.loadgen`: real MLCommons LoadGen driving a built-in PyTorch model.

Prints progress, then exactly one line ending in `running actual test.` right before
LoadGen's timed phase; LoadGen writes its logs (and accuracy.txt in accuracy mode) to --log-dir.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Sequence

BENCHMARK_NAMES = ("resnet50", "ssd-resnet34", "ssd-mobilenet", "bert", "rnnt", "dlrm", "3d-unet")
SUFFIXES = ("", "-99", "-99.9")
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")
MODES = ("performance", "accuracy")
SIZES = ("tiny", "small", "full")
PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
DEVICES = ("auto", "cpu", "cuda")


class Interrupted(BaseException):
    """Raised in the main thread by SIGTERM/SIGINT so the run can unwind and exit promptly."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m pytest_mig.harness.loadgen", description=__doc__.splitlines()[0])
    p.add_argument("--benchmark", required=True, choices=[b + s for b in BENCHMARK_NAMES for s in SUFFIXES],
                   metavar="{" + ",".join(BENCHMARK_NAMES) + "}[-99|-99.9]")
    p.add_argument("--scenario", required=True, choices=SCENARIOS)
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--log-dir", required=True, type=Path, help="where LoadGen writes mlperf_log_*")
    p.add_argument("--min-duration-ms", required=True, type=_non_negative_int)
    p.add_argument("--min-query-count", type=_positive_int,
                   help="raised to what LoadGen's early stopping needs for the scenario")
    p.add_argument("--target-qps", type=_positive_float,
                   help="Server target / Offline expected QPS (default: calibrated)")
    p.add_argument("--target-latency-ms", type=_positive_float,
                   help="Server latency bound / Single- and MultiStream expected latency")
    p.add_argument("--sample-count", type=_positive_int, default=256, help="QSL samples (accuracy set size)")
    p.add_argument("--size", choices=SIZES, default="tiny")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--batch-size", type=_positive_int, help="largest batch the SUT runs")
    return p


def _on_signal(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        from . import sut  # torch and LoadGen load here, after argument errors had their say

        if args.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                print("error: --device cuda but torch sees no CUDA device; use --device cpu or auto",
                      file=sys.stderr, flush=True)
                return 2
        config = sut.RunConfig(
            benchmark=args.benchmark, scenario=args.scenario, mode=args.mode, log_dir=args.log_dir,
            min_duration_ms=args.min_duration_ms, min_query_count=args.min_query_count,
            target_qps=args.target_qps, target_latency_ms=args.target_latency_ms,
            sample_count=args.sample_count, size=args.size, precision=args.precision,
            device=args.device, threads=args.threads, seed=args.seed, batch_size=args.batch_size)
        sut.run(config)
    except Interrupted as stop:
        print(f"[pytest-mig loadgen] stopped by signal {stop.signum}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(128 + stop.signum)  # skip interpreter teardown: LoadGen threads may still be live
    except Exception:
        traceback.print_exc()
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
