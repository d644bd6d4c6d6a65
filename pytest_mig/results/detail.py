"""Parse LoadGen's `mlperf_log_detail.txt` (`:::MLLOG {json}` lines) into a `Detail`.

The detail log is written as the run goes, so a crashed run leaves a partial file that
still says why it failed: malformed lines are recorded, not fatal. Rules:
- NUL bytes (seen inside JSON values of published logs) are dropped before decoding.
- LoadGen before 1.0 (MLPerf v0.5/v0.7) wrote plain text lines
  `"pid": N, "tid": N, "ts": Nns : <message>`; those logs are read for the version, the SUT
  name, the Effective/Requested Settings blocks and WARNING/ERROR lines (`format` "text").
  They carry no verdict: `result_validity` stays "" (read the summary for it).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mig.errors import ResultParseError
from pytest_mig.results.summary import load_text

MARKER = ":::MLLOG"
TEXT_LINE = re.compile(r'^"pid": \d+, "tid": \d+, "ts": \d+ns : ?(?P<msg>.*)$')
TEXT_KEY = re.compile(r"^(?P<key>[^:]+?)\s*:\s*(?P<value>.*)$")
TEXT_SETTINGS = {"Effective Settings:": "effective", "Requested Settings:": "requested"}


@dataclass(frozen=True)
class LogMessage:
    """One warning or error entry of the detail log."""

    key: str
    value: Any
    line: int  # 1-based line number in the file


@dataclass
class Detail:
    """What the detail log says: verdict, settings LoadGen used, warnings and errors.

    `results`, `effective`, `requested` and `early_stopping` hold the `result_*`,
    `effective_*`, `requested_*` and `early_stopping_*` keys without their prefix.
    """

    source: str
    loadgen_version: str = ""
    sut_name: str = ""
    result_validity: str = ""  # "" when the run ended before LoadGen wrote its verdict
    results: dict[str, Any] = field(default_factory=dict)
    effective: dict[str, Any] = field(default_factory=dict)
    requested: dict[str, Any] = field(default_factory=dict)
    early_stopping: dict[str, Any] = field(default_factory=dict)
    warnings: list[LogMessage] = field(default_factory=list)
    errors: list[LogMessage] = field(default_factory=list)
    num_errors: int | None = None  # LoadGen's own count, when it got that far
    values: dict[str, Any] = field(default_factory=dict)  # every key, last value wins
    malformed: list[int] = field(default_factory=list)  # line numbers of unreadable MLLOG lines
    format: str = "mllog"  # "mllog" (LoadGen 1.0 and later) | "text" (before 1.0)

    @property
    def valid(self) -> bool:
        return self.result_validity == "VALID"

    @property
    def complete(self) -> bool:
        """True when LoadGen got as far as writing its verdict."""
        return bool(self.result_validity)

    @property
    def scenario(self) -> str:
        return str(self.effective.get("scenario", ""))

    @property
    def mode(self) -> str:
        return str(self.effective.get("test_mode", ""))


PREFIXES = (("result_", "results"), ("effective_", "effective"), ("requested_", "requested"),
            ("early_stopping_", "early_stopping"))


def parse_detail(source: str | Path) -> Detail:
    """Parse a detail log (path, or its text as a str with newlines); ResultParseError if it has no records."""
    text, name = load_text(source)
    text = text.replace("\x00", "")
    detail = Detail(source=name)
    if MARKER not in text and any(TEXT_LINE.match(line) for line in text.splitlines()[:50]):
        return _parse_text(detail, text)
    records = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line.startswith(MARKER):
            continue
        entry = _decode(line[len(MARKER):])
        if entry is None:
            detail.malformed.append(number)
            continue
        records += 1
        _record(detail, entry, number)
    if records == 0:
        what = f"{len(detail.malformed)} malformed ':::MLLOG' lines" if detail.malformed \
            else "no ':::MLLOG {json}' lines"
        raise ResultParseError(f"{name}: not a LoadGen mlperf_log_detail.txt: {what}. Point the harness at "
                               "the run's own detail log, or rerun the benchmark if it is damaged.")
    return detail


def _decode(payload: str) -> dict[str, Any] | None:
    try:
        entry = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or "value" not in entry:
        return None
    return entry


def _record(detail: Detail, entry: dict[str, Any], number: int) -> None:
    key, value = entry["key"], entry["value"]
    detail.values[key] = value
    metadata = entry.get("metadata")
    if isinstance(metadata, dict):
        if metadata.get("is_error") is True:
            detail.errors.append(LogMessage(key, value, number))
        if metadata.get("is_warning") is True:
            detail.warnings.append(LogMessage(key, value, number))
    if key == "result_validity":
        detail.result_validity = str(value)
    elif key == "loadgen_version":
        detail.loadgen_version = str(value)
    elif key == "sut_name":
        detail.sut_name = str(value)
    elif key == "num_errors" and isinstance(value, int):
        detail.num_errors = value
    for prefix, attribute in PREFIXES:
        if key.startswith(prefix):
            getattr(detail, attribute)[key[len(prefix):]] = value
            break


def _parse_text(detail: Detail, text: str) -> Detail:
    """The pre-1.0 plain-text detail log."""
    detail.format = "text"
    block: dict[str, Any] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        match = TEXT_LINE.match(raw.strip())
        if not match:
            continue  # git log lines and other continuation text
        msg = match.group("msg").strip()
        if msg in TEXT_SETTINGS:
            block = getattr(detail, TEXT_SETTINGS[msg])
            continue
        if not msg:
            block = None
            continue
        kv = TEXT_KEY.match(msg)
        if kv is None:
            continue
        key, value = kv.group("key"), kv.group("value").strip()
        if block is not None:
            block[{"Scenario": "scenario", "Test mode": "test_mode"}.get(key, key)] = value
        elif key == "version" and not detail.loadgen_version:
            detail.loadgen_version = value
        elif key == "System Under Test (SUT) name":
            detail.sut_name = value
        elif key in ("WARNING", "ERROR"):
            (detail.warnings if key == "WARNING" else detail.errors).append(LogMessage(key.lower(), value, number))
        detail.values.setdefault(key, value)
    return detail
