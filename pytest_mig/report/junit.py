"""JUnit XML: a case's figures as numbers, valid under the junit family pytest writes.

Rules:
- Every figure is a number (no unit, no prose) in a property of its own; its unit is the
  sibling property `<name>_unit` (figures from report/figures.py).
- Under `xunit2`, pytest's default family, a <testcase> may hold no <properties> (the
  junit-10.xsd pytest targets): the case properties are dropped from the teardown report,
  the one pytest's junitxml writes them from, and the run-level facts (simulated, backend,
  run id, where results.json / metrics.txt are) go to the <testsuite>'s properties (where
  `record_testsuite_property` puts them). The per-case figures are then in metrics.txt,
  benchmark.json and results.json. `-o junit_family=xunit1` keeps them per case.
- No absolute path: a folder is written relative to the reports root (`<run-id>/<test>`).
- `mig_simulated` says whether the GPU was simulated, run-level and per case.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

from pytest_mig.report.figures import case_figures

PREFIX = "mig_"
CASE_FAMILIES = ("xunit1", "legacy")  # the families whose <testcase> may hold <properties>


def _prop(key: str) -> str:
    """Figure key -> property name: 'slice.bg2-bert' -> 'mig_slice_bg2-bert'."""
    return PREFIX + key.replace(".", "_")


def _num(value: float) -> str:
    return repr(round(value, 6)) if abs(value) >= 1e-3 or value == 0 else f"{value:.6g}"


def case_properties(record: Mapping[str, Any], reports_root: Path,
                    simulated: bool) -> list[tuple[str, str]]:
    """The (name, value) properties of one case: figures as numbers, their units apart."""
    props = [("mig_case", str(record.get("case", ""))),
             ("mig_simulated", "true" if simulated else "false")]
    res = record.get("result") or {}
    if res.get("result"):
        props.append(("mig_result", str(res["result"])))
    for f in case_figures(record):
        name = _prop(f.key)
        props.append((name, _num(f.value)))
        props.append((f"{name}_unit", f.unit))
        if f.key in ("headline", "accuracy"):
            props.append((f"{name}_metric", f.name))
        if f.key == "accuracy" and "target" in f.labels:
            props.append(("mig_accuracy_target", f.labels["target"]))
        for label in ("basis", "source"):
            if f.labels.get(label):
                props.append((f"{name}_{label}", f.labels[label]))
        if f.spread is not None:
            props.append((f"{name}_min", _num(f.spread[0])))
            props.append((f"{name}_max", _num(f.spread[1])))
    untrusted = record.get("interference_untrusted")
    if isinstance(untrusted, Mapping):  # a figure no one should chart: value and reason apart
        if isinstance(untrusted.get("value"), (int, float)):
            props.append(("mig_interference_untrusted", _num(float(untrusted["value"]))))
            props.append(("mig_interference_untrusted_unit", "fraction"))
        props.append(("mig_interference_untrusted_reason", str(untrusted.get("reason", ""))))
    for text in record.get("warnings") or []:
        props.append(("mig_warning", str(text)))
    iso = record.get("isolated") or {}
    isolation = iso.get("isolation") or {}
    if isolation:
        props.append(("mig_baseline_isolation", str(isolation.get("method", ""))))
        props.append(("mig_baseline_verified", str(isolation.get("verification", ""))))
    health = record.get("health") or []
    if health:
        props.append(("mig_background_healthy",
                      "true" if all(h.get("healthy") for h in health) else "false"))
    folder = (record.get("paths") or {}).get("dir")
    if folder:
        props.append(("mig_dir", relative(Path(folder), reports_root)))
    return props


def relative(path: Path, root: Path) -> str:
    """`path` relative to `root` (the reports root), never absolute: outside it, its name."""
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix() \
            if path.resolve().is_relative_to(root.resolve()) else path.name
    except (OSError, ValueError):
        return path.name


def run_properties(run_id: str, backend: str, simulated: bool) -> list[tuple[str, str]]:
    """The <testsuite> properties: allowed under every family."""
    return [("mig_run_id", run_id), ("mig_backend", backend),
            ("mig_simulated", "true" if simulated else "false"),
            ("mig_results", f"{run_id}/results.json"),
            ("mig_metrics", f"{run_id}/metrics.txt"),
            ("mig_benchmark_json", f"{run_id}/benchmark.json")]


def family(config) -> str:
    """The junit family of this run ('' when no --junitxml is written)."""
    if not getattr(config.option, "xmlpath", None):
        return ""
    try:
        return str(config.getini("junit_family"))
    except ValueError:
        return "xunit2"


def keeps_case_properties(config) -> bool:
    return family(config) in ("",) + CASE_FAMILIES


def strip_case_properties(user_properties: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The properties minus pytest-mig's (those pytest would write into an xunit2 <testcase>)."""
    return [(n, v) for n, v in user_properties if not str(n).startswith(PREFIX)]
