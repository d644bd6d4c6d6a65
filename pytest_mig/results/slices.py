"""Every slice's figure and the aggregate over the slices of one case (the whole-GPU view).

Rules:
- A slice is one workload on one partition: the main or a background. Its figure is its
  LoadGen headline (parsed like the main's: metric, validity, latencies) and, when its
  completion log covers the main's window, the samples it completed in that window.
- The figure summed into the aggregate is samples/s: the main's throughput headline
  (Offline "Samples per second", Server "Completed samples per second"); for a background
  its rate inside the main's window when measured (basis `main window`, from
  completions.tsv), else its own run's headline (basis `own run`). Latency headlines
  (SingleStream/MultiStream) are reported per slice and never summed.
- The aggregate is per benchmark (sum of samples/s over its slices), and, when an isolated
  rate of that benchmark was measured, normalised against it: `normalised` = aggregate /
  isolated (in units of the isolated partition), `efficiency` = normalised / slices.
- Samples/s of different models are not one quantity: `total_samples_per_s` is set only
  when every slice runs one benchmark; the one cross-model total is `total_normalised`, the
  sum of the benchmarks' normalised aggregates, set only when every benchmark has one.
No pytest, no GPU, no processes: values in, values out.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from pytest_mig.results.window import SOURCE, WindowCount
from pytest_mig.types import BenchmarkResult

MAIN_WINDOW = "main window"
OWN_RUN = "own run"


def is_throughput(metric_name: str) -> bool:
    return "per second" in metric_name.lower()


@dataclass
class SliceFigure:
    """One workload's result on its partition."""

    name: str  # "main", "bg1-bert"
    role: str  # "main" | "background"
    benchmark: str
    scenario: str
    profile: str  # the MIG profile the partition is (or stands in for)
    valid: bool | None = None
    result: str = ""  # VALID / INVALID / ""
    metric: str = ""
    value: float | None = None
    latencies_ns: dict[str, float] = field(default_factory=dict)
    samples_per_s: float | None = None  # what the aggregate sums
    basis: str = ""  # MAIN_WINDOW | OWN_RUN | "" (no throughput figure)
    window_samples: float | None = None
    window_s: float | None = None
    window_partial: bool = False
    window_source: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def latencies_ms(self) -> dict[str, float]:
        return {k: v / 1e6 for k, v in self.latencies_ns.items()}

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latencies_ms"] = self.latencies_ms
        return d


@dataclass
class BenchmarkAggregate:
    """All slices of one benchmark in a case, added up."""

    benchmark: str
    slices: int
    samples_per_s: float
    isolated_samples_per_s: float | None = None
    isolated_basis: str = ""  # e.g. "single slice 1g.10gb" or "full GPU"
    normalised: float | None = None  # samples_per_s / isolated_samples_per_s
    efficiency: float | None = None  # normalised / slices


@dataclass
class Aggregate:
    """The case's slices and their sums: what results.json, JUnit and Allure carry."""

    slices: list[SliceFigure] = field(default_factory=list)
    benchmarks: dict[str, BenchmarkAggregate] = field(default_factory=dict)
    total_samples_per_s: float | None = None  # one benchmark only
    total_normalised: float | None = None  # every benchmark normalised to its isolated rate

    def to_dict(self) -> dict[str, Any]:
        return {"slices": [s.to_dict() for s in self.slices],
                "benchmarks": {k: asdict(v) for k, v in self.benchmarks.items()},
                "total_samples_per_s": self.total_samples_per_s,
                "total_normalised": self.total_normalised}


def slice_figure(name: str, role: str, benchmark: str, scenario: str, profile: str,
                 result: BenchmarkResult | None, window: WindowCount | None = None,
                 error: str | None = None) -> SliceFigure:
    """The figure of one slice from its parsed result and its window count (either may lack)."""
    f = SliceFigure(name=name, role=role, benchmark=benchmark, scenario=scenario,
                    profile=profile)
    if error:
        f.errors.append(error)
    if result is not None:
        f.valid, f.result = result.valid, result.result_text
        f.metric, f.value = result.metric_name, result.metric_value
        f.latencies_ns = dict(result.latencies_ns)
        f.errors.extend(result.errors)
    if window is not None:
        f.window_samples, f.window_s = round(window.samples, 3), round(window.seconds, 4)
        f.window_partial, f.window_source = window.partial, SOURCE
    if role == "background" and window is not None and window.samples_per_s is not None:
        f.samples_per_s, f.basis = window.samples_per_s, MAIN_WINDOW
    elif f.value is not None and is_throughput(f.metric):
        f.samples_per_s, f.basis = f.value, (OWN_RUN if role == "background" else "main run")
    return f


def unread_slices(agg: Aggregate | None) -> list[str]:
    """One line per background slice whose figure could not be read (no headline, no window
    count): it is left out of the aggregate, and the case says so."""
    return [f"slice {s.name} ({s.benchmark} on {s.profile}) has no figure and is left out of "
            f"the aggregate: {'; '.join(s.errors) or 'no LoadGen headline, no completions'}"
            for s in (agg.slices if agg is not None else [])
            if s.role == "background" and s.value is None and s.samples_per_s is None]


def aggregate(slices: list[SliceFigure],
              isolated: Mapping[str, tuple[float, str]] | None = None) -> Aggregate:
    """Sum samples/s per benchmark; normalise by `isolated` {benchmark: (rate, basis)}."""
    agg = Aggregate(slices=list(slices))
    for s in slices:
        if s.samples_per_s is None:
            continue
        b = agg.benchmarks.setdefault(s.benchmark, BenchmarkAggregate(s.benchmark, 0, 0.0))
        b.slices += 1
        b.samples_per_s += s.samples_per_s
    for name, b in agg.benchmarks.items():
        rate, basis = (isolated or {}).get(name, (None, ""))
        if rate:
            b.isolated_samples_per_s, b.isolated_basis = rate, basis
            b.normalised = b.samples_per_s / rate
            b.efficiency = b.normalised / b.slices
    if len(agg.benchmarks) == 1:
        agg.total_samples_per_s = next(iter(agg.benchmarks.values())).samples_per_s
    if agg.benchmarks and all(b.normalised is not None for b in agg.benchmarks.values()):
        agg.total_normalised = sum(b.normalised or 0.0 for b in agg.benchmarks.values())
    return agg
