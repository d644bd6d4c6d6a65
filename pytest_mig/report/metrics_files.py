"""Metrics files CI systems chart, written in every run folder from the case records.

- `metrics.txt`: OpenMetrics text, GitLab's metrics report (`artifacts:reports:metrics`):
  one gauge family per kind of figure, labels `case`, `simulated` (and `slice`, `benchmark`,
  `basis`, `source`, `metric` where they apply), ended by `# EOF`.
- `benchmark.json` (github-action-benchmark, `tool: customBiggerIsBetter`) and
  `benchmark-smaller.json` (`tool: customSmallerIsBetter`): a list of {name, unit, value,
  range, extra}; which file a figure goes to is its `better` (report/figures.py); a figure
  with no direction (GPU busy) goes to the bigger-is-better file, said in its `extra`.
Rules: figures from report/figures.py only (numbers with units, one entry per case
headline, accuracy, interference, GPU busy and slice aggregate); a simulated run says
`SIMULATED` in every entry's extra and `simulated="true"` on every sample.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

from pytest_mig.io import write_atomic, write_json_atomic
from pytest_mig.report.figures import LOWER, Figure, case_figures

METRICS_TXT = "metrics.txt"
BIGGER_JSON = "benchmark.json"
SMALLER_JSON = "benchmark-smaller.json"

# figure key prefix -> (OpenMetrics family, help); one family per kind of figure
FAMILIES = (
    ("headline", "mig_headline", "the case's LoadGen headline metric (label metric, unit)"),
    ("accuracy", "mig_accuracy", "accuracy of the main run (label metric; target beside it)"),
    ("interference", "mig_interference_ratio", "1 - hetero/isolated headline of the main"),
    ("gpu_busy", "mig_gpu_busy_ratio", "share of the main's slice busy in its timed phase"),
    ("slice", "mig_slice_samples_per_second", "one slice's samples/s (label basis)"),
    ("aggregate", "mig_aggregate", "per benchmark: samples/s over its slices, or the sum in "
     "units of its isolated rate (unit label)"),
)


def _family(key: str) -> tuple[str, str]:
    head = key.split(".", 1)[0]
    for prefix, name, help_text in FAMILIES:
        if head == prefix:
            return name, help_text
    raise KeyError(key)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(v: float) -> str:
    return repr(float(v))


def _samples(records: Iterable[Mapping[str, Any]], simulated: bool):
    for rec in records:
        case = str(rec.get("case") or "")
        if not case:
            continue
        for f in case_figures(rec):
            yield case, f


def openmetrics(records: Iterable[Mapping[str, Any]], simulated: bool) -> str:
    by_family: dict[str, list[str]] = {}
    helps: dict[str, str] = {}
    sim = "true" if simulated else "false"
    for case, f in _samples(records, simulated):
        family, help_text = _family(f.key)
        helps[family] = help_text
        labels = {"case": case, "simulated": sim, "unit": f.unit}
        if f.key in ("headline", "accuracy"):
            labels["metric"] = f.name
        labels.update({k: v for k, v in f.labels.items() if v and k != "result"})
        if f.key.startswith("aggregate.") and "benchmark" not in labels:
            labels["benchmark"] = "all"
        text = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items())
        by_family.setdefault(family, []).append(f"{family}{{{text}}} {_value(f.value)}")
        if f.key == "accuracy" and "target" in f.labels:
            target = "mig_accuracy_target"
            helps[target] = "the accuracy the case must reach"
            text = ",".join(f'{k}="{_label(str(v))}"' for k, v in labels.items()
                            if k != "target")
            by_family.setdefault(target, []).append(
                f"{target}{{{text}}} {_value(float(f.labels['target']))}")
    lines = []
    for family, samples in by_family.items():
        lines += [f"# TYPE {family} gauge", f"# HELP {family} {helps[family]}", *samples]
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _entry(case: str, f: Figure, simulated: bool) -> dict[str, Any]:
    extra = [f"{k}: {v}" for k, v in f.labels.items() if v]
    if f.key in ("headline", "accuracy"):
        extra.insert(0, f"metric: {f.name}")
    if not f.better:
        extra.append("no better direction (charted only)")
    if simulated:
        extra.append("SIMULATED GPU: CPU timings of the built-in harness")
    entry: dict[str, Any] = {"name": f"{case} {f.key}", "unit": f.unit, "value": f.value}
    if f.spread is not None:
        lo, hi = f.spread
        entry["range"] = f"± {max(f.value - lo, hi - f.value):.6g}"
    if extra:
        entry["extra"] = "\n".join(extra)
    return entry


def benchmark_entries(records: Iterable[Mapping[str, Any]],
                      simulated: bool) -> tuple[list[dict], list[dict]]:
    """(bigger-is-better entries, smaller-is-better entries)."""
    bigger, smaller = [], []
    for case, f in _samples(records, simulated):
        (smaller if f.better == LOWER else bigger).append(_entry(case, f, simulated))
    return bigger, smaller


def write_metrics(run_dir: Path, records: list[Mapping[str, Any]], simulated: bool) -> list[Path]:
    """metrics.txt, benchmark.json, benchmark-smaller.json in run_dir; OSError propagates."""
    write_atomic(run_dir / METRICS_TXT, openmetrics(records, simulated))
    bigger, smaller = benchmark_entries(records, simulated)
    write_json_atomic(run_dir / BIGGER_JSON, bigger)
    write_json_atomic(run_dir / SMALLER_JSON, smaller)
    return [run_dir / METRICS_TXT, run_dir / BIGGER_JSON, run_dir / SMALLER_JSON]
