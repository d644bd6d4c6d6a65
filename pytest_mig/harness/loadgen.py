"""`--harness=loadgen`, the built-in backend: real MLCommons LoadGen driving the project's PyTorch models.

Plugin side: it builds the command line of the child program (`python -m pytest_mig.workload`)
and checks --mig-harness-opt values; it never imports pytest_mig.workload (nor torch). The
choices and defaults both sides share come from the bottom module pytest_mig/workload_contract.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pytest_mig.errors import HarnessError, did_you_mean
from pytest_mig.harness.base import READY_PATTERN, collect_loadgen_outputs
from pytest_mig.types import BenchmarkResult, Finished, LaunchSpec, Partition, WorkSpec
from pytest_mig.workload_contract import BACKGROUND_CPU_DUTY, DEVICES, MODULE, PRECISIONS, SIZES

# Suite/CLI option name -> flag of `python -m pytest_mig.workload`.
PASSTHROUGH = {"size": "--size", "precision": "--precision", "device": "--device",
               "threads": "--threads", "seed": "--seed", "batch_size": "--batch-size",
               "target_latency_ms": "--target-latency-ms", "compile": "--compile",
               "compile_cache": "--compile-cache"}


def for_benchmark(options, benchmark: str) -> dict[str, str]:
    """Options as they apply to one benchmark: `precision.rnnt: fp32` overrides `precision`."""
    out = {k: v for k, v in options.items() if "." not in k}
    for key, value in options.items():
        base, _, bench = key.partition(".")
        if bench == benchmark:
            out[base] = value
    return out


# Switches: `until_stopped` is set for session-lifetime backgrounds; the others are the
# GPU path's (NVIDIA's start_from_device: samples resident in GPU memory, the built-in
# harness's default on CUDA; host_resident_samples keeps them in host memory instead).
FLAGS = {"until_stopped": "--until-stopped", "start_from_device": "--start-from-device",
         "host_resident_samples": "--no-start-from-device",
         "no_cuda_graphs": "--no-cuda-graphs", "no_channels_last": "--no-channels-last"}


def check_options(options: dict[str, str]) -> None:
    """HarnessError naming the first --mig-harness-opt the built-in harness cannot use."""
    choices = {"size": SIZES, "precision": PRECISIONS, "device": DEVICES}
    known = sorted(set(PASSTHROUGH) | set(FLAGS) | {"background_cpu_duty"})
    for key, value in options.items():
        base = key.split(".")[0]
        if base not in known:
            raise HarnessError(f"--mig-harness-opt {key}={value}: the loadgen harness has no "
                               f"option {base!r}{did_you_mean(base, known)}; it reads "
                               f"{', '.join(known)}")
        if base in choices and value not in choices[base]:
            raise HarnessError(f"--mig-harness-opt {key}={value}: {base} must be one of "
                               f"{', '.join(choices[base])}")
        if base in ("threads", "batch_size", "seed", "target_latency_ms"):
            try:
                number = float(value)
            except ValueError:
                number = -1.0
            low = 0 if base == "seed" else 1e-9
            if not (low <= number <= 1e9) or (base != "target_latency_ms" and number != int(number)):
                raise HarnessError(f"--mig-harness-opt {key}={value}: {base} must be a "
                                   f"{'number' if base == 'target_latency_ms' else 'whole number'}"
                                   f" {'>= 0' if base == 'seed' else '> 0'} (at most 1e9)")
        if base == "background_cpu_duty":
            try:
                duty = float(value)
            except ValueError:
                duty = -1.0
            if not 0 < duty <= 1:
                raise HarnessError(f"--mig-harness-opt {key}={value}: background_cpu_duty must be "
                                   "a fraction in (0, 1], e.g. 0.1 (1 = unpaced)")


class LoadgenHarness:
    name = "loadgen"
    stop_exit_zero = True  # our own child ends its LoadGen test and exits 0 on SIGTERM

    def __init__(self, options: dict[str, str]) -> None:
        self.options = options

    def launch(self, work: WorkSpec, partition: Partition, env: dict[str, str],
               log_path: Path) -> LaunchSpec:
        argv = [sys.executable, "-m", MODULE,
                "--benchmark", work.benchmark, "--scenario", work.scenario,
                "--mode", work.mode, "--log-dir", str(work.log_dir),
                "--min-duration-ms", str(work.min_duration_ms),
                "--min-query-count", str(work.min_query_count),
                "--sample-count", str(work.sample_count)]
        if work.target_qps:
            argv += ["--target-qps", f"{work.target_qps:g}"]
        # The command line beats the suite; within each, "key.<benchmark>" beats "key".
        merged = {**for_benchmark(work.options, work.benchmark),
                  **for_benchmark(self.options, work.benchmark)}
        for key, flag in PASSTHROUGH.items():
            if merged.get(key) not in (None, ""):
                argv += [flag, str(merged[key])]
        for key, flag in FLAGS.items():  # on/off switches: "1"/"true" turns them on
            if str(merged.get(key, "")).lower() in ("1", "true", "yes", "on"):
                argv.append(flag)
        if work.role == "background":
            # Backgrounds stand for other slices; on a CPU they can only contend for cores,
            # so there they are a paced load (the child paces on the CPU only, never on a GPU).
            argv += ["--cpu-duty", str(merged.get("background_cpu_duty") or BACKGROUND_CPU_DUTY)]
        return LaunchSpec(argv=tuple(argv), env=env, cwd=Path.cwd(), ready_pattern=READY_PATTERN,
                          log_path=log_path, result_dir=work.log_dir)

    def collect(self, work: WorkSpec, finished: Finished, result_dir: Path) -> BenchmarkResult:
        return collect_loadgen_outputs(work, result_dir)
