"""The GPU timeline picture of one case: stacked panels over time with phase markers.

Panels: per-slice activity (GPM SM utilisation, when sampled), GPU utilisation, memory used
(GPU and each MIG device), power, SM clock, temperature. A panel with no sample says why
(`n/a`, never estimated). A simulated timeline says so in red in its title and on every
panel's axis; a simulated panel whose every value is one constant (made-up power, clock,
temperature) is left out, and the title names what was left out. Phase events are vertical
lines named in a legend below the panels with their times (never text stacked on text).
Rules: reads a Timeline (report/timeline.py) only; matplotlib through report/plotting.py.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytest_mig.report.plotting import (PHASE_COLORS, PHASE_TEXT, SIMULATED_COLOR, pyplot,
                                        save)

if TYPE_CHECKING:  # a type only: timeline.py draws through this module
    from pytest_mig.report.timeline import Timeline

MIB_PER_GIB = 1024.0
Series = list[tuple[str, list[float | None]]]


def panels(tl: Timeline) -> list[tuple[str, Series, str]]:
    """(y label, [(legend, values)], note when nothing was sampled)."""
    def gib(vals):
        return [None if v is None else v / MIB_PER_GIB for v in vals]

    mem: Series = [("GPU", gib(tl.series.get("gpu_mem_used_mib", [])))]
    mem += [(label, gib(tl.series[f"mig_{label}_mem_used_mib"])) for label in tl.mig_labels()]
    gpm: Series = [(c[len("gpm_"):-len("_sm_util_pct")], tl.series[c]) for c in tl.series
                   if c.startswith("gpm_") and c.endswith("_sm_util_pct")]
    out = []
    if gpm:
        out.append(("SM util % (GPM)", gpm, "n/a: GPM not supported (Hopper or later)"))
    out += [
        ("GPU util %", [("GPU", tl.series.get("gpu_util_pct", []))],
         "n/a: NVML reports no utilisation in MIG mode or per MIG device"),
        ("memory GiB", mem, "no memory samples"),
        ("power W", [("GPU", tl.series.get("power_w", []))], "n/a: not reported by NVML"),
        ("SM clock MHz", [("GPU", tl.series.get("sm_clock_mhz", []))],
         "n/a: not reported by NVML"),
        ("temperature C", [("GPU", tl.series.get("temp_c", []))], "n/a: not reported by NVML"),
    ]
    if tl.simulated:
        out = [row for row in out if not _flat(row[1])]
    return out


def _flat(series: Series) -> bool:
    """Every sampled value of every line the same (a constant stand-in), at least one sample."""
    values = {v for _, vals in series for v in vals if v is not None}
    return len(values) == 1


def left_out(tl: Timeline) -> list[str]:
    """The simulated panels panels() leaves out as flat."""
    kept = {label for label, _, _ in panels(tl)}
    return [label for label in ("GPU util %", "memory GiB", "power W", "SM clock MHz",
                                "temperature C") if tl.simulated and label not in kept]


def write_timeline_png(tl: Timeline, path: Path) -> Path | None:
    """Draw `tl` into `path`; None when matplotlib is missing."""
    plt = pyplot()
    if plt is None:
        return None
    rows = panels(tl)
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.7 * len(rows) + 1.0), sharex=True,
                             squeeze=False)
    source = "SIMULATED: values made up, not measured" if tl.simulated else "measured (NVML)"
    gone = left_out(tl)
    fig.suptitle(f"GPU {tl.meta.get('gpu', '?')}: {source}"
                 + (f"\n(flat simulated panels left out: {', '.join(gone)})" if gone else ""),
                 color=SIMULATED_COLOR if tl.simulated else "black", fontsize=12)
    events = sorted(tl.phases.items(), key=lambda kv: kv[1])
    handles = []
    for ax, (label, series, note) in zip(axes[:, 0], rows):
        ax.set_ylabel(label + ("\n(simulated)" if tl.simulated else ""), fontsize=9,
                      color=SIMULATED_COLOR if tl.simulated else "black")
        ax.grid(True, alpha=0.3)
        drawn = False
        for legend, values in series:
            pts = [(t, v) for t, v in zip(tl.t, values) if v is not None]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], label=legend, linewidth=1.4)
                drawn = True
        if not drawn:
            ax.text(0.01, 0.5, note, transform=ax.transAxes, va="center", color="#555555")
            ax.set_yticks([])
        elif len(series) > 1:
            ax.legend(loc="upper right", fontsize=7, ncol=min(4, len(series)))
        handles = [ax.axvline(at, color=PHASE_COLORS.get(name, "#333333"), linestyle="--",
                              linewidth=1.6) for name, at in events]
    if events:  # one legend entry per event: its name and time, readable however close
        fig.legend(handles, [f"{PHASE_TEXT.get(name, name)} ({at:.1f} s)" for name, at in events],
                   loc="lower center", ncol=min(4, len(events)), fontsize=8, frameon=False)
    axes[-1, 0].set_xlabel("seconds since sampling started")
    fig.tight_layout(rect=(0, 0.06 if events else 0, 1, 1))
    return save(fig, path)
