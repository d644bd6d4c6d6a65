"""Profile-sweep curves: throughput, p99 latency (ms) and memory used versus batch size, one
line per MIG profile, one figure per benchmark. Rules: rows from report/sweep.py; a metric
with no value for a profile draws no line for it (never estimated); matplotlib optional.
"""
from __future__ import annotations

from pathlib import Path

from pytest_mig.report.plotting import pyplot, save
from pytest_mig.report.sweep import SweepRow, batch_key

PANELS = (("samples_per_s", "samples/s"), ("p99_ms", "p99 latency (ms)"),
          ("mem_gib", "GPU memory used (GiB)"))


def write_sweep_png(rows: list[SweepRow], benchmark: str, path: Path,
                    title_note: str = "") -> Path | None:
    plt = pyplot()
    rows = [r for r in rows if r.benchmark == benchmark]
    if plt is None or not rows:
        return None
    batches = sorted({r.batch for r in rows}, key=batch_key)
    fig, axes = plt.subplots(1, len(PANELS), figsize=(13, 3.8), squeeze=False)
    for ax, (field, label) in zip(axes[0], PANELS):
        for profile in dict.fromkeys(r.profile for r in rows):
            pts = [(batches.index(r.batch), getattr(r, field)) for r in rows
                   if r.profile == profile and getattr(r, field) is not None]
            if pts:
                ax.plot(*zip(*sorted(pts)), "o-", label=profile)
        ax.set_xticks(range(len(batches)))
        ax.set_xticklabels(batches)
        ax.set_xlabel("batch size")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=8, title="MIG profile", title_fontsize=8)
    fig.suptitle(f"{benchmark}: profile sweep{title_note}")
    fig.tight_layout()
    return save(fig, path)
