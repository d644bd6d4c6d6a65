"""`python -m pytest_mig.workload`: real MLCommons LoadGen driving a built-in PyTorch model.

Prints progress, then exactly one line ending in `running actual test.` right before
LoadGen's timed phase; LoadGen writes its logs (and accuracy.txt in accuracy mode) to --log-dir.
With --until-stopped it runs performance tests back to back (logs in run-<k>/) until SIGTERM,
then exits 0 with the last completed test's summary in --log-dir.
Right before the ready line it prints the path taken (`path: compile=...`) and writes it to
<log-dir>/harness_path.json, with `ready_s`, the seconds from process start to ready.
Torch and LoadGen load only after the arguments parsed (`sut`, `llm` are imported in main()).
"""
from __future__ import annotations

import time

STARTED = time.monotonic()  # before the heavy imports: ready_s counts them

import argparse  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path
from typing import Mapping, Sequence

from pytest_mig.workload.stopping import Interrupted, StopRequest
from pytest_mig.workload_contract import DEFAULT_PRECISION, DEVICES, LIFELINE_ENV, MODULE, PRECISIONS, SIZES

BENCHMARK_NAMES = ("resnet50", "ssd-resnet34", "ssd-mobilenet", "bert", "rnnt", "dlrm", "3d-unet",
                   "retinanet", "llama3.1-8b")
SUFFIXES = ("", "-99", "-99.9")
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")
MODES = ("performance", "accuracy")
COMPILE_SETTINGS = ("off", "auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


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


def _duty(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in (0, 1], got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
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
    p.add_argument("--precision", choices=PRECISIONS, default=DEFAULT_PRECISION,
                   help="auto (default): the CPU's native precision (fp16, bf16, else fp32; a benchmark "
                        "losing accuracy there runs fp32), fp16 on CUDA")
    p.add_argument("--device", choices=DEVICES, default="auto")
    p.add_argument("--threads", type=_positive_int, default=1, help="torch intra-op threads")
    p.add_argument("--seed", type=_non_negative_int, default=0)
    p.add_argument("--batch-size", type=_positive_int, help="largest batch the SUT runs")
    gpu = p.add_argument_group("GPU path (CUDA only; ignored on the CPU)")
    gpu.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, default=None,
                     help="one CUDA graph per batch size, partial batches padded (default: on; "
                          "rnnt graphs each greedy-decoder step, its encoder runs eager)")
    gpu.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                     help="channels-last layout for the conv nets (default: on)")
    gpu.add_argument("--start-from-device", action=argparse.BooleanOptionalAction, default=None,
                     help="hold QSL samples in GPU memory, loaded when LoadGen loads them, and gather "
                          "batches there by index (default: on for CUDA; --no-start-from-device keeps "
                          "them in host memory, copied per batch; a no-op on the CPU)")
    p.add_argument("--compile", choices=COMPILE_SETTINGS, default="auto",
                   help="torch.compile the model: auto (CUDA: the mode fixtures/compile_modes.yaml "
                        "names for the benchmark; CPU: off), off, or a mode; a failing compile falls "
                        "back to the uncompiled path")
    p.add_argument("--compile-cache", type=Path,
                   help="base folder of the compile cache (default: $PYTEST_MIG_COMPILE_CACHE, else "
                        "~/.cache/pytest-mig/inductor); one subfolder per torch/device/model/shape/precision")
    p.add_argument("--cpu-duty", type=_duty, default=1.0, metavar="FRACTION",
                   help="on the CPU only: the SUT computes at most this fraction of the time and "
                        "LoadGen is set for that paced rate (backgrounds: on a CPU they can only "
                        "contend for cores). Default 1 (unpaced)")
    p.add_argument("--until-stopped", action="store_true",
                   help="performance tests back to back (each at most "
                        "60 s, logs in <log-dir>/run-<k>/) until SIGTERM/SIGINT, then exit 0")
    return p


def _on_signal(signum: int, frame: object) -> None:
    raise Interrupted(signum)


