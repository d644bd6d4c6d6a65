"""One JSON record per test, written as it ends, and the run's results.json built from them.

Per-test files mean xdist workers never write the same file, and a crash loses nothing
already finished; results.json is rebuilt atomically from whatever records exist.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from pytest_mig.redact import mask_commands
from pytest_mig.io import UnsafeFile, read_text, write_json_atomic

RECORD = "record.json"


def outcome_record(outcome, test_outcome: str, message: str, nodeid: str) -> dict[str, Any]:
    """A JSON-able record of a HeteroOutcome (or of a case that never ran)."""
    case = outcome.case
    res = outcome.result
    return {
        "nodeid": nodeid,
        "case": case.id,
        "suite": case.suite,
        "benchmark": case.benchmark,
        "scenario": case.scenario,
        "profile": case.profile,
        "mode": case.mode,
        "gpu_model": case.gpu_model,
        "accuracy_fraction": case.accuracy_fraction,
        "run_profile": case.run_profile.name,
        "layout": getattr(case, "layout", "") or None,  # a layout suite's named layout
        "outcome": test_outcome,
        "message": clip(message),
        "result": None if res is None else {
            "valid": res.valid, "result": res.result_text, "invalid_reasons": res.invalid_reasons,
            "metric": res.metric_name, "value": res.metric_value, "latencies_ns": res.latencies_ns,
            "latencies_ms": {k: v / 1e6 for k, v in res.latencies_ns.items()},
            "accuracy_metric": res.accuracy_metric, "accuracy": res.accuracy_value,
            "accuracy_target": outcome.accuracy_target if res.accuracy_value is not None else None,
            "errors": res.errors, "files": {k: str(v) for k, v in res.files.items()},
            "harness_path": res.harness_path,
        },
        "isolated": None if outcome.isolated is None else {
            "valid": outcome.isolated.valid, "metric": outcome.isolated.metric_name,
            "value": outcome.isolated.metric_value, "isolation": outcome.isolation},
        "interference": outcome.interference,  # None when the baseline is untrusted
        "interference_untrusted": getattr(outcome, "interference_untrusted", None),
        "slices": None if getattr(outcome, "slices", None) is None else outcome.slices.to_dict(),
        "placement": dict(getattr(outcome, "placement", {}) or {}),
        "activity": dict(getattr(outcome, "activity", {}) or {}),
        # {value 0..1, source, window, simulated, samples, backgrounds: {name: {value, source}}}
        "gpu_busy": dict(getattr(outcome, "gpu_busy", {}) or {}) or None,
        "rounds": dict(getattr(outcome, "rounds", {}) or {}) or None,  # --mig-rounds > 1
        "health": [dataclasses.asdict(w) for w in outcome.health.workloads],
        "background_min_duration_ms": outcome.background_min_duration_ms,
        "phases": outcome.phases,
        "commands": mask_commands(outcome.commands),  # secret-looking values masked
        "warnings": outcome.warnings,
        "paths": {"dir": str(outcome.test_dir),
                  "main_log": str(outcome.main.log_path) if outcome.main else None,
                  "background_logs": [str(b.log_path) for b in outcome.backgrounds]},
    }


def failure_record(nodeid: str, test_outcome: str, message: str, case=None,
                   test_dir: Path | None = None) -> dict[str, Any]:
    """The record of a case that failed before it ran (a setup error) or whose xdist worker
    died: the same keys as outcome_record, the case named from `case` or from the node id."""
    case_id = case.id if case is not None else nodeid.rpartition("[")[2].rstrip("]")
    field = (lambda name: getattr(case, name, "")) if case is not None else (lambda name: "")
    return {
        "nodeid": nodeid, "case": case_id, "suite": field("suite"),
        "benchmark": field("benchmark"), "scenario": field("scenario"),
        "profile": field("profile"), "mode": field("mode"), "gpu_model": field("gpu_model"),
        "run_profile": case.run_profile.name if case is not None else "",
        "layout": (getattr(case, "layout", "") or None) if case is not None else None,
        "outcome": test_outcome, "message": clip(message), "result": None, "isolated": None,
        "interference": None, "interference_untrusted": None, "slices": None, "placement": {},
        "activity": {}, "gpu_busy": None,
        "health": [], "background_min_duration_ms": 0, "phases": {},
        "commands": {}, "warnings": [],
        "paths": {"dir": str(test_dir) if test_dir else None, "main_log": None,
                  "background_logs": []},
    }


def clip(message: str, limit: int = 4000) -> str:
    """A long failure text cut in its middle: pytest puts the exception message last."""
    if len(message) <= limit:
        return message
    head = limit // 4
    tail = limit - head - 40
    return f"{message[:head]}\n... [{len(message) - head - tail} characters cut] ...\n" \
           f"{message[-tail:]}"


def write_record(test_dir: Path, record: dict[str, Any]) -> Path:
    path = test_dir / RECORD
    write_json_atomic(path, record)
    return path


def load_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every per-test record under run_dir (an unreadable one as {"record", "error"})."""
    records = []
    for p in sorted(run_dir.glob(f"*/{RECORD}")):
        try:
            records.append(json.loads(read_text(p)))
        except (OSError, ValueError, UnsafeFile) as exc:
            records.append({"record": str(p), "error": f"unreadable: {exc}"})
    return records


def collect_results(run_dir: Path, header: dict[str, Any]) -> Path:
    """(Re)build run_dir/results.json from every per-test record under it."""
    out = run_dir / "results.json"
    write_json_atomic(out, {"run": header, "tests": load_records(run_dir)})
    return out
