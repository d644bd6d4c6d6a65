"""Run-wide state of one pytest-mig run: settings, run id and directory, GPU backend, suites.

Plain Python (no pytest import) so the plugin hooks stay thin and this stays testable.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mig.errors import ConfigError, GpuError, HarnessError, did_you_mean
from pytest_mig.gpu.profiles import get_model
from pytest_mig.hetero import DurationEstimator
from pytest_mig.process import RUN_MARKER
from pytest_mig.runid import is_real_dir, make_run_dir, new_key, new_run_id  # noqa: F401

BACKENDS = ("auto", "nvml", "simulated")
BACKGROUND_LIFETIMES = ("per-test", "session")
PARTITIONS = ("auto", "mig", "mps", "none")
HARNESS_NAMES = ("loadgen", "nvidia", "command")  # pytest_mig.harness.HARNESSES
# Options that only NVIDIA's harness reads: harness option key -> the flag that sets it.
NVIDIA_ONLY = {"mlperf_root": "--mlperf-root", "docker": "--mlperf-docker",
               "action": "--mlperf-action", "extra_run_args": "--mlperf-extra-run-args",
               "main_prefix": "--mlperf-main-prefix", "verbose": "--mlperf-verbose"}
# (start_from_device is read by both the nvidia and the built-in harness.)
SECONDS_OPTIONS = {"lease_timeout_s": "--mig-lease-timeout", "main_startup_s": "--mig-main-startup",
                   "main_timeout_s": "--mig-main-timeout"}
MAX_SECONDS = 7 * 24 * 3600.0  # a week: anything longer is a typo (1e35)
MAX_DURATION_MS = 24 * 3600 * 1000  # a day of timed phase
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_SIM_GPUS = 16  # the largest hosts (HGX/DGX) have 16; the simulator's PCI bus ids too
DEFAULT_SIM_GPU = "A100-SXM4-80GB"


@dataclass(frozen=True)
class Settings:
    """Every user-facing knob, validated once at configure time."""

    backend: str = "auto"
    sim_gpu: str = DEFAULT_SIM_GPU
    sim_gpus: int = 1
    run_profile: str | None = None
    harness: str = "loadgen"
    harness_options: dict[str, str] = field(default_factory=dict)
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

    def __post_init__(self) -> None:
        if self.partition not in PARTITIONS:
            raise ConfigError(f"--partition={self.partition}: unknown partition kind"
                              f"{did_you_mean(self.partition, PARTITIONS)}; choose one of "
                              f"{', '.join(PARTITIONS)}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"--mig-backend={self.backend}: unknown backend"
                              f"{did_you_mean(self.backend, BACKENDS)}; choose one of "
                              f"{', '.join(BACKENDS)}")
        if self.background is not None and self.background not in BACKGROUND_LIFETIMES:
            raise ConfigError(f"--mig-background={self.background}: unknown lifetime"
                              f"{did_you_mean(self.background, BACKGROUND_LIFETIMES)}; choose "
                              f"one of {', '.join(BACKGROUND_LIFETIMES)}")
        if self.min_duration_ms is not None and not 0 <= self.min_duration_ms <= MAX_DURATION_MS:
            raise ConfigError(f"--mig-min-duration={self.min_duration_ms}: must be 0 to "
                              f"{MAX_DURATION_MS} ms (a day), e.g. --mig-min-duration=600000")
        if not str(self.reports).strip() or str(self.reports) == ".":
            raise ConfigError("--mig-reports names no folder: run folders would land in the "
                              "current directory; give a folder, e.g. --mig-reports=reports")
        for name in self.pass_env:
            if not ENV_NAME.fullmatch(name):
                raise ConfigError(f"--mig-env {name!r}: not a variable name; give a NAME only "
                                  "(the value is taken from the environment), e.g. "
                                  "--mig-env HF_TOKEN")
        if not 1 <= self.sim_gpus <= MAX_SIM_GPUS:
            raise ConfigError(f"--mig-sim-gpus={self.sim_gpus}: needs at least 1 GPU and at most "
                              f"{MAX_SIM_GPUS}")
        for name, flag in SECONDS_OPTIONS.items():
            value = getattr(self, name)
            if not math.isfinite(value) or not 0 < value <= MAX_SECONDS:
                raise ConfigError(f"{flag}={value}: must be a finite number of seconds > 0, "
                                  f"e.g. {flag}={getattr(Settings, name):g}, and at most "
                                  f"{MAX_SECONDS:g} (a week)")
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
            try:
                get_model(self.sim_gpu)
            except GpuError as exc:
                raise ConfigError(f"--mig-sim-gpu={self.sim_gpu}: {exc}") from None

    def _check_harness(self) -> None:
        """The harness exists and gets only options it reads (refused here, not at run time)."""
        if self.harness not in HARNESS_NAMES:
            raise ConfigError(f"--harness={self.harness}: unknown harness"
                              f"{did_you_mean(self.harness, HARNESS_NAMES)}; choose one of "
                              f"{', '.join(HARNESS_NAMES)}")
        keys = {k.split(".")[0] for k in self.harness_options}
        if self.harness == "command" and not self.harness_options.get("command", "").strip():
            raise ConfigError("--harness=command needs --mig-command, the program to run, e.g. "
                              "--mig-command='prog --bench {benchmark} --out {log_dir}'")
        if self.harness != "command" and "command" in keys:
            raise ConfigError(f"--mig-command is for --harness=command, but the harness is "
                              f"{self.harness}; add --harness=command or drop --mig-command")
        try:
            if self.harness == "command":
                from pytest_mig.harness.command import OPTIONS, check_template
                check_template(self.harness_options["command"])
                unknown = sorted(keys - set(OPTIONS) - set(NVIDIA_ONLY))
                if unknown:
                    raise ConfigError(f"--mig-harness-opt {unknown[0]}=...: the command harness "
                                      f"has no option {unknown[0]!r}; it reads "
                                      f"{', '.join(OPTIONS)} (put the program's own options in "
                                      "--mig-command)")
            elif self.harness == "loadgen":
                from pytest_mig.harness.loadgen import check_options
                check_options({k: v for k, v in self.harness_options.items()
                               if k.split(".")[0] not in NVIDIA_ONLY and k != "command"})
        except HarnessError as exc:
            raise ConfigError(str(exc)) from None
        nvidia_only = sorted(keys & set(NVIDIA_ONLY))
        if self.harness != "nvidia" and nvidia_only:
            flag = NVIDIA_ONLY[nvidia_only[0]]
            raise ConfigError(f"{flag} (harness option {nvidia_only[0]}) is for --harness=nvidia, "
                              f"but the harness is {self.harness}; add --harness=nvidia or drop "
                              f"{flag}")


def check_conflicts(settings: Settings, manage: bool = False, layout: str | None = None) -> None:
    """Options that contradict each other across plugins (--mig-manage and --mig-layout are
    registered by manage_plugin); ConfigError naming both and the fix."""
    if settings.partition in ("mps", "none"):
        for flag, given in (("--mig-manage", manage), ("--mig-layout", layout)):
            if given:
                raise ConfigError(f"{flag} works on MIG instances, but --partition="
                                  f"{settings.partition} runs without them; use --partition=mig "
                                  f"(or auto) with {flag}, or drop {flag}")


def parse_harness_options(pairs: list[str]) -> dict[str, str]:
    """`key=value` strings from --mig-harness-opt into a dict, refusing malformed ones."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        # KEY or KEY.<benchmark> (applies to one benchmark only, e.g. precision.rnnt=fp32)
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z0-9_-]+)?", key.strip()):
            raise ConfigError(f"--mig-harness-opt {pair!r}: expected KEY=VALUE or "
                              "KEY.<benchmark>=VALUE, e.g. precision=bf16 or precision.rnnt=fp32")
        out[key.strip()] = value.strip()
    return out


