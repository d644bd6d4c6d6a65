"""The run's settings: one typed value built from the command line at configure time.

Rules:
- Every default is written once, here (options.py declares the command-line options with
  these defaults; nothing else repeats them).
- A value on its own is checked when the command line is parsed (options.py's `parse_*`
  functions). `Settings` checks only what crosses values: the harness and its options, the
  main's start-up against its timeout, simulator options against the real driver, and the
  simulated GPU model (its tables may come from --mig-data, given anywhere on the line).
- One way in: plugin.py alone reads the parsed options (`config.getoption`) and builds
  Settings from them; every other module reads Settings.
- No pytest import: orchestration reads Settings without the pytest surface.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_mig.errors import ConfigError, GpuError, HarnessError
from pytest_mig.harness.registry import HarnessRegistry, built_in

if TYPE_CHECKING:  # parsed at parse time by options.py; loaded only by runs that use them
    from pytest_mig.plan.shard import ShardSpec
    from pytest_mig.report.compare import CompareSpec

BACKENDS = ("auto", "nvml", "simulated")
BACKGROUND_LIFETIMES = ("per-test", "session")
PARTITIONS = ("auto", "mig", "mps", "none")
CPU_PINNING = ("auto", "off")
# The --mlperf-* flags: harness option key -> the flag that sets it (its dest is the flag's
# name with underscores). Boolean flags set the key to "1".
MLPERF_FLAGS = {"mlperf_root": "--mlperf-root", "docker": "--mlperf-docker",
                "action": "--mlperf-action", "extra_run_args": "--mlperf-extra-run-args",
                "main_prefix": "--mlperf-main-prefix", "verbose": "--mlperf-verbose",
                "start_from_device": "--mlperf-start-from-device"}
MLPERF_BOOLEAN = frozenset({"verbose", "start_from_device"})
# Options that only NVIDIA's harness reads (start_from_device: the built-in harness too).
NVIDIA_ONLY = {k: v for k, v in MLPERF_FLAGS.items() if k != "start_from_device"}
MAX_SECONDS = 7 * 24 * 3600.0  # a week: anything longer is a typo (1e35)
MAX_DURATION_MS = 24 * 3600 * 1000  # a day of timed phase
MAX_ROUNDS = 50  # --mig-rounds: more is a typo, not a measurement plan
MAX_SIM_GPUS = 16  # the largest hosts (HGX/DGX) have 16; the simulator's PCI bus ids too
DEFAULT_SIM_GPU = "A100-SXM4-80GB"
DEFAULT_SAMPLE_INTERVAL_S = 0.2  # --mig-sample-interval (read by report/timeline.py)
DEFAULT_MIN_BUSY_PCT = 60.0  # --mig-min-busy: below it a case warns that it is host-bound


@dataclass(frozen=True)
class Settings:
    """Every user-facing knob of a run; built once at configure time."""

    backend: str = "auto"
    sim_gpu: str = DEFAULT_SIM_GPU
    sim_gpus: int = 1
    run_profile: str | None = None
    harness: str = "loadgen"
    harness_options: dict[str, str] = field(default_factory=dict)
    # The --harness values of this run: the built-ins and what conftests register.
    harnesses: HarnessRegistry = field(default_factory=built_in, compare=False, repr=False)
    lenient: bool = False
    reports: Path = Path("reports")
    lease_timeout_s: float = 600.0
    main_startup_s: float = 20.0
    main_timeout_s: float = 900.0
    partition: str = "auto"
    isolated_baseline: bool = False
    background: str | None = None  # per-test | session: overrides the suite's lifetime
    dry_run: bool = False
    min_duration_ms: int | None = None  # overrides the run profile's main min duration
    pass_env: tuple[str, ...] = ()  # --mig-env: caller's variables workloads inherit
    min_busy_pct: float = DEFAULT_MIN_BUSY_PCT  # --mig-min-busy (report/busy.py)
    rounds: int = 1  # --mig-rounds: each main runs this many times in its case (median kept)
    require_busy: bool = False  # --mig-require-busy: below --mig-min-busy fails the case
    backend_named: bool = False  # --mig-backend given: a pytest-mig run even without suites
    cpu_pinning: str = "auto"  # auto | off (gpu/affinity.py)
    sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S  # GPU timeline sampling; 0: off
    manage: bool = False  # --mig-manage: create each case's MIG layout, tear it down after
    layout: str | None = None  # --mig-layout FILE:NAME | NAME: one layout for every case
    compare: CompareSpec | None = None  # --mig-compare (report/compare.py)
    compare_fail: dict[str, float] = field(default_factory=dict)  # --mig-compare-fail
    allure_history: Path | None = None  # --mig-allure-history
    shard: ShardSpec | None = None  # --mig-shard I/N
    shard_durations: Path | None = None  # --mig-shard-durations (default: the run history)

    def __post_init__(self) -> None:
        if self.main_startup_s >= self.main_timeout_s:
            raise ConfigError(f"--mig-main-startup={self.main_startup_s:g} is not below "
                              f"--mig-main-timeout={self.main_timeout_s:g}: every main would be "
                              "stopped before its timed phase; raise the timeout")
        self._check_harness()
        if self.backend == "nvml" and (self.sim_gpus != 1 or self.sim_gpu != DEFAULT_SIM_GPU):
            flag = "--mig-sim-gpus" if self.sim_gpus != 1 else "--mig-sim-gpu"
            raise ConfigError(f"{flag} applies to the simulated GPU only, but --mig-backend=nvml "
                              "uses the real driver; drop it, or use --mig-backend=simulated")
        if self.sim_gpu != DEFAULT_SIM_GPU:
            from pytest_mig.gpu.profiles import get_model  # start-up: GPU tables only when asked
            try:
                get_model(self.sim_gpu)
            except GpuError as exc:
                raise ConfigError(f"--mig-sim-gpu={self.sim_gpu}: {exc}") from None
        self._check_conflicts()

    def _check_harness(self) -> None:
        """The harness exists and gets only options it reads (refused here, not at run time).
        What a flag feeds (--mig-command, --mlperf-*) is checked against --harness here;
        each harness checks its own options (harness/registry.py)."""
        entry = self.harnesses.entry(self.harness)
        keys = {k.split(".")[0] for k in self.harness_options}
        if self.harness == "command" and not self.harness_options.get("command", "").strip():
            raise ConfigError("--harness=command needs --mig-command, the program to run, e.g. "
                              "--mig-command='prog --bench {benchmark} --out {log_dir}'")
        if self.harness != "command" and "command" in keys:
            raise ConfigError(f"--mig-command is for --harness=command, but the harness is "
                              f"{self.harness}; add --harness=command or drop --mig-command")
        own = {k: v for k, v in self.harness_options.items()
               if self.harness == "nvidia" or k.split(".")[0] not in NVIDIA_ONLY}
        try:
            # start-up: an adapter loads only when it has options to check.
            entry.check_options(own)
        except HarnessError as exc:
            raise ConfigError(str(exc)) from None
        nvidia_only = sorted(keys & set(NVIDIA_ONLY))
        if self.harness != "nvidia" and nvidia_only:
            flag = NVIDIA_ONLY[nvidia_only[0]]
            raise ConfigError(f"{flag} (harness option {nvidia_only[0]}) is for --harness=nvidia, "
                              f"but the harness is {self.harness}; add --harness=nvidia or drop "
                              f"{flag}")

    def _check_conflicts(self) -> None:
        """--mig-manage / --mig-layout against --partition: ConfigError naming both, the fix."""
        if self.partition in ("mps", "none"):
            for flag, given in (("--mig-manage", self.manage), ("--mig-layout", self.layout)):
                if given:
                    raise ConfigError(f"{flag} works on MIG instances, but --partition="
                                      f"{self.partition} runs without them; use --partition=mig "
                                      f"(or auto) with {flag}, or drop {flag}")