LIFELINE_GRACE_S = 10.0  # after the lifeline breaks: the SIGTERM path's time before a hard exit
LIFELINE_NOTE = "stopped_by_lifeline.txt"  # in --log-dir


def watch_lifeline(environ: Mapping[str, str] = os.environ,
                   note: Path | None = None) -> threading.Thread | None:
    """Stop this process when the process that launched it is gone (see process.py).

    The lifeline fd (LIFELINE_ENV) reads end of file once no process holds its write end: the
    launching pytest died without stopping us. We then write `note` (LIFELINE_NOTE in the log
    dir: the reader of our output died with its process, so stdout/stderr are broken pipes),
    take our own SIGTERM path (logs kept) and exit hard if that has not ended us within
    LIFELINE_GRACE_S. No variable (run by hand): nothing to watch.
    """
    text = environ.get(LIFELINE_ENV)
    if not text:
        return None
    fd = int(text)

    def watch() -> None:
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        try:
            if note is not None:
                note.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} the pytest process that "
                                f"started this workload (pid {os.getppid()} now) is gone: stopped\n")
        except OSError:
            pass  # a full or vanished disk must not keep us alive
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(LIFELINE_GRACE_S)
        os._exit(128 + signal.SIGTERM)

    thread = threading.Thread(target=watch, name="lifeline", daemon=True)
    thread.start()
    return thread


def main(argv: Sequence[str] | None = None) -> int:
    cli = parser()
    args = cli.parse_args(argv)
    if args.until_stopped and args.mode != "performance":
        cli.error("--until-stopped runs performance tests; use --mode performance")
    stop = StopRequest() if args.until_stopped else None

    def on_signal(signum: int, frame: object) -> None:
        if stop is not None and stop.armed:
            stop.event.set()  # finish the current test, keep its logs, exit 0
        else:
            _on_signal(signum, frame)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    watch_lifeline(note=args.log_dir / LIFELINE_NOTE)
    try:
        t0 = time.perf_counter()
        from . import sut  # torch and LoadGen load here, after argument errors had their say
        sut.say(f"imports {time.perf_counter() - t0:.2f}s")

        if args.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                print("error: --device cuda but torch sees no CUDA device; use --device cpu or auto",
                      file=sys.stderr, flush=True)
                return 2
        from pytest_mig import cpu_native

        device_type = sut.resolve_device(args.device).type
        precision, why = cpu_native.resolve(args.precision, device_type, sut.canonical_benchmark(args.benchmark))
        sut.say(f"precision {precision}: {why}")
        config = sut.RunConfig(
            benchmark=args.benchmark, scenario=args.scenario, mode=args.mode, log_dir=args.log_dir,
            min_duration_ms=args.min_duration_ms, min_query_count=args.min_query_count,
            target_qps=args.target_qps, target_latency_ms=args.target_latency_ms,
            sample_count=args.sample_count, size=args.size, precision=precision, precision_reason=why,
            device=args.device, threads=args.threads, seed=args.seed, batch_size=args.batch_size,
            cuda_graphs=args.cuda_graphs, channels_last=args.channels_last,
            start_from_device=args.start_from_device, compile=args.compile,
            compile_cache=args.compile_cache, started=STARTED,
            cpu_duty=args.cpu_duty)
        from . import llm

        is_llm = sut.canonical_benchmark(args.benchmark) in llm.llm_benchmarks()
        if precision == "fp8" and not is_llm:
            cli.error(f"--precision fp8 (fp8 x fp8 matmuls) is the LLM's; {args.benchmark} runs "
                      f"fp32, bf16, fp16, int8 or int4")
        if is_llm:
            if precision not in llm.COMPUTE_DTYPES:
                print(f"error: {args.benchmark} computes in {', '.join(llm.COMPUTE_DTYPES)} (its weights "
                      f"are fp8 already), not --precision {precision}", file=sys.stderr, flush=True)
                return 2
            if stop is not None:  # a session background: back-to-back tests until stopped
                llm.run_until_stopped(config, stop)
            else:
                llm.run(config)
        elif stop is not None:
            sut.run_until_stopped(config, stop)
        else:
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
