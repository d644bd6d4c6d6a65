"""The layout comparison picture: one stacked bar per layout case (each segment one slice's
samples/s, coloured by benchmark and labelled with its profile), the aggregate written on top.

Rules: rows from report/layouts.py; a slice without samples/s draws no segment (never
estimated); a bar without any figure says `n/a`; matplotlib optional (None without it).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytest_mig.report.plotting import SIMULATED_COLOR, pyplot, save

if TYPE_CHECKING:  # rows come from report/layouts.py, which imports this module
    from pytest_mig.report.layouts import LayoutRow


def write_layouts_png(rows: list[LayoutRow], path: Path, title_note: str = "") -> Path | None:
    plt = pyplot()
    if plt is None or not rows:
        return None
    benches = list(dict.fromkeys(s.benchmark for r in rows for s in r.slices))
    cmap = plt.get_cmap("tab10")
    colour = {b: cmap(i % 10) for i, b in enumerate(benches)}
    several = len({r.benchmark for r in rows}) > 1
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(rows) + 2), 4.6))
    top = max(sum(s.samples_per_s or 0.0 for s in r.slices) for r in rows) or 1.0
    for x, row in enumerate(rows):
        bottom = 0.0
        for s in row.slices:
            if s.samples_per_s is None:
                continue
            ax.bar(x, s.samples_per_s, bottom=bottom, width=0.6, color=colour[s.benchmark],
                   edgecolor="white", linewidth=0.8)
            if s.samples_per_s > 0.06 * top:
                ax.text(x, bottom + s.samples_per_s / 2, s.profile, ha="center", va="center",
                        fontsize=7, color="white")
            bottom += s.samples_per_s
        # the sum on top only for one model; several: each benchmark's aggregate
        label = (f"{row.total_samples_per_s:.4g}" if row.total_samples_per_s is not None else
                 "\n".join(f"{b} {v:.4g}" for b, v in row.aggregate.items()) or "n/a")
        ax.text(x, bottom + 0.01 * top, label, ha="center", va="bottom", fontsize=9,
                fontweight="bold")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([f"{r.layout}\n{r.instances}" + (f"\n{r.benchmark}" if several else "")
                        for r in rows], fontsize=8)
    ax.set_ylabel("samples/s (stacked per slice; per-benchmark aggregate on top)")
    ax.set_ylim(0, top * 1.15)
    ax.grid(True, axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[b]) for b in benches]
    if handles:
        ax.legend(handles, benches, fontsize=8, title="benchmark", title_fontsize=8)
    models = ", ".join(sorted({r.gpu_model for r in rows}))
    ax.set_title(f"layout comparison on {models}{title_note}", fontsize=10,
                 color=SIMULATED_COLOR if "SIMULATED" in title_note else "black")
    fig.tight_layout()
    return save(fig, path)
