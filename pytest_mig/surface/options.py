"""Every command-line option of pytest-mig, declared here and nowhere else, in groups.

Rules:
- plugin.py's `pytest_addoption` calls `add_options`; each `add_*_options(group)` adds one
  area's options (as pytest-benchmark's `add_display_options`/`add_global_options` do).
- A default is written once: run settings take theirs from `Settings` (settings.py).
- A value is checked when the command line is parsed: each option with a value has a
  `type=parse_*` that returns the typed value or raises `argparse.ArgumentTypeError` with a
  one-line message naming the option, the value and the fix (pytest turns it into a usage
  error, exit 4). What depends on several options or on files named by another option
  (--mig-layout, --mig-sim-gpu's tables, --mig-run-profile against the suites, a harness and
  its options) is checked at configure time instead (settings.py, plugin.py).
- No pytest import, no I/O beyond the existence checks of paths given as values.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from pathlib import Path

from pytest_mig.errors import ConfigError, did_you_mean
from pytest_mig.harness.registry import BUILT_IN
from pytest_mig.harness.registry import NAME as HARNESS_NAME
from pytest_mig.run.settings import (BACKENDS, BACKGROUND_LIFETIMES, CPU_PINNING,
                                     DEFAULT_MIN_BUSY_PCT, DEFAULT_SAMPLE_INTERVAL_S,
                                     MAX_DURATION_MS, MAX_ROUNDS, MAX_SECONDS, MAX_SIM_GPUS,
                                     PARTITIONS, Settings)

GROUP = ("mig", "pytest-mig: heterogeneous MIG benchmarking")
NVIDIA_GROUP = ("mig-nvidia", "pytest-mig: NVIDIA MLPerf harness (--harness=nvidia)")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# KEY or KEY.<benchmark> (applies to one benchmark only, e.g. precision.rnnt=fp32)
HARNESS_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+(\.[0-9][A-Za-z0-9_-]*)*)?")  # a version dot: llama3.1-8b


def add_options(parser) -> None:
    """All of pytest-mig's options (called once, from plugin.py's pytest_addoption)."""
    g = parser.getgroup(*GROUP)
    add_gpu_options(g)
    add_harness_options(g)
    add_nvidia_options(parser.getgroup(*NVIDIA_GROUP))
    add_run_options(g)
    add_manage_options(g)
    add_report_options(g)
    add_fleet_options(g)


# -- groups ----------------------------------------------------------------------------------

def add_gpu_options(g) -> None:
    """Which GPUs: the NVML backend, the simulated GPU, the packaged data, partitions."""
    g.addoption("--mig-backend", default=None, type=parse_backend, metavar="auto|nvml|simulated",
                help="GPU access: auto (real NVML if a driver is present, else simulated), "
                     "nvml, simulated. Default: auto")
    g.addoption("--mig-sim-gpu", default=Settings.sim_gpu, metavar="MODEL",
                help="GPU model the simulator presents (fixtures/gpus/<model>.yaml). "
                     f"Default: {Settings.sim_gpu}")
    g.addoption("--mig-data", default=None, type=parse_data_dir, metavar="DIR",
                help="folder overriding the packaged data (gpus/, layouts/, benchmarks.yaml; "
                     "what it lacks comes from the package); same as $PYTEST_MIG_DATA")
    g.addoption("--mig-sim-gpus", type=parse_sim_gpus, default=Settings.sim_gpus, metavar="N",
                help=f"number of simulated GPUs. Default: {Settings.sim_gpus}")
    g.addoption("--mig-partition", "--partition", dest="mig_partition",
                default=Settings.partition, type=parse_partition, metavar="|".join(PARTITIONS),
                help="what workloads are pinned to: mig (MIG instances; auto picks it), mps "
                     "(CUDA MPS client shares sized like the MIG profile), none (whole GPU "
                     f"shared); --partition is the old name. Default: {Settings.partition}")
    g.addoption("--mig-cpu-pinning", default=Settings.cpu_pinning, type=parse_cpu_pinning,
                metavar="|".join(CPU_PINNING),
                help="pin each workload to its share of the CPU cores local to its GPU "
                     "(NVML CPU affinity, split among the GPU's workloads); off: no pinning. "
                     "A no-op that says so when there are fewer cores than workloads. Default: auto")
    g.addoption("--mig-lease-timeout", type=parse_seconds("--mig-lease-timeout", "lease_timeout_s"),
                default=Settings.lease_timeout_s, metavar="SECONDS",
                help=f"seconds a worker waits for a free GPU. Default: {Settings.lease_timeout_s:g}")


def add_harness_options(g) -> None:
    """What runs the main and the backgrounds."""
    g.addoption("--mig-harness", "--harness", dest="mig_harness", default=Settings.harness,
                type=parse_harness, metavar="NAME",
                help="harness backend: " + "; ".join(f"{e.name} ({e.summary})" for e in BUILT_IN)
                + "; or one a conftest registers (pytest_mig_register_harnesses, "
                f"docs/extending.md); --harness is the old name. Default: {Settings.harness}")
    g.addoption("--mig-harness-opt", action="append", default=[], metavar="KEY=VALUE",
                type=parse_harness_opt,
                help="harness option, e.g. precision=bf16 or size=small (repeatable)")
    g.addoption("--mig-command", default=None, metavar="TEMPLATE",
                help="argv template for --harness=command, e.g. 'prog {benchmark} {log_dir}'")


def add_nvidia_options(n) -> None:
    """NVIDIA's closed-division harness (--harness=nvidia): its own group."""
    n.addoption("--mlperf-root", default=None, metavar="DIR", help="closed/NVIDIA working directory")
    n.addoption("--mlperf-docker", default=None, metavar="CONTAINER", help="run every command via docker exec CONTAINER")
    n.addoption("--mlperf-action", default=None, metavar="TARGET",
                help="main make target: run_harness (default), run_audit_test01/04/05")
    n.addoption("--mlperf-extra-run-args", default=None, metavar="ARGS", help="extra RUN_ARGS for the main")
    n.addoption("--mlperf-main-prefix", default=None, metavar="PREFIX",
                help="command prefix for the main, e.g. 'nsys profile -o main'")
    n.addoption("--mlperf-start-from-device", action="store_true",
                help="pass --start_from_device to the main")
    n.addoption("--mlperf-verbose", action="store_true", help="pass --verbose to every run")


