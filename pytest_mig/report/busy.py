"""GPU busy: how much of each workload's slice was busy during the main's timed phase.

Read from the case's timeline (report/timeline.py) over the main's timed phase (its ready line
to its exit; launch to exit when it printed none), one figure per slice, 0..1:
- a MIG instance: its GPU instance's own GPM SM activity (nvmlGpmMigSampleGet);
- an MPS share or the whole GPU shared (no MIG): the whole GPU's GPM SM activity divided by
  the slice's SM fraction (its profile's SMs / the GPU's SMs). GPM counts every slice of the
  GPU together: with backgrounds beside the main the figure is for all slices together
  (divided by their summed fraction) and says so. Capped at 1 (a share without limits can
  use more SMs than the profile it stands in for), with `capped` set;
- no GPM (before Hopper): NVML's utilisation of the whole GPU (the share of time any kernel
  ran, not of SMs; NVML reports none in MIG mode: then n/a).
Never estimated: where none of these exists the value is None and `source` says why. A
simulated timeline's figure is labelled SIMULATED (made-up values of the NVML simulator).

`busy_warning` turns a figure below --mig-min-busy into the case's warning text. Simulated
figures are judged like measured ones, so a CI job can exercise --mig-require-busy on the
simulator; every simulated warning says that nothing was measured. No pytest here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from pytest_mig.errors import MigError
from pytest_mig.gpu.profiles import get_model, profile_fraction

if TYPE_CHECKING:  # the timeline module computes busy through this one: no loop at run time
    from pytest_mig.report.timeline import Timeline

NOT_MEASURED = ("SIMULATED GPU: made-up GPM values of the NVML simulator; this exercises the "
                "check, the workload was not measured")


class HostBoundFailure(AssertionError):
    """--mig-require-busy: the main's slice was busy less than --mig-min-busy."""


@dataclass(frozen=True)
class SliceShare:
    """One workload's slice as busy reads it: kind mig|mps|none, SM fraction of the GPU."""

    label: str  # "main", "bg1-bert": the timeline's GPM label of a MIG slice
    kind: str
    sm_fraction: float | None  # profile SMs / GPU SMs; None: no profile table
    gi_id: int | None = None


def slot_shares(slot: Any, labels: Sequence[str]) -> list[SliceShare]:
    """The main's and each running background's share: `labels` name them in slot order
    (main first); a background partition without a label (none runs there) is left out."""
    try:
        model = get_model(slot.gpu_model)
    except (MigError, KeyError, ValueError):
        model = None

    def fraction(profile: str) -> float | None:
        try:
            return profile_fraction(model, profile)[0] if model is not None else None
        except (MigError, KeyError, ValueError):
            return None
    return [SliceShare(label, part.kind, fraction(getattr(part, "profile", "")),
                       getattr(part, "gi_id", None))
            for label, part in zip(labels, (slot.main, *slot.background))]


def main_window(main: Any) -> tuple[tuple[float, float] | None, str]:
    """(start, end) unix of the main's timed phase (a Finished), and what it is."""
    if main is None or not main.ended_at:
        return None, ""
    if main.ready_at:
        return (main.ready_at, main.ended_at), "timed phase (ready line to exit)"
    return (main.started_at, main.ended_at), "launch to exit (no ready line seen)"


def _window_rows(tl: Timeline, start_unix: float, end_unix: float) -> list[int]:
    """Rows whose sampling interval lies in the window; the rows inside it when none does."""
    lo, hi = start_unix - tl.start_unix, end_unix - tl.start_unix
    interval = float(tl.meta.get("interval_s", "0") or 0)
    inside = [i for i, t in enumerate(tl.t) if lo <= t <= hi]
    whole = [i for i in inside if tl.t[i] - interval >= lo]
    return whole or inside


def _mean(tl: Timeline, column: str, rows: list[int]) -> tuple[float | None, int]:
    """(mean of the column's values in `rows`, how many) ignoring n/a cells."""
    cells = tl.series.get(column)
    if cells is None:
        return None, 0
    vals = [v for i in rows if (v := cells[i]) is not None]
    return (sum(vals) / len(vals), len(vals)) if vals else (None, 0)


def _gpm_note(tl: Timeline) -> str:
    return tl.meta.get("gpm", "not sampled")


