"""Every slice's figure and the aggregate as text: a table, short labels.

Rules: reads pytest_mig.results.slices values only; latencies in ms; numbers with 4
significant digits; a slice without a figure says why (its first error) instead of a number.
"""
from __future__ import annotations

from pytest_mig.results.slices import Aggregate, BenchmarkAggregate, SliceFigure


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def slice_label(s: SliceFigure) -> str:
    """e.g. `412.3 samples/s (main window) VALID; p99 3.21 ms`."""
    parts = []
    if s.samples_per_s is not None:
        parts.append(f"{_num(s.samples_per_s)} samples/s ({s.basis})")
    elif s.value is not None:
        unit = " ms" if "latency" in s.metric.lower() else ""
        value = s.value / 1e6 if unit else s.value
        parts.append(f"{s.metric}={_num(value)}{unit}")
    if s.result:
        parts.append(s.result)
    p99 = s.latencies_ms.get("p99")
    if p99 is not None:
        parts.append(f"p99 {p99:.3g} ms")
    if not parts:
        parts.append("no figure: " + (s.errors[0] if s.errors else "nothing measured"))
    return "; ".join(parts)


def aggregate_label(b: BenchmarkAggregate) -> str:
    """e.g. `1234 samples/s over 7 slice(s); 6.1x isolated single slice 1g.10gb (87% each)`."""
    text = f"{_num(b.samples_per_s)} samples/s over {b.slices} slice(s)"
    if b.normalised is not None:
        text += (f"; {b.normalised:.3g}x isolated {b.isolated_basis}"
                 f" ({b.efficiency:.0%} each)")
    return text


def slices_table(agg: Aggregate) -> str:
    """A fixed-width table of the slices, then the aggregates."""
    rows = [("slice", "benchmark", "profile", "result", "samples/s", "basis", "p99 ms",
             "window")]
    for s in agg.slices:
        p99 = s.latencies_ms.get("p99")
        window = ("-" if s.window_s is None else
                  f"{_num(s.window_samples)} in {s.window_s:.2f}s"
                  + (" (partial)" if s.window_partial else ""))
        rows.append((s.name, s.benchmark, s.profile, s.result or "-", _num(s.samples_per_s),
                     s.basis or "-", "-" if p99 is None else f"{p99:.3g}", window))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.append("")
    for b in agg.benchmarks.values():
        lines.append(f"aggregate {b.benchmark}: {aggregate_label(b)}")
    if agg.total_normalised is not None:  # samples/s of different models are never added
        lines.append(f"aggregate all benchmarks: {agg.total_normalised:.3g} (each in units of "
                     "its isolated rate)")
    lines.append("basis: main window = samples a background completed during the main's timed "
                 "phase (its completions.tsv); own run = its own LoadGen headline")
    return "\n".join(lines) + "\n"
