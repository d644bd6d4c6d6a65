"""Baseline comparison and the regression gate (`--mig-compare`, `--mig-compare-fail`).

Baselines (`--mig-compare`): `last` = the case's latest passed entry in reports/history.jsonl
from an earlier run; `median:N` = the median of its last N passed entries (noise-aware: one
lucky or unlucky run neither sets nor trips the gate); `PATH` = a history.jsonl, results.json
or reports/<run-id> folder (its latest entry per case). Entries match on case id, GPU model
and backend, so simulated numbers never baseline hardware numbers. PATH may also be a
published MLPerf submission folder: report/published.py matches benchmark x scenario there.

Direction: headlines "... per second" are higher-is-better (kind `throughput`), headlines
"... latency (ns)" lower-is-better (kind `latency`); `pNN` (p50, p99, p99.9 ...) are LoadGen's
latency percentiles, lower-is-better; `accuracy` is higher-is-better.
Gate (`--mig-compare-fail=throughput:5%,p99:10%`): a passed case whose metric moved the bad way
by more than its threshold fails with a message naming metric, baseline, value and change.
"""
from __future__ import annotations

import math
import re
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pytest_mig.errors import ConfigError, did_you_mean
from pytest_mig.report.history import HistoryEntry, read_baseline_source
from pytest_mig.report.published import PublishedBaselines, is_submission

KINDS = ("throughput", "latency", "accuracy")
PERCENTILE = re.compile(r"p\d+(\.\d+)?")
HIGHER, LOWER = "higher", "lower"


class RegressionFailure(AssertionError):
    """A case passed on its own but regressed against its baseline beyond the threshold."""


@dataclass(frozen=True)
class CompareSpec:
    """Where baselines come from: mode 'last', 'median' (last `n` runs) or 'path'."""

    mode: str
    n: int = 1
    path: Path | None = None

    def describe(self) -> str:
        if self.mode == "median":
            return f"median of the last {self.n} passed runs"
        if self.mode == "path":
            return f"latest entries of {self.path}"
        return "last passed run"


def parse_compare(text: str, cwd: Path) -> CompareSpec:
    """'last' | 'median:N' | a path (relative to `cwd`); ConfigError with the fix otherwise."""
    value = text.strip()
    if value == "last":
        return CompareSpec("last")
    if value.startswith("median"):
        _, sep, n = value.partition(":")
        if not sep or not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--mig-compare={text}: expected median:N with N >= 1 runs, "
                              "e.g. --mig-compare=median:5")
        return CompareSpec("median", int(n))
    path = Path(value) if Path(value).is_absolute() else cwd / value
    if not path.exists():
        raise ConfigError(f"--mig-compare={text}: no such file or folder ({path}); use last, "
                          "median:N, or a path to a history.jsonl, results.json or "
                          "reports/<run-id> folder")
    return CompareSpec("path", path=path)


def parse_thresholds(text: str) -> dict[str, float]:
    """'throughput:5%,p99:10%' -> {'throughput': 5.0, 'p99': 10.0}; ConfigError otherwise."""
    out: dict[str, float] = {}
    example = "e.g. --mig-compare-fail=throughput:5%,p99:10%"
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, sep, pct = part.partition(":")
        kind = kind.strip()
        if not sep:
            raise ConfigError(f"--mig-compare-fail={text}: '{part}' is not KIND:PERCENT; {example}")
        if kind not in KINDS and not PERCENTILE.fullmatch(kind):
            raise ConfigError(f"--mig-compare-fail={text}: unknown metric '{kind}'"
                              f"{did_you_mean(kind, KINDS + ('p99', 'p90', 'p50'))}; use "
                              f"{', '.join(KINDS)} or a latency percentile pNN (p50, p99, "
                              f"p99.9); {example}")
        try:
            value = float(pct.strip().removesuffix("%"))
        except ValueError:
            value = -1.0
        if not math.isfinite(value) or value < 0:
            raise ConfigError(f"--mig-compare-fail={text}: '{pct}' for {kind} is not a "
                              f"percentage >= 0; {example}")
        out[kind] = value
    if not out:
        raise ConfigError(f"--mig-compare-fail={text!r}: no thresholds given; {example}")
    return out


