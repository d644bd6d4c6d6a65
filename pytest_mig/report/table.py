"""The session-end table of every case, as pytest-benchmark prints its table: case, result,
headline with its unit, change against the baseline, accuracy against its target,
interference, GPU busy.

Rules: figures from report/figures.py (the record's numbers, never re-parsed text); a
missing figure is "-"; headline with 4 significant digits; the rows sorted by case id.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from pytest_mig.report.figures import by_key, case_figures


def _g(v: float) -> str:
    return f"{v:.4g}"


def row(record: Mapping[str, Any], vs_baseline: str = "-") -> tuple[str, ...]:
    figs = by_key(case_figures(record))
    res = record.get("result") or {}
    result = str(record.get("outcome") or "?")
    if res.get("result"):
        result += f" {res['result']}"
    head = figs.get("headline")
    headline = "-" if head is None else f"{_g(head.value)} {head.unit}".strip()
    if head is not None and head.spread is not None:
        headline += f" ({_g(head.spread[0])}-{_g(head.spread[1])})"
    acc = figs.get("accuracy")
    accuracy = "-"
    if acc is not None:
        target = acc.labels.get("target")
        accuracy = f"{_g(acc.value)} {acc.unit}"
        if target is not None:
            ok = acc.value >= float(target)
            accuracy += f" {'>=' if ok else '<'} {_g(float(target))}"
    inter = figs.get("interference")
    interference = "-" if inter is None else f"{inter.value:.1%}"
    busy = figs.get("gpu_busy")
    gpu_busy = "-" if busy is None else f"{busy.value:.0%}" + (
        f" ({busy.labels['source']})" if busy.labels.get("source") else "")
    return (str(record.get("case", "?")), result, headline, vs_baseline, accuracy,
            interference, gpu_busy)


HEADER = ("case", "result", "headline", "vs baseline", "accuracy vs target", "interference",
          "GPU busy")


def case_table(records: Iterable[Mapping[str, Any]],
               vs_baseline: Mapping[str, str] | None = None) -> list[str]:
    """Fixed-width lines: a header, a rule, one row per case."""
    rows = [row(r, (vs_baseline or {}).get(str(r.get("case")), "-"))
            for r in sorted(records, key=lambda r: str(r.get("case", "")))]
    if not rows:
        return []
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(HEADER), "  ".join("-" * w for w in widths), *(fmt(r) for r in rows)]
