"""The nightly trend picture: each case's headline metric over the runs in history.jsonl,
with the `--mig-compare-fail` threshold drawn as the line a next run must not cross.

Rules: one panel per case (its key: case, GPU model, backend, so simulated numbers never
sit on a hardware line); runs in history order; latency headlines in ms; the threshold of
run k is computed from the runs before it as the compare gate does (last passed run, or the
median of the last N passed runs); failed runs are drawn as red crosses, not joined.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Iterable

from pytest_mig.report.compare import HIGHER, CompareSpec, headline_kind
from pytest_mig.report.history import HistoryEntry
from pytest_mig.report.plotting import SIMULATED_COLOR, pyplot, save

MAX_PANELS = 12


def _scale(metric: str) -> tuple[float, str]:
    return (1e-6, metric.replace("(ns)", "(ms)")) if "(ns)" in metric else (1.0, metric)


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
        xs = list(range(1, len(runs) + 1))
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
            if pts:
                ax.step(*zip(*pts), where="mid", linestyle="--", color="#c82828",
                        label=f"--mig-compare-fail {kind}:{pct:g}% "
                              f"({'minimum' if better == HIGHER else 'maximum'})")
        case, gpu, backend = key
        ax.set_title(f"{case} on {gpu or '?'} [{backend or '?'}]", fontsize=10,
                     color=SIMULATED_COLOR if backend == "simulated" else "black")
        ax.set_ylabel(label, fontsize=8)
        ax.set_xticks(xs)
        ax.set_xticklabels([e.run_id[-12:] for e in runs], rotation=20, fontsize=7)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("run (history.jsonl order)")
    fig.tight_layout()
    return save(fig, path)
