"""Typed values that cross layers: suites -> orchestration -> harnesses -> results -> reports.

Kept in one small module so every layer imports the same shapes and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

PERFORMANCE = "performance"
ACCURACY = "accuracy"
TEST_MODES = (PERFORMANCE, ACCURACY)


@dataclass(frozen=True)
class RunProfile:
    """How long and how hard one run is (smoke / nightly / submission), from the suite."""

    name: str
    min_duration_ms: int
    min_query_count: int
    # Server: the QPS the main is asked to sustain; None lets the harness calibrate.
    server_target_qps: float | None = None
    # Background workloads: how long they must stay in their timed phase beyond the main.
    start_time_buffer_s: float = 120.0
    end_time_buffer_min_s: float = 1.0
    background_min_duration_ms: int | None = None  # None = derived from the main (auto)
    sample_count: int = 256  # accuracy-mode samples / performance sample set size


@dataclass(frozen=True)
class Case:
    """One pytest item: main benchmark x scenario x MIG profile x test mode on a GPU model."""

    suite: str
    benchmark: str
    scenario: str
    profile: str  # MIG profile the main runs on, e.g. "1g.10gb"
    mode: str  # PERFORMANCE | ACCURACY
    gpu_model: str  # key of fixtures/gpus/<model>.yaml, e.g. "A100-SXM4-80GB"
    background: tuple[str, ...]  # background benchmarks, resolved for the suite's slot count
    background_spec: str  # what the suite asked for: alias or "explicit"
    run_profile: RunProfile
    accuracy_fraction: float  # 0.99 or 0.999 of the reference
    accuracy_metric: str  # name of the headline accuracy metric, e.g. "accuracy", "mAP"
    accuracy_reference: float  # MLPerf FP32 reference value of that metric (percent units)
    harness_options: Mapping[str, str] = field(default_factory=dict)
    background_lifetime: str = "per-test"
    skip_reason: str | None = None  # set when the GPU model cannot run it
    background_requested: tuple[str, ...] = ()  # the suite's set before any cut to the slots
    # A layout suite's case: the named MIG layout (mig-parted NAME or FILE:NAME) it runs
    # under, every slice beside the main filled from background_requested in turn.
    layout: str = ""

    @property
    def id(self) -> str:
        base = f"{self.benchmark}-{self.scenario}-{self.profile}-{self.mode}"
        return f"{base}-{self.layout.rsplit(':', 1)[-1]}" if self.layout else base


@dataclass(frozen=True)
class Partition:
    """What one workload is pinned to: a MIG device, an MPS share, or the whole GPU."""

    kind: str  # "mig" | "mps" | "none"
    gpu_index: int
    gpu_uuid: str
    device_id: str  # value for CUDA_VISIBLE_DEVICES, e.g. "MIG-<uuid>"
    profile: str  # MIG profile it is (or stands in for), e.g. "1g.10gb"
    simulated: bool
    env: Mapping[str, str] = field(default_factory=dict)  # extra env, e.g. MPS limits
    gi_id: int | None = None
    ci_id: int | None = None


@dataclass(frozen=True)
class WorkSpec:
    """One workload to run: what a harness turns into a command line."""

    role: str  # "main" | "background"
    name: str  # "main" or "bg1-resnet50": unique within a case, used for log names
    benchmark: str
    scenario: str
    mode: str  # PERFORMANCE | ACCURACY
    min_duration_ms: int
    min_query_count: int
    log_dir: Path  # where LoadGen writes its logs for this workload
    target_qps: float | None = None
    sample_count: int = 256
    options: Mapping[str, str] = field(default_factory=dict)  # harness-specific knobs


@dataclass(frozen=True)
class LaunchSpec:
    """A fully resolved command: argv (never a shell string), explicit env, readiness."""

    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    ready_pattern: str  # regex matched against each output line
    log_path: Path  # combined stdout+stderr of the process
    result_dir: Path  # where the harness leaves mlperf_log_summary.txt etc.


@dataclass(frozen=True)
class Finished:
    """How a workload process ended, with the timeline the health check needs."""

    name: str
    started_at: float  # time.time() at spawn
    ready_at: float | None  # when the ready line was read
    ended_at: float | None  # None: still running when observed (then stopped by us)
    exit_code: int | None
    log_path: Path
    stopped_by_us: bool = False  # alive when pytest-mig signalled it (process.py decides)
    stop_signalled_at: float | None = None
    stuck: str = ""  # it would not die after SIGKILL (its /proc state) and was abandoned
    log_error: str = ""  # its log could not be written in full (disk full, file-size limit)


@dataclass
class BenchmarkResult:
    """What a harness made of a finished workload: LoadGen verdict and accuracy."""

    benchmark: str
    scenario: str
    mode: str
    result_dir: Path
    valid: bool | None = None  # None: no summary found
    result_text: str = ""  # "VALID" / "INVALID" / ""
    invalid_reasons: list[str] = field(default_factory=list)
    metric_name: str = ""  # headline, e.g. "Samples per second"
    metric_value: float | None = None
    latencies_ns: dict[str, float] = field(default_factory=dict)
    accuracy_metric: str | None = None
    accuracy_value: float | None = None  # percent units, as the accuracy script prints
    accuracy_reference: float | None = None  # harness's own FP32 reference, when it knows one
    files: dict[str, Path] = field(default_factory=dict)  # name -> path (summary, detail, accuracy)
    errors: list[str] = field(default_factory=list)
    harness_path: dict[str, Any] = field(default_factory=dict)  # built-in harness: compile mode, ready_s


@dataclass
class WorkloadHealth:
    """Health verdict of one background workload against the main's timeline."""

    name: str
    benchmark: str
    started_at: float
    ready_at: float | None
    ended_at: float | None
    exit_code: int | None
    margin_s: float | None  # ended_at - main_end (None while still running)
    healthy: bool
    problems: list[str] = field(default_factory=list)
    log_path: Path | None = None
    ended_by: str = ""  # "stopped by pytest-mig", "itself" or "" (still running)


@dataclass
class HealthReport:
    """All background workloads of one main run."""

    workloads: list[WorkloadHealth] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(w.healthy for w in self.workloads)

    def problems(self) -> list[str]:
        return [f"{w.name}: {p}" for w in self.workloads for p in w.problems]


@dataclass(frozen=True)
class Slot:
    """A leased set of partitions on ONE GPU: where the main runs and where backgrounds run."""

    gpu_index: int
    gpu_uuid: str
    gpu_model: str
    main: Partition
    background: tuple[Partition, ...]
    simulated: bool