def slice_busy(tl: Timeline, share: SliceShare, shares: Sequence[SliceShare],
               rows: list[int]) -> dict[str, Any]:
    """{value, source, samples[, capped]} of one slice over `rows` of the timeline."""
    if share.kind == "mig":
        value, n = _mean(tl, f"gpm_{share.label}_sm_util_pct", rows)
        if value is not None:
            return {"value": round(min(1.0, value / 100), 4), "samples": n, "source": (
                f"GPM SM activity of its GPU instance {share.gi_id} (MIG)")}
        return {"value": None, "samples": 0, "source": (
            f"n/a: no GPM reading of GPU instance {share.gi_id} ({_gpm_note(tl)}), and NVML "
            "reports no utilisation in MIG mode")}
    value, n = _mean(tl, "gpm_gpu_sm_util_pct", rows)
    if value is not None:
        fractions = [s.sm_fraction for s in shares]
        if any(f is None or f <= 0 for f in fractions):
            return {"value": None, "samples": n, "source": (
                f"n/a: GPM SM activity of the whole GPU {value:.1f} %, but no SM fraction of "
                "the slices (no profile table for this GPU)")}
        total = sum(fractions)  # type: ignore[arg-type]
        what = ("its slice" if len(shares) == 1 else
                f"all {len(shares)} slices together (GPM counts the whole GPU; a slice's own "
                "share is not separable without MIG)")
        raw = value / 100 / total
        out = {"value": round(min(1.0, raw), 4), "samples": n, "source": (
            f"GPM SM activity of the whole GPU {value:.1f} % / SM fraction {total:.1%} of "
            f"{what} ({share.kind})")}
        if raw > 1.0:
            out["capped"] = round(raw, 4)
        return out
    value, n = _mean(tl, "gpu_util_pct", rows)
    if value is not None:
        return {"value": round(min(1.0, value / 100), 4), "samples": n, "source": (
            f"NVML utilisation of the whole GPU (share of time any kernel ran, not of SMs; "
            f"GPM {_gpm_note(tl).removeprefix('n/a: ')})")}
    return {"value": None, "samples": 0, "source": (
        f"n/a: no GPM ({_gpm_note(tl)}) and no NVML utilisation in the window")}


def gpu_busy(tl: Timeline | None, shares: Sequence[SliceShare], window: tuple[float, float] | None,
             window_what: str = "timed phase (ready line to exit)") -> dict[str, Any]:
    """The case's record: the main's figure, `window`, `simulated` and `backgrounds`
    ({label: figure}); shares[0] is the main."""
    if tl is None:
        return {"value": None, "source": "not sampled (--mig-sample-interval=0)",
                "simulated": False, "backgrounds": {}}
    if window is None:
        return {"value": None, "source": "n/a: the main never ran", "simulated": tl.simulated,
                "backgrounds": {}}
    rows = _window_rows(tl, *window)
    figures = {s.label: slice_busy(tl, s, shares, rows) for s in shares}
    if tl.simulated:
        for fig in figures.values():
            fig["source"] = "SIMULATED: " + fig["source"]
    main, *rest = shares
    return {**figures[main.label], "window": f"{window_what}, {window[1] - window[0]:.1f} s",
            "simulated": tl.simulated,
            "backgrounds": {s.label: figures[s.label] for s in rest}}


def busy_text(busy: dict[str, Any] | None) -> str:
    """'82 %' (with ', simulated'), or 'n/a'."""
    if not busy or busy.get("value") is None:
        return "n/a"
    return f"{busy['value']:.0%}".replace("%", " %") + (", simulated" if busy.get("simulated")
                                                         else "")


def busy_warning(busy: dict[str, Any] | None, min_busy_pct: float) -> str:
    """The case's warning when the main's figure is below the threshold, else ''."""
    if not busy or busy.get("value") is None or busy["value"] * 100 >= min_busy_pct:
        return ""
    pct = f"{busy['value'] * 100:.0f}"
    text = (f"host-bound: GPU busy {pct} % during the main; the figure measures the workload's "
            f"host path, not the GPU ({busy.get('source', '')}; --mig-min-busy={min_busy_pct:g})")
    return f"{text} [{NOT_MEASURED}]" if busy.get("simulated") else text