@dataclass
class Comparison:
    """One metric of one case against its baseline."""

    case: str
    metric: str  # display name, e.g. "Samples per second" or "p99 latency (ns)"
    kind: str  # throughput | latency | accuracy | pNN | metric (direction unknown)
    better: str  # higher | lower | "" (unknown: shown, never gated)
    value: float
    baseline: float | None
    baseline_runs: int = 0
    spread_pct: float | None = None  # (max - min) / median of the baseline runs, median mode
    threshold_pct: float | None = None
    regressed: bool = False
    # The baseline's own spread: min and max of its rounds (--mig-rounds) or of the last N
    # runs (median:N); a change inside it is noise, never a regression.
    baseline_min: float | None = None
    baseline_max: float | None = None
    within_spread: bool = False  # beyond the threshold, but inside the baseline's spread
    baseline_problem: str = ""  # the baseline run(s) had this metric, but none usable

    @property
    def change_pct(self) -> float | None:
        if self.baseline is None or not usable(self.baseline) or not usable(self.value):
            return None
        return (self.value - self.baseline) / abs(self.baseline) * 100.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "change_pct": self.change_pct}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Comparison:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def verdict(self) -> str:
        if not usable(self.value):
            return f"INVALID value ({self.value!r})" if self.regressed else "invalid value"
        if self.baseline_problem:
            return (f"INVALID baseline ({self.baseline_problem})" if self.regressed
                    else f"invalid baseline ({self.baseline_problem})")
        if self.baseline is None:
            return "no baseline"
        if self.regressed:
            return f"REGRESSED (> {self.threshold_pct:g}%)"
        if self.within_spread:
            return (f"ok: beyond {self.threshold_pct:g}% but inside the baseline's spread "
                    f"{_num(self.baseline_min)}-{_num(self.baseline_max)}")
        return "ok" if self.threshold_pct is not None else ""

    def sentence(self) -> str:
        change = self.change_pct
        return (f"{self.metric} {_num(self.value)} vs baseline {_num(self.baseline)} "
                f"({'n/a' if change is None else f'{change:+.1f}%'}; {self.better} is better, "
                f"threshold {self.threshold_pct:g}%)")


