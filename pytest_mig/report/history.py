"""Run history: one JSON line per case per run in `reports/history.jsonl`.

The controller appends at session end (xdist workers never write it), one locked write per
run, so concurrent runs sharing a reports folder interleave whole lines only. Each line:
case, run_id, timestamp, gpu_model, backend, metric/value (the headline), p99_ns, latencies_ns,
accuracy, interference, outcome, duration_s (the case's call time: fleet/shard.py balances
shards with it). Baselines for `--mig-compare` are read from here (or from a results.json).
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pytest_mig.errors import ConfigError
from pytest_mig.safefs import open_append

HISTORY_NAME = "history.jsonl"


@dataclass(frozen=True)
class HistoryEntry:
    """One case of one run, as it goes into history.jsonl."""

    case: str
    run_id: str
    timestamp: str
    outcome: str  # passed | failed | skipped | error
    gpu_model: str = ""
    backend: str = ""  # nvml | simulated: simulated numbers never baseline real ones
    suite: str = ""
    benchmark: str = ""
    scenario: str = ""
    mode: str = ""
    metric: str = ""  # LoadGen headline name, e.g. "Samples per second"
    value: float | None = None
    p99_ns: float | None = None
    latencies_ns: dict[str, float] = field(default_factory=dict)
    accuracy_metric: str | None = None
    accuracy: float | None = None
    interference: float | None = None  # 1 - hetero/isolated, with --mig-isolated-baseline
    duration_s: float | None = None  # seconds the case's test call took

    @property
    def key(self) -> tuple[str, str, str]:
        """What must match for two entries to be compared: case, GPU model, backend."""
        return self.case, self.gpu_model, self.backend

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


def entry_from_record(record: dict[str, Any], run_id: str, backend: str,
                      timestamp: str | None = None) -> HistoryEntry:
    """A history entry from a per-test record (report/records.py outcome_record)."""
    res = record.get("result") or {}
    lat = {k: float(v) for k, v in (res.get("latencies_ns") or {}).items() if v is not None}
    return HistoryEntry(
        case=record.get("case", "?"), run_id=run_id,
        timestamp=timestamp or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        outcome=record.get("outcome", "unknown"), gpu_model=record.get("gpu_model", ""),
        backend=backend, suite=record.get("suite", ""), benchmark=record.get("benchmark", ""),
        scenario=record.get("scenario", ""), mode=record.get("mode", ""),
        metric=res.get("metric") or "", value=res.get("value"), p99_ns=lat.get("p99"),
        latencies_ns=lat, accuracy_metric=res.get("accuracy_metric"), accuracy=res.get("accuracy"),
        interference=record.get("interference"), duration_s=record.get("duration_s"))


def append_history(path: Path, entries: Iterable[HistoryEntry]) -> int:
    """Append entries as JSON lines in one locked write; the number of lines written."""
    lines = [e.to_json() + "\n" for e in entries]
    if not lines:
        return 0
    fd = open_append(path)  # never through a symlink, only a regular file
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # A writer killed mid-line left no newline: start on a fresh line so only the
        # torn line is lost, not the first of ours.
        size = os.fstat(fd).st_size
        text = "".join(lines)
        if size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            text = "\n" + text
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)  # releases the lock
    return len(lines)


def read_history(path: Path) -> list[HistoryEntry]:
    """Entries in file order; unreadable lines (a cut-off write) are skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict) and "case" in data and "run_id" in data:
            out.append(HistoryEntry.from_dict(data))
    return out


def read_results(path: Path) -> list[HistoryEntry]:
    """Entries from a run's results.json (or the run folder holding it)."""
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--mig-compare={path}: cannot read it ({exc}); give a history.jsonl, "
                          "a results.json or a reports/<run-id> folder") from None
    run = data.get("run") or {}
    return [entry_from_record(rec, str(run.get("run_id", path.parent.name)),
                              str(run.get("backend", "")), str(run.get("written_at", "")))
            for rec in data.get("tests", []) if isinstance(rec, dict) and "case" in rec]


def read_baseline_source(path: Path) -> list[HistoryEntry]:
    """A history.jsonl, a results.json, or a reports/<run-id> folder."""
    if not path.exists():
        raise ConfigError(f"--mig-compare={path}: no such file or folder; use last, median:N, "
                          "or a path to a history.jsonl, results.json or reports/<run-id>")
    if path.is_file() and path.suffix == ".jsonl":
        return read_history(path)
    return read_results(path)