def add_run_options(g) -> None:
    """How each case runs: profile, durations, backgrounds, baselines, environment."""
    g.addoption("--mig-run-profile", default=Settings.run_profile, metavar="NAME",
                help="run profile of the suite: smoke, nightly, submission. Default: the "
                     "suite's default_run_profile (smoke in the shipped suites)")
    g.addoption("--mig-isolated-baseline", action="store_true",
                help="run each main alone first and report interference = 1 - hetero/isolated")
    g.addoption("--mig-background", default=Settings.background, type=parse_background,
                metavar="|".join(BACKGROUND_LIFETIMES),
                help="background lifetime, overriding the suite's: per-test (classic) or "
                     "session (started once per slot, kept across main runs). Default: the "
                     "suite's background.lifetime")
    g.addoption("--mig-dry-run", action="store_true",
                help="print every command and its environment per case (like NVIDIA's "
                     "--dryrun); run nothing: cases are skipped with their plan")
    g.addoption("--mig-min-duration", type=parse_min_duration, default=Settings.min_duration_ms,
                metavar="MS", help="main min duration in ms. Default: the run profile's "
                                   "min_duration_ms")
    g.addoption("--mig-env", action="append", default=[], metavar="NAME", type=parse_env_name,
                help="pass the caller's variable NAME to every workload (repeatable), e.g. "
                     "HF_TOKEN, HF_HOME, OMP_NUM_THREADS; names only: values never reach reports")
    g.addoption("--mig-lenient", action="store_true",
                help="background health problems become warnings instead of failures")
    g.addoption("--mig-main-startup", type=parse_seconds("--mig-main-startup", "main_startup_s"),
                default=Settings.main_startup_s,
                metavar="SECONDS",
                help="seconds allowed for the main to reach its timed phase (sizes backgrounds). "
                     f"Default: {Settings.main_startup_s:g}")
    g.addoption("--mig-main-timeout", type=parse_seconds("--mig-main-timeout", "main_timeout_s"),
                default=Settings.main_timeout_s,
                metavar="SECONDS",
                help=f"seconds after which a main run is stopped and failed. Default: "
                     f"{Settings.main_timeout_s:g}")


def add_manage_options(g) -> None:
    """MIG layouts: created per case (--mig-manage) or fixed (--mig-layout)."""
    g.addoption("--mig-manage", action="store_true", default=False,
                help="create each case's MIG layout (GPU + compute instances) and destroy only "
                     "the instances this run created at the end; never changes MIG mode")
    g.addoption("--mig-layout", default=None, metavar="FILE:NAME",
                help="MIG layout for every case, in mig-parted's format: FILE:NAME, or NAME "
                     "from fixtures/layouts/ (default: the case's profile + background fill)")


