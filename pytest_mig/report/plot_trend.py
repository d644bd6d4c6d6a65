"""The nightly trend picture: each case's headline metric over the runs in history.jsonl,
with the `--mig-compare-fail` threshold drawn as the line a next run must not cross.

Rules: one panel per case (its key: case, GPU model, backend, so simulated numbers never
sit on a hardware line); the x-axis is the run's time (its history timestamp, else the
date-time its run id starts with; runs in history order where neither reads); the legend
lists only what was drawn; latency headlines in ms; the threshold of
run k is computed from the runs before it as the compare gate does (last passed run, or the
median of the last N passed runs); failed runs are drawn as red crosses, not joined.
"""
from __future__ import annotations

import re
import statistics
from datetime import datetime
from pathlib import Path
from typing import Iterable

from pytest_mig.report.compare import HIGHER, CompareSpec, headline_kind
from pytest_mig.report.history import HistoryEntry
from pytest_mig.report.plotting import SIMULATED_COLOR, pyplot, save

MAX_PANELS = 12


def _scale(metric: str) -> tuple[float, str]:
    return (1e-6, metric.replace("(ns)", "(ms)")) if "(ns)" in metric else (1.0, metric)


RUN_ID_TIME = re.compile(r"(\d{8}-\d{6})")


def run_time(entry: HistoryEntry) -> datetime | None:
    """When the run ran: its timestamp (ISO 8601), else the time its run id starts with."""
    for parse in (lambda: datetime.strptime(entry.timestamp, "%Y-%m-%dT%H:%M:%S%z"),
                  lambda: datetime.fromisoformat(entry.timestamp),
                  lambda: datetime.strptime(RUN_ID_TIME.match(entry.run_id).group(1),
                                            "%Y%m%d-%H%M%S")):
        try:
            t = parse()
            return t.replace(tzinfo=None)
        except (ValueError, TypeError, AttributeError):
            continue
    return None


def threshold_line(values: list[tuple[float, bool]], pct: float, better: str,
                   spec: CompareSpec | None) -> list[float | None]:
    """Per run: the value beyond which it would fail, from the passed runs before it."""
    out: list[float | None] = []
    passed: list[float] = []
    for value, ok in values:
        if not passed:
            out.append(None)
        else:
            n = spec.n if spec is not None and spec.mode == "median" else 1
            base = statistics.median(passed[-n:])
            out.append(base * (1 - pct / 100) if better == HIGHER else base * (1 + pct / 100))
        if ok:
            passed.append(value)
    return out


def write_trend_png(entries: Iterable[HistoryEntry], path: Path, cases: Iterable[str],
                    thresholds: dict[str, float], spec: CompareSpec | None) -> Path | None:
    """Draw the trend of `cases` (their history in `entries`); None without matplotlib or data."""
    plt = pyplot()
    if plt is None:
        return None
    wanted = set(cases)
    series: dict[tuple[str, str, str], list[HistoryEntry]] = {}
    for e in entries:
        if e.case in wanted and e.value is not None and e.metric:
            series.setdefault(e.key, []).append(e)
    keys = sorted(series)[:MAX_PANELS]
    if not keys:
        return None
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 2.4 * len(keys) + 0.6), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        runs = series[key]
        factor, label = _scale(runs[-1].metric)
        kind, better = headline_kind(runs[-1].metric)
        times = [run_time(e) for e in runs]
        by_time = all(t is not None for t in times)
        xs = times if by_time else list(range(1, len(runs) + 1))
        ys = [e.value * factor for e in runs]
        ok = [e.outcome == "passed" for e in runs]
        ax.plot([x for x, g in zip(xs, ok) if g], [y for y, g in zip(ys, ok) if g], "o-",
                color="#1e5adc", label="passed runs")
        bad = [(x, y) for x, y, g in zip(xs, ys, ok) if not g]
        if bad:
            ax.plot(*zip(*bad), "x", color="#c82828", markersize=9, label="failed runs")
        pct = thresholds.get(kind)
        if pct is not None:
            line = threshold_line(list(zip(ys, ok)), pct, better, spec)
            pts = [(x, v) for x, v in zip(xs, line) if v is not None]
            if pts:  # a single point is a marker: a one-point step draws nothing
                ax.step(*zip(*pts), where="mid", linestyle="--", color="#c82828",
                        marker="_" if len(pts) == 1 else None, markersize=14,
                        label=f"--mig-compare-fail {kind}:{pct:g}% "
                              f"({'minimum' if better == HIGHER else 'maximum'})")
        case, gpu, backend = key
        ax.set_title(f"{case} on {gpu or '?'} [{backend or '?'}]", fontsize=10,
                     color=SIMULATED_COLOR if backend == "simulated" else "black")
        ax.set_ylabel(label, fontsize=8)
        if by_time:
            ax.tick_params(axis="x", labelrotation=20, labelsize=7)
            fig.autofmt_xdate() if len(keys) == 1 else None
        else:
            ax.set_xticks(xs)
        ax.grid(True, alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if handles:  # only what was drawn
            ax.legend(handles, labels, fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("run time" if all(run_time(e) for k in keys for e in series[k])
                           else "run (history.jsonl order)")
    fig.tight_layout()
    return save(fig, path)