def usable(value: Any) -> bool:
    """A number a comparison can use: finite and > 0."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def headline_kind(metric: str) -> tuple[str, str]:
    name = metric.lower()
    if "per second" in name:
        return "throughput", HIGHER
    if "latency" in name:
        return "latency", LOWER
    return "metric", ""


Metric = tuple[str, str, str, float]  # display name, kind, better, value


def _metrics(entry: HistoryEntry, thresholds: dict[str, float]) -> list[Metric]:
    """(display name, kind, better, value) of every metric of `entry` to compare."""
    out = []
    if entry.value is not None and entry.metric:
        kind, better = headline_kind(entry.metric)
        out.append((entry.metric, kind, better, float(entry.value)))
    for kind in thresholds:
        if PERCENTILE.fullmatch(kind) and kind in entry.latencies_ns:
            out.append((f"{kind} latency (ns)", kind, LOWER, entry.latencies_ns[kind]))
        elif kind == "accuracy" and entry.accuracy is not None:
            out.append((entry.accuracy_metric or "accuracy", "accuracy", HIGHER, entry.accuracy))
    return out


def _value_of(entry: HistoryEntry, kind: str, metric: str) -> float | None:
    if kind in ("throughput", "latency", "metric"):
        return entry.value if entry.metric == metric else None
    if kind == "accuracy":
        return entry.accuracy
    return entry.latencies_ns.get(kind)


class Baselines:
    """Baseline values per case key, from history entries chosen by a CompareSpec."""

    def __init__(self, spec: CompareSpec, history: list[HistoryEntry], current_run: str,
                 problems: list[str] | None = None) -> None:
        self.spec = spec
        # A published submission folder (results/<system>/...) baselines by benchmark x scenario.
        self.published = (PublishedBaselines(spec.path) if spec.mode == "path" and spec.path
                          and is_submission(spec.path) else None)
        source = [] if self.published else \
            read_baseline_source(spec.path, problems) if spec.mode == "path" and spec.path else history
        self.by_key: dict[tuple[str, str, str], list[HistoryEntry]] = {}
        for e in source:
            if e.run_id != current_run and e.outcome == "passed":
                self.by_key.setdefault(e.key, []).append(e)

    def baseline(self, entry: HistoryEntry, kind: str,
                 metric: str) -> tuple[float | None, int, float | None]:
        """(value, runs it came from, spread %) for one metric of `entry`'s case."""
        # NaN, infinities, zero and negatives are no baseline (a gate against them says "ok"
        # to anything): skipped here, so the comparison says "no baseline".
        published = self.published.lookup(entry) if self.published else None
        entries = [published] if published else self.by_key.get(entry.key, [])
        values = [v for e in entries if (v := _value_of(e, kind, metric)) is not None and usable(v)]
        if not values:
            return None, 0, None
        if self.spec.mode != "median":
            return values[-1], 1, None
        last = values[-self.spec.n:]
        mid = statistics.median(last)
        spread = (max(last) - min(last)) / abs(mid) * 100.0 if mid else None
        return mid, len(last), spread

    def band(self, entry: HistoryEntry, kind: str, metric: str) -> tuple[float, float] | None:
        """(min, max) the baseline itself spans: its rounds (a --mig-rounds run's headline) or,
        for median:N, the last N runs; None when one single value is all there is."""
        entries = self.by_key.get(entry.key, []) if not self.published else []
        if not entries:
            return None
        if self.spec.mode == "median":
            values = [v for e in entries if (v := _value_of(e, kind, metric)) is not None
                      and usable(v)][-self.spec.n:]
            lows = [e.value_min for e in entries[-self.spec.n:]
                    if kind in ("throughput", "latency", "metric") and e.value_min is not None]
            highs = [e.value_max for e in entries[-self.spec.n:]
                     if kind in ("throughput", "latency", "metric") and e.value_max is not None]
            if len(values) + len(lows) < 2:
                return None
            return min(values + lows), max(values + highs)
        last = [e for e in entries if _value_of(e, kind, metric) is not None]
        if (last and kind in ("throughput", "latency", "metric")
                and last[-1].value_min is not None and last[-1].value_max is not None):
            return last[-1].value_min, last[-1].value_max
        return None

    def unusable(self, entry: HistoryEntry, kind: str, metric: str) -> str:
        """Why the baseline a --mig-compare=PATH names gives no usable value for this metric
        of `entry`'s case ('' when it gives one, or has none): NaN (null once written),
        infinite, zero or negative there. (Within history, 'last' and 'median' skip such runs
        for earlier usable ones, as a first run has no baseline.)"""
        if self.spec.mode != "path":
            return ""
        published = self.published.lookup(entry) if self.published else None
        entries = [published] if published else self.by_key.get(entry.key, [])
        bad = []
        for e in entries:
            v = _value_of(e, kind, metric)
            if v is not None and usable(v):
                return ""
            if v is not None:
                bad.append(repr(v))
            elif kind in ("throughput", "latency", "metric") and e.metric == metric:
                bad.append("null (NaN or infinite when measured)")
        if not bad:
            return ""
        return f"{', '.join(sorted(set(bad)))} in {self.spec.describe()}: not a number to compare with"

    def compare(self, entry: HistoryEntry, thresholds: dict[str, float]) -> list[Comparison]:
        out = []
        for metric, kind, better, value in _metrics(entry, thresholds):
            base, runs, spread = self.baseline(entry, kind, metric)
            threshold = thresholds.get(kind) if better else None
            c = Comparison(case=entry.case, metric=metric, kind=kind, better=better, value=value,
                           baseline=base, baseline_runs=runs, spread_pct=spread,
                           threshold_pct=threshold)
            change = c.change_pct
            if base is None:
                # A NaN, infinite, zero or negative baseline would turn the gate off unsaid:
                # the comparison says so, and a gated one fails.
                c.baseline_problem = self.unusable(entry, kind, metric)
            if threshold is not None and c.baseline_problem:
                c.regressed = True
            elif threshold is not None and not usable(value):
                c.regressed = True  # a NaN or non-positive value is never "ok"
            elif threshold is not None and change is not None:
                worse = -change if better == HIGHER else change
                band = self.band(entry, kind, metric)
                outside = True
                if band is not None:
                    c.baseline_min, c.baseline_max = band
                    outside = value < band[0] if better == HIGHER else value > band[1]
                c.regressed = worse > threshold and outside
                c.within_spread = worse > threshold and not outside
            out.append(c)
        return out


def failure_message(case: str, regressions: list[Comparison], spec: CompareSpec) -> str:
    lines = [f"{case}: performance regression against the {spec.describe()} "
             "(--mig-compare-fail):"]
    lines += [f"  {c.sentence()}" for c in regressions]
    return "\n".join(lines)


def format_table(comparisons: list[Comparison]) -> list[str]:
    """Aligned rows: case, metric, baseline, value, change, verdict."""
    rows = [("case", "metric", "baseline", "value", "change", "")]
    for c in comparisons:
        change = c.change_pct
        base = _num(c.baseline)
        if c.baseline_runs > 1:
            spread = f", range {c.spread_pct:.1f}%" if c.spread_pct is not None else ""
            base += f" (n={c.baseline_runs}{spread})"
        rows.append((c.case, c.metric, base, _num(c.value),
                     "-" if change is None else f"{change:+.1f}%", c.verdict()))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