def safe_name(text: str) -> str:
    """A test id as a directory name: no slashes, brackets or spaces."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")[:180] or "test"


class MigSession:
    """Lazily opens the GPU backend: unit-test runs that never use a case never touch NVML."""

    def __init__(self, settings: Settings, run_id: str, rootdir: Path, key: str | None = None,
                 worker: bool = False) -> None:
        self.settings = settings
        self.run_id = run_id
        self.key = key or new_key()  # every workload of the run carries it (process.py)
        self.worker = worker  # an xdist worker uses the folder its controller made
        self._made = False
        reports = settings.reports if settings.reports.is_absolute() else rootdir / settings.reports
        self.reports_root = reports
        self.run_dir = reports / run_id
        self._nvml: Any = None
        self._topology: Any = None
        self.suites: dict[Path, Any] = {}
        self.mps_daemons: dict[str, Any] = {}
        self.pool: Any = None  # background.BackgroundPool, for session-lifetime backgrounds
        self.held_lease: Any = None  # kept across tests while session backgrounds run
        self.durations = DurationEstimator()
        # --mig-isolated-baseline with session backgrounds: baselines measured before the
        # pool started (case id -> HeteroOutcome holding them); test names already tried.
        self.baselines: dict[str, Any] = {}
        self.baselines_done: set[str] = set()
        self.manager: Any = None  # manage_plugin.LayoutManager: each case's MIG layout
        self.write_errors: list[str] = []  # report files that could not be written (one line)

    def ensure_run_dir(self) -> Path:
        """The run folder: made exclusively (a fresh id if the name exists, even as a
        symlink) by the controller; a worker joins its controller's real folder."""
        if self._made:
            return self.run_dir
        if self.worker:
            self.reports_root.mkdir(parents=True, exist_ok=True)
            try:
                os.mkdir(self.run_dir)
            except FileExistsError:
                pass
            if not is_real_dir(self.run_dir):
                raise ConfigError(f"{self.run_dir}: the run folder is not a plain folder (a "
                                  "symlink?); pytest-mig writes only into folders it made")
        else:
            self.run_id, self.run_dir = make_run_dir(self.reports_root, self.run_id, self.key)
            os.environ[RUN_MARKER] = self.run_id
        self._made = True
        return self.run_dir

    @property
    def nvml(self):
        if self._nvml is None:
            from pytest_mig.gpu.backend import open_backend
            self.ensure_run_dir()
            os.environ.setdefault(RUN_MARKER, self.run_id)
            self._nvml = open_backend(
                self.settings.backend, state_path=self.run_dir / "simulated-gpu.json",
                sim_model=self.settings.sim_gpu, sim_gpus=self.settings.sim_gpus)
        return self._nvml

    def _surely_simulated(self) -> bool:
        if self.settings.backend == "simulated":
            return True
        from pytest_mig.gpu.probe import nvml_library_loads
        return self.settings.backend == "auto" and not nvml_library_loads()

    def topology(self, refresh: bool = False):
        if self._topology is None or refresh:
            self._topology = self.nvml.topology()
        return self._topology

    @property
    def simulated(self) -> bool:
        return self.topology().backend == "simulated"

    def gpu_model(self) -> str:
        """Model key of the GPUs of this run (the first GPU's; mixed hosts use the first).

        A run that will surely simulate (--mig-backend=simulated, or auto with no NVML
        library) knows its model from --mig-sim-gpu: collection opens no backend.
        """
        if self._nvml is None and self._surely_simulated():
            return self.settings.sim_gpu
        topo = self.topology()
        if not topo.gpus:
            return "none"
        gpu = topo.gpus[0]
        return gpu.model_key or gpu.name

    def suite(self, path: Path):
        path = path.resolve()
        if path not in self.suites:
            from pytest_mig.suite import load_suite
            self.suites[path] = load_suite(path)
        return self.suites[path]

    def partition_kind(self, gpu) -> str:
        """auto = MIG instances when MIG is on, else the reason-giving MIG path (a skip)."""
        return "mig" if self.settings.partition == "auto" else self.settings.partition

    def mps_pipe(self, gpu) -> Path:
        """Start (once) the MPS control daemon for `gpu`; clients find it by this pipe dir."""
        from pytest_mig.gpu.mps import MpsDaemon
        if gpu.uuid not in self.mps_daemons:
            daemon = MpsDaemon(self.ensure_run_dir(), gpu.uuid)
            self.mps_daemons[gpu.uuid] = daemon
            daemon.start()
        return self.mps_daemons[gpu.uuid].pipe_dir

    def lifetime(self, case) -> str:
        """--mig-background, else per-test for submission runs (MLPerf's rule), else the suite's."""
        if self.settings.background:
            return self.settings.background
        if case.run_profile.name == "submission":
            return "per-test"
        return case.background_lifetime

    def background_pool(self):
        if self.pool is None:
            from pytest_mig.background import BackgroundPool
            self.pool = BackgroundPool(self.ensure_run_dir() / "session-backgrounds")
        return self.pool

    def stop_session_backgrounds(self, interrupted: str = ""):
        """Stop and check session backgrounds; returns their HealthReport (None if none ran).
        `interrupted` names what interrupted the run ('SIGTERM', 'SIGINT'), if anything."""
        if self.pool is None:
            return None
        report = self.pool.stop_all(interrupted=interrupted)
        if self.held_lease is not None:
            self.held_lease.release()
            self.held_lease = None
        return report

    def close(self) -> None:
        """Stop what the run started at session level (backgrounds, MPS daemons) and what a
        killed xdist worker of this run left running; idempotent."""
        self.stop_session_backgrounds()
        for daemon in self.mps_daemons.values():
            daemon.stop()
        self.mps_daemons.clear()
        if self.run_dir.exists():
            self.reap_orphans()
            self.sweep()

    def sweep(self, everyone: bool = False) -> list[str]:
        """Kill what this process's stopped workloads left running (escaped descendants:
        a setsid'd grandchild ignoring SIGTERM); `everyone`: any process of the run. Each
        is noted in orphans.log; returns their descriptions."""
        from pytest_mig.process import sweep_escaped
        killed = sweep_escaped(self.run_id, self.key, None if everyone else os.getpid())
        if killed and self.run_dir.exists():
            try:
                with open(self.run_dir / "orphans.log", "a", encoding="utf-8") as fh:
                    for text in killed:
                        fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} killed escaped "
                                 f"process {text}\n")
            except OSError:
                pass
        return killed

    def reap_orphans(self) -> list[tuple[int, str]]:
        """Kill this run's workloads whose pytest process died; each noted in orphans.log."""
        from pytest_mig.process import reap_orphans
        reaped = reap_orphans(self.run_id, self.key)
        if reaped:
            with open(self.run_dir / "orphans.log", "a", encoding="utf-8") as fh:
                for pid, _ in reaped:
                    fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} killed workload pid {pid}: "
                             "the pytest process that started it (an xdist worker) died\n")
        return reaped

    def lock_dir(self) -> Path:
        if self.simulated:  # a simulated GPU belongs to this run alone
            return self.ensure_run_dir() / "locks"
        from pytest_mig.gpu.leases import state_dir
        return state_dir() / "locks"

    def test_dir(self, test_id: str) -> Path:
        return self.ensure_run_dir() / safe_name(test_id)
