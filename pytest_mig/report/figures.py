"""The figures of one case record, each a number with its unit: the one table that JUnit,
metrics.txt, benchmark.json and the terminal summary read.

Rules:
- A figure is a finite number, never prose; its unit is a separate field (`samples/s`,
  `ns`, `fraction`, `%`, or the accuracy metric's own name: `mAP`, `top-1`, `DICE`).
- One entry per case headline, accuracy (with its target), interference, GPU busy, each
  slice's samples/s and each benchmark's slice aggregate (never a sum across benchmarks;
  a cross-model total only as the sum of per-benchmark normalised rates, in units of each
  model's isolated rate, and only when every benchmark has one).
- `better` says which way is good: "higher", "lower" or "" (neither).
- GPU busy is read from the record's `gpu_busy` {value, source} when the record has one.
Values in, values out: no pytest, no files.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True)
class Figure:
    key: str  # "headline", "accuracy", "interference", "gpu_busy", "slice.<name>", ...
    name: str  # what was measured, as its source names it ("Samples per second")
    value: float
    unit: str
    better: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)  # basis, source, target, ...
    spread: tuple[float, float] | None = None  # (min, max) over rounds, when measured


def number(value: Any) -> float | None:
    """A finite float, else None (a NaN, a string, a bool is no figure)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def metric_unit(metric: str) -> str:
    """LoadGen's metric name -> unit: 'Samples per second' -> 'samples/s',
    '90.0th percentile latency (ns)' -> 'ns', 'Tokens per second' -> 'tokens/s'."""
    name = metric.lower()
    match = re.search(r"(\w+) per second", name)
    if match:
        word = match.group(1)
        return f"{word}/s" if word in ("samples", "tokens", "queries") else "1/s"
    match = re.search(r"\((ns|us|ms|s)\)", name)
    if match:
        return match.group(1)
    return ""


def metric_better(metric: str) -> str:
    name = metric.lower()
    if "per second" in name:
        return HIGHER
    if "latency" in name or name.endswith("(ns)"):
        return LOWER
    return ""


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def case_figures(record: Mapping[str, Any]) -> list[Figure]:
    """Every figure of one record (record.json / results.json's `tests` entry)."""
    out: list[Figure] = []
    res = record.get("result") or {}
    value = number(res.get("value"))
    metric = str(res.get("metric") or "")
    if value is not None and metric:
        rounds = record.get("rounds") or {}
        lo, hi = number(rounds.get("min")), number(rounds.get("max"))
        out.append(Figure("headline", metric, value, metric_unit(metric), metric_better(metric),
                          {"result": str(res.get("result") or "")},
                          (lo, hi) if lo is not None and hi is not None else None))
    acc = number(res.get("accuracy"))
    if acc is not None:
        name = str(res.get("accuracy_metric") or "accuracy")
        target = number(res.get("accuracy_target"))
        out.append(Figure("accuracy", name, acc, name, HIGHER,
                          {"target": _fmt(target)} if target is not None else {}))
    inter = number(record.get("interference"))
    if inter is not None:
        out.append(Figure("interference", "interference (1 - hetero/isolated)", inter,
                          "fraction", LOWER))
    busy = record.get("gpu_busy")
    if isinstance(busy, Mapping) and number(busy.get("value")) is not None:
        out.append(Figure("gpu_busy", "GPU busy", number(busy["value"]), "fraction", "",
                          {"source": str(busy.get("source") or "")}))
    slices = record.get("slices") or {}
    for s in slices.get("slices") or []:
        v = number(s.get("samples_per_s"))
        if v is not None:
            out.append(Figure(f"slice.{s.get('name')}", f"{s.get('benchmark')} on "
                              f"{s.get('profile')}", v, "samples/s", HIGHER,
                              {"slice": str(s.get("name")), "benchmark": str(s.get("benchmark")),
                               "basis": str(s.get("basis") or "")}))
    benchmarks = slices.get("benchmarks") or {}
    for bench, b in benchmarks.items():
        v = number(b.get("samples_per_s"))
        if v is not None:
            out.append(Figure(f"aggregate.{bench}", f"{bench} over {b.get('slices')} slice(s)",
                              v, "samples/s", HIGHER, {"benchmark": str(bench)}))
        n = number(b.get("normalised"))
        if n is not None:
            out.append(Figure(f"aggregate.{bench}.normalised", f"{bench} in isolated "
                              f"{b.get('isolated_basis') or 'rate'} units", n, "isolated rates",
                              HIGHER, {"benchmark": str(bench)}))
    total = normalised_total(benchmarks)
    if total is not None:
        out.append(Figure("aggregate.normalised_total", "all benchmarks, each in units of its "
                          "isolated rate", total, "isolated rates", HIGHER))
    return out


def normalised_total(benchmarks: Mapping[str, Any]) -> float | None:
    """The only cross-model total: the sum of each benchmark's aggregate in units of its own
    isolated rate; None unless every benchmark was normalised (samples/s of different models
    are not one quantity)."""
    values = [number((b or {}).get("normalised")) for b in benchmarks.values()]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def by_key(figures: list[Figure]) -> dict[str, Figure]:
    return {f.key: f for f in figures}
