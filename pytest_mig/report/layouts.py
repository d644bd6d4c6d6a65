"""Layout comparison: the same workload mix under several named MIG layouts (a layout suite's
cases), each slice's samples/s and the aggregate per layout, as layouts.tsv / layouts.json.

Rules:
- One row per case that ran under a named layout (record key `layout`); its slices and sums
  are the case's own `slices` figures (results/slices.py), never recomputed from elsewhere.
- The aggregate of a row is the sum of its slices' samples/s per benchmark; a total over the
  row only when all its slices run one benchmark (samples/s of different models are not one
  quantity); a slice without a throughput figure adds nothing and shows `n/a` (never a
  made-up number).
- Rows keep the run's order of layouts (first appearance), cases by id within a layout.
No pytest, no matplotlib here (report/plot_layouts.py draws the picture).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pytest_mig.io import write_atomic, write_json_atomic
from pytest_mig.report.plot_layouts import write_layouts_png
from pytest_mig.report.plotting import MISSING

TSV_NAME, JSON_NAME, PNG_NAME = "layouts.tsv", "layouts.json", "layouts.png"
TSV_COLUMNS = ("layout", "case", "gpu_model", "outcome", "slice", "role", "benchmark",
               "profile", "samples_per_s", "basis")


@dataclass(frozen=True)
class LayoutSlice:
    name: str  # "main", "bg1-resnet50"
    role: str
    benchmark: str
    profile: str
    samples_per_s: float | None
    basis: str


@dataclass
class LayoutRow:
    """One case under one layout: its slices and their sums."""

    layout: str  # the layout's name (FILE: part dropped)
    layout_spec: str
    case: str
    benchmark: str  # the main's
    gpu_model: str
    outcome: str
    instances: str  # "3 x 2g.20gb + 1g.10gb": the profiles its slices ran on
    slices: list[LayoutSlice] = field(default_factory=list)
    aggregate: dict[str, float] = field(default_factory=dict)  # benchmark -> samples/s
    total_samples_per_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _instances(profiles: list[str]) -> str:
    counts: dict[str, int] = {}
    for p in profiles:
        counts[p] = counts.get(p, 0) + 1
    ordered = sorted(counts.items(), key=lambda pn: (-_size(pn[0]), pn[0]))
    return " + ".join(p if n == 1 else f"{n} x {p}" for p, n in ordered) or "none"


def _size(profile: str) -> int:
    head = profile.split("g.", 1)[0].rsplit(".", 1)[-1]
    return int(head) if head.isdigit() else 0


def layout_rows(records: Iterable[dict[str, Any]]) -> list[LayoutRow]:
    """A LayoutRow per record of a layout case (records without `layout` are left out)."""
    rows = []
    for r in records:
        spec = r.get("layout")
        if not spec or "case" not in r:
            continue
        figures = r.get("slices") or {}
        slices = [LayoutSlice(s.get("name", ""), s.get("role", ""), s.get("benchmark", ""),
                              s.get("profile", ""), s.get("samples_per_s"), s.get("basis", ""))
                  for s in figures.get("slices") or []]
        row = LayoutRow(layout=str(spec).rsplit(":", 1)[-1], layout_spec=str(spec),
                        case=r["case"], benchmark=r.get("benchmark", ""),
                        gpu_model=r.get("gpu_model", ""), outcome=r.get("outcome", ""),
                        instances=_instances([s.profile for s in slices]), slices=slices)
        for s in slices:
            if s.samples_per_s is not None:
                row.aggregate[s.benchmark] = row.aggregate.get(s.benchmark, 0.0) + s.samples_per_s
        if len(row.aggregate) == 1:  # one model: its sum is the row's total
            row.total_samples_per_s = next(iter(row.aggregate.values()))
        rows.append(row)
    order = {name: n for n, name in enumerate(dict.fromkeys(x.layout for x in rows))}
    return sorted(rows, key=lambda x: (order[x.layout], x.case))


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.6g}"


def tsv(rows: list[LayoutRow]) -> str:
    """One line per slice, then one per benchmark aggregate and one for the total."""
    lines = ["\t".join(TSV_COLUMNS)]
    for row in rows:
        head = [row.layout, row.case, row.gpu_model, row.outcome]
        for s in row.slices:
            lines.append("\t".join([*head, s.name, s.role, s.benchmark, s.profile,
                                    _num(s.samples_per_s), s.basis or "n/a"]))
        for bench, rate in row.aggregate.items():
            lines.append("\t".join([*head, f"aggregate:{bench}", "aggregate", bench,
                                    row.instances, _num(rate), "sum of slices"]))
        if row.total_samples_per_s is not None:
            lines.append("\t".join([*head, "aggregate", "aggregate", "all", row.instances,
                                    _num(row.total_samples_per_s), "sum of slices"]))
    return "\n".join(lines) + "\n"


def markdown(rows: list[LayoutRow]) -> str:
    """The per-layout summary: instances, each slice's samples/s, the aggregate."""
    out = ["| layout | case | instances | slices (samples/s) | aggregate samples/s per "
           "benchmark | outcome |",
           "|---|---|---|---|---|---|"]
    for row in rows:
        per = ", ".join(f"{s.name} {s.profile} {_num(s.samples_per_s)}" for s in row.slices)
        agg = ", ".join(f"{b} {_num(v)}" for b, v in row.aggregate.items()) or "n/a"
        out.append(f"| {row.layout} | {row.case} | {row.instances} | {per or 'n/a'} | "
                   f"{agg} | {row.outcome} |")
    return "\n".join(out) + "\n"


def write_layouts(run_dir: Path, records: Iterable[dict[str, Any]],
                  note: str = "") -> list[str]:
    """layouts.tsv, layouts.json and layouts.png in `run_dir`; lines saying what was written
    ([] when no case ran under a named layout). `note` goes into the picture's title."""
    rows = layout_rows(records)
    if not rows:
        return []
    write_atomic(run_dir / TSV_NAME, tsv(rows))
    write_json_atomic(run_dir / JSON_NAME, {"layouts": [r.to_dict() for r in rows]})
    png = write_layouts_png(rows, run_dir / PNG_NAME, note)
    lines = [f"layout comparison: {run_dir / TSV_NAME} ({len(rows)} case(s) over "
             f"{len({r.layout for r in rows})} layout(s))"]
    lines.append(f"layout comparison picture: {png}" if png else
                 f"layout comparison picture not drawn: {MISSING}")
    return lines


def read_rows(path: Path) -> list[LayoutRow]:
    """Rows back from a layouts.json (benchmarks/gpu_layouts.sh merges runs with them)."""
    rows = []
    for d in json.loads(Path(path).read_text(encoding="utf-8"))["layouts"]:
        d = dict(d)
        d["slices"] = [LayoutSlice(**s) for s in d.get("slices", [])]
        rows.append(LayoutRow(**d))
    return rows