def add_report_options(g) -> None:
    """Run outputs: the reports folder, GPU sampling, compare gate, Allure history."""
    g.addoption("--mig-reports", default=Settings.reports, type=parse_reports, metavar="DIR",
                help=f"folder for run folders and history.jsonl. Default: {Settings.reports}")
    g.addoption("--mig-sample-interval", type=parse_sample_interval,
                default=DEFAULT_SAMPLE_INTERVAL_S, metavar="SECONDS",
                help="GPU metric sampling interval per case (timeline.csv/.png); 0 turns it "
                     f"off. Default: {DEFAULT_SAMPLE_INTERVAL_S:g}")
    g.addoption("--mig-rounds", type=parse_rounds, default=Settings.rounds, metavar="N",
                help="run each main N times in its case (backgrounds sized to outlast all N); "
                     "the headline is the median, with min, max and spread in results.json; "
                     "the gate fails only beyond both the threshold and the baseline's own "
                     f"spread. Default: {Settings.rounds}")
    g.addoption("--mig-min-busy", type=parse_min_busy, default=Settings.min_busy_pct,
                metavar="PCT",
                help="warn when the main's slice was busy less than PCT %% of its timed phase "
                     "(GPU busy: GPM SM activity, else NVML utilisation), a sign that the figure "
                     f"measures the workload's host path. Default: {DEFAULT_MIN_BUSY_PCT:g}")
    g.addoption("--mig-require-busy", action="store_true",
                help="fail a case that passed but whose main was busy less than --mig-min-busy "
                     "(simulated GPUs too: their warning says nothing was measured)")
    g.addoption("--mig-compare", default=None, type=parse_compare, metavar="last|median:N|PATH",
                help="compare each case's headline metric with a baseline from "
                     "reports/history.jsonl (last run, median of the last N runs) or from "
                     "PATH (history.jsonl, results.json, reports/<run-id>, or a published MLPerf "
                     "results/<system> folder: same benchmark variant and scenario)")
    g.addoption("--mig-compare-fail", default=None, type=parse_compare_fail, metavar="KIND:PCT,...",
                help="fail cases that regressed beyond thresholds against the --mig-compare "
                     "baseline (default baseline: last), e.g. throughput:5%%,p99:10%%; kinds: "
                     "throughput, latency, accuracy, pNN")
    g.addoption("--mig-allure-history", default=None, metavar="DIR",
                help="previous Allure report (or its history/ folder) whose history/ is copied "
                     "into --alluredir so trends carry over")


def add_fleet_options(g) -> None:
    """One shard of a fleet run (fleet/)."""
    g.addoption("--mig-shard", default=None, type=parse_shard, metavar="I/N",
                help="run shard I of N (1-based): cases split by measured durations, cases "
                     "sharing a MIG layout kept together; merge with `pytest-mig merge`")
    g.addoption("--mig-shard-durations", default=None, type=parse_shard_durations,
                metavar="PATH",
                help="history.jsonl whose durations balance the shards (default: "
                     "<--mig-reports>/history.jsonl); every shard must read the same file")


# -- value parsers: typed value, or ArgumentTypeError("--flag=value: what; the fix") ----------

