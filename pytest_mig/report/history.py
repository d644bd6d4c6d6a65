"""Run history: one JSON line per case per run in `reports/history.jsonl`.

The controller appends at session end (xdist workers never write it), one locked write per
run, so concurrent runs sharing a reports folder interleave whole lines only. Each line:
case, run_id, timestamp, gpu_model, backend, metric/value (the headline), p99_ns, latencies_ns,
accuracy, interference, outcome, duration_s (the case's call time: plan/shard.py balances
shards with it). Baselines for `--mig-compare` are read from here (or from a results.json).
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pytest_mig.errors import ConfigError, MigError
from pytest_mig.io import open_append, read_bytes, read_text

HISTORY_NAME = "history.jsonl"
HISTORY_CAP = 512 << 20  # bytes read of a history.jsonl (about a million entries)


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
    accuracy_fraction: float | None = None  # the case's target (0.99 | 0.999): picks bert-99 vs bert-99.9
    # --mig-rounds > 1: the headline's rounds (value is their median); None for one round
    rounds: int | None = None
    value_min: float | None = None
    value_max: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """What must match for two entries to be compared: case, GPU model, backend."""
        return self.case, self.gpu_model, self.backend

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistoryEntry:
        """An entry from a parsed JSON line; ValueError naming the field if a type is wrong."""
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for name, value in known.items():
            want = _FIELD_TYPES.get(name, "str")
            if want == "str" and not isinstance(value, str):
                raise ValueError(f"field {name!r} is {type(value).__name__}, not text")
            if want == "number" and value is not None and not _is_number(value):
                raise ValueError(f"field {name!r} is {type(value).__name__}, not a number")
            if want == "text?" and value is not None and not isinstance(value, str):
                raise ValueError(f"field {name!r} is {type(value).__name__}, not text")
            if want == "latencies" and not (isinstance(value, dict) and all(
                    isinstance(k, str) and _is_number(v) for k, v in value.items())):
                raise ValueError(f"field {name!r} is not a map of latency names to numbers")
        return cls(**known)


_FIELD_TYPES = {"value": "number", "rounds": "number", "value_min": "number",
                "value_max": "number", "p99_ns": "number", "accuracy": "number",
                "interference": "number", "duration_s": "number", "accuracy_fraction": "number",
                "accuracy_metric": "text?",
                "latencies_ns": "latencies"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> float | None:
    """A finite float, else None: NaN and infinities are never written as numbers."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def entry_from_record(record: dict[str, Any], run_id: str, backend: str,
                      timestamp: str | None = None) -> HistoryEntry:
    """A history entry from a per-test record (report/records.py outcome_record)."""
    res = record.get("result") or {}
    lat = {k: f for k, v in (res.get("latencies_ns") or {}).items()
           if (f := _finite(v)) is not None}
    return HistoryEntry(
        case=record.get("case", "?"), run_id=run_id,
        timestamp=timestamp or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        outcome=record.get("outcome", "unknown"), gpu_model=record.get("gpu_model", ""),
        backend=backend, suite=record.get("suite", ""), benchmark=record.get("benchmark", ""),
        scenario=record.get("scenario", ""), mode=record.get("mode", ""),
        metric=res.get("metric") or "", value=_finite(res.get("value")), p99_ns=lat.get("p99"),
        latencies_ns=lat, accuracy_metric=res.get("accuracy_metric"),
        accuracy=_finite(res.get("accuracy")), interference=_finite(record.get("interference")),
        duration_s=_finite(record.get("duration_s")), accuracy_fraction=_finite(record.get("accuracy_fraction")),
        **_rounds(record.get("rounds")))


def _rounds(rounds: Any) -> dict[str, Any]:
    """The history fields of a record's `rounds` (none for a one-round case)."""
    if not isinstance(rounds, dict) or not isinstance(rounds.get("n"), int):
        return {}
    return {"rounds": rounds["n"], "value_min": _finite(rounds.get("min")),
            "value_max": _finite(rounds.get("max"))}


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


def read_history(path: Path, problems: list[str] | None = None) -> list[HistoryEntry]:
    """Entries in file order. A line that is not an entry (a cut-off write, bytes that are not
    UTF-8, a number where text belongs, nesting too deep) is skipped; with `problems`, each
    skip is noted there as 'FILE line N skipped: why'."""
    try:
        raw = read_bytes(path, HISTORY_CAP)
    except FileNotFoundError:
        return []
    out = []
    lines = raw.split(b"\n")
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line.decode("utf-8"))
            if not isinstance(data, dict) or "case" not in data or "run_id" not in data:
                raise ValueError("not a history entry (no case/run_id)")
            out.append(HistoryEntry.from_dict(data))
        except UnicodeDecodeError:
            why = "not UTF-8 text"
        except RecursionError:
            why = "nested too deeply"
        except (ValueError, TypeError) as exc:
            if number == len(lines) and not raw.endswith(b"\n"):
                continue  # the torn tail of a killed writer: expected, not worth a warning
            why = str(exc).splitlines()[0][:120]
        else:
            continue
        if problems is not None:
            problems.append(f"{path} line {number} skipped: {why}")
    return out


def read_results(path: Path) -> list[HistoryEntry]:
    """Entries from a run's results.json (or the run folder holding it)."""
    if path.is_dir():
        path = path / "results.json"
    try:
        data = json.loads(read_text(path))
    except (OSError, ValueError, RecursionError, MigError) as exc:
        raise ConfigError(f"--mig-compare={path}: cannot read it ({exc}); give a history.jsonl, "
                          "a results.json or a reports/<run-id> folder") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--mig-compare={path}: not a pytest-mig results.json (no object at "
                          "the top); give a history.jsonl, a results.json or a reports/<run-id>")
    run = data.get("run") if isinstance(data.get("run"), dict) else {}
    tests = data.get("tests") if isinstance(data.get("tests"), list) else []
    return [entry_from_record(rec, str(run.get("run_id", path.parent.name)),
                              str(run.get("backend", "")), str(run.get("written_at", "")))
            for rec in tests if isinstance(rec, dict) and "case" in rec]


def read_baseline_source(path: Path, problems: list[str] | None = None) -> list[HistoryEntry]:
    """A history.jsonl, a results.json, or a reports/<run-id> folder."""
    if not path.exists():
        raise ConfigError(f"--mig-compare={path}: no such file or folder; use last, median:N, "
                          "or a path to a history.jsonl, results.json or reports/<run-id>")
    if path.suffix == ".jsonl":
        try:
            return read_history(path, problems)
        except MigError as exc:
            raise ConfigError(f"--mig-compare={path}: {exc}") from None
    return read_results(path)