def _one_of(flag: str, what: str, choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(
                f"{flag}={value}: unknown {what}{did_you_mean(value, choices)}; choose one of "
                f"{', '.join(choices)}")
        return value
    return parse


_backend = _one_of("--mig-backend", "backend", BACKENDS)
parse_partition = _one_of("--partition", "partition kind", PARTITIONS)
parse_background = _one_of("--mig-background", "lifetime", BACKGROUND_LIFETIMES)


def parse_harness(value: str) -> str:
    """A harness name; which names exist is known at configure time, once conftests and
    plugins have registered theirs (harness/registry.py)."""
    if not HARNESS_NAME.match(value):
        raise argparse.ArgumentTypeError(
            f"--harness={value}: not a harness name; use lowercase letters, digits, '-' and "
            f"'_' (built in: {', '.join(e.name for e in BUILT_IN)})")
    return value


parse_cpu_pinning = _one_of("--mig-cpu-pinning", "pinning", CPU_PINNING)


def parse_backend(value: str) -> str:
    """--mig-backend: auto, nvml or simulated ('' is auto, as before: the option unset)."""
    return value if value == "" else _backend(value)


def parse_seconds(flag: str, setting: str) -> Callable[[str], float]:
    """A parser for `flag`: finite seconds in (0, a week]; the example is its default."""
    example = getattr(Settings, setting)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
            raise argparse.ArgumentTypeError(
                f"{flag}={text}: must be a finite number of seconds > 0, e.g. {flag}={example:g}, "
                f"and at most {MAX_SECONDS:g} (a week)")
        return value
    return parse


def _whole(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def parse_sim_gpus(text: str) -> int:
    n = _whole(text)
    if n is None or not 1 <= n <= MAX_SIM_GPUS:
        raise argparse.ArgumentTypeError(
            f"--mig-sim-gpus={text}: needs at least 1 GPU and at most {MAX_SIM_GPUS}")
    return n


def parse_rounds(text: str) -> int:
    n = _whole(text)
    if n is None or not 1 <= n <= MAX_ROUNDS:
        raise argparse.ArgumentTypeError(
            f"--mig-rounds={text}: must be a whole number from 1 to {MAX_ROUNDS}, e.g. "
            "--mig-rounds=3")
    return n


def parse_min_duration(text: str) -> int:
    ms = _whole(text)
    if ms is None or not 0 <= ms <= MAX_DURATION_MS:
        raise argparse.ArgumentTypeError(
            f"--mig-min-duration={text}: must be 0 to {MAX_DURATION_MS} ms (a day), e.g. "
            "--mig-min-duration=600000")
    return ms


def parse_reports(text: str) -> Path:
    path = Path(text)
    if not str(path).strip() or str(path) == ".":
        raise argparse.ArgumentTypeError(
            "--mig-reports names no folder: run folders would land in the current directory; "
            "give a folder, e.g. --mig-reports=reports")
    return path


def parse_env_name(name: str) -> str:
    if not ENV_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(
            f"--mig-env {name!r}: not a variable name; give a NAME only (the value is taken from "
            "the environment), e.g. --mig-env HF_TOKEN")
    return name


def parse_harness_opt(pair: str) -> tuple[str, str]:
    """'KEY=VALUE' or 'KEY.<benchmark>=VALUE' -> (key, value), both stripped."""
    key, sep, value = pair.partition("=")
    if not sep or not HARNESS_KEY.fullmatch(key.strip()):
        raise argparse.ArgumentTypeError(
            f"--mig-harness-opt {pair!r}: expected KEY=VALUE or KEY.<benchmark>=VALUE, e.g. "
            "precision=bf16 or precision.rnnt=fp32")
    return key.strip(), value.strip()


def parse_data_dir(value: str) -> str:
    """--mig-data: an existing folder, made absolute (workloads inherit it)."""
    path = Path(value).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a folder; give a folder holding gpus/, layouts/ or benchmarks.yaml")
    return str(path.resolve())


def parse_sample_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"--mig-sample-interval={text}: must be >= 0 seconds (0 turns sampling off), e.g. "
            f"--mig-sample-interval={DEFAULT_SAMPLE_INTERVAL_S:g}")
    return value


def parse_min_busy(text: str) -> float:
    """--mig-min-busy: a percentage 0..100 ('60' or '60%')."""
    try:
        value = float(text.strip().removesuffix("%"))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(
            f"--mig-min-busy={text}: must be a percentage from 0 to 100 (0 turns the warning "
            f"off), e.g. --mig-min-busy={DEFAULT_MIN_BUSY_PCT:g}")
    return value


# The next three parse with their layer's own code, loaded only when the option is given:
# report.compare and plan.shard (with report.history) would add about 30 ms to every start-up.

def parse_compare(text: str):
    """--mig-compare: a CompareSpec (a path is taken relative to the invocation folder);
    an empty value is no comparison, as if the option were not given."""
    if not text.strip():
        return None
    from pytest_mig.report.compare import parse_compare as parse
    return _typed(lambda: parse(text, Path.cwd()))


def parse_compare_fail(text: str) -> dict[str, float]:
    """--mig-compare-fail: thresholds {kind: percent}."""
    from pytest_mig.report.compare import parse_thresholds
    return _typed(lambda: parse_thresholds(text))


def parse_shard(text: str):
    """--mig-shard: a ShardSpec."""
    from pytest_mig.plan.shard import ShardSpec
    return _typed(lambda: ShardSpec.parse(text))


def parse_shard_durations(text: str) -> Path | None:
    """--mig-shard-durations: an existing file ('' is the default, as if not given)."""
    if not text:
        return None
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(
            f"--mig-shard-durations={text}: no such file; give the fleet's history.jsonl "
            "(written by `pytest-mig merge`) or leave it out to use estimates")
    return path


def _typed(parse):
    """A layer's ConfigError as argparse's type error (same one-line message)."""
    try:
        return parse()
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
