"""Read the verdicts of MLPerf compliance audits (TEST01/03/04/05/06/07/08/09 `verify_*.txt`), v0.5 to v6.0.

Rules: the last `TEST PASS`/`TEST FAIL` line is the verdict; scores are read whatever their
capitalisation (`reference score = ` in v1.x, `Reference score = ` in v5.x). TEST06 (LLM
output checks, v4.1 and later) prints only `<check> check pass: True|False|Skipped` lines and `TEST06
verification complete`: it passes when no check says False. Folder names like `TEST05_sr`
or `TEST04-A` name their test. v6.0: TEST07 (gpt-oss accuracy in performance mode) and TEST09
(`verify_output_len.txt`, output token lengths: a performance check) print `Name: value` lines
and `... check pass:` lines before their verdict; TEST08 (dlrm-v3) ends with `TEST08
verification complete` after the verdict. Their `Name: number` lines go to `details` (a
verdict with a `Verifying ...` line keeps only `name = number` lines, as before).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pytest_mig.errors import ResultParseError
from pytest_mig.results.summary import load_text

TEST_NAME = re.compile(r"\b(TEST\d\d)(?![0-9])", re.IGNORECASE)
CHECK_LINE = re.compile(r"^(?P<check>[A-Za-z][\w ]*?) check pass: (?P<value>True|False|Skipped)$")
TEST06_DONE = "TEST06 verification complete"
VERDICT = re.compile(r"^TEST (PASS|FAIL)\b")
NUMBER_LINE = re.compile(r"^(?P<key>[A-Za-z][\w\- ]*?)\s*=\s*(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")
COLON_NUMBER = re.compile(r"^(?P<key>[A-Za-z][\w\- ]*?)\s*:\s*(?P<value>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)$")
# File names of verdicts that print no 'Verifying ...' line: name prefix -> kind.
KIND_BY_NAME = (("verify_accuracy", "accuracy"), ("verify_performance", "performance"),
                ("verify_output_len", "performance"))
# TEST04 (v1.x) compares part B (same sample repeated) against part A (unique samples).
REFERENCE_KEYS = ("reference score", "test04-a score")
TEST_KEYS = ("test score", "test04-b score")


@dataclass(frozen=True)
class AuditVerdict:
    """One compliance check: which test, what it checked, pass/fail and the numbers it printed."""

    test: str  # "TEST01" | "TEST04" | "TEST05" | "" when unknown
    kind: str  # "accuracy" | "performance"
    passed: bool
    reference_score: float | None = None
    test_score: float | None = None
    details: dict[str, float | int] = field(default_factory=dict)
    checks: dict[str, str] = field(default_factory=dict)  # TEST06: check name -> True/False/Skipped


def parse_audit(source: str | Path, test: str = "") -> AuditVerdict:
    """Parse a verify_accuracy.txt / verify_performance.txt; `test` defaults to the TESTnn in its path."""
    text, where = load_text(source)
    lines = [line.strip() for line in text.replace("\x00", "").splitlines()]
    if not any(VERDICT.match(line) for line in lines) and any(CHECK_LINE.match(line) for line in lines):
        return _test06(lines, where)
    kind = _kind(lines, where)
    verdicts = [m.group(1) for m in map(VERDICT.match, lines) if m]
    if not verdicts:
        raise ResultParseError(f"{where}: no 'TEST PASS' or 'TEST FAIL' line: the compliance check did not "
                               "finish; rerun the audit's verify script and save its whole output")
    details: dict[str, float | int] = {}
    verifying = any(line.startswith("Verifying ") for line in lines)
    for line in lines:
        match = NUMBER_LINE.match(line) or (None if verifying else COLON_NUMBER.match(line))
        if match:
            raw = match.group("value")
            details[match.group("key")] = int(raw) if re.fullmatch(r"[-+]?\d+", raw) else float(raw)
    checks = {m.group("check"): m.group("value") for m in map(CHECK_LINE.match, lines) if m}
    return AuditVerdict(
        checks=checks,
        test=_test_name(test, where),
        kind=kind,
        passed=verdicts[-1] == "PASS",
        reference_score=_first(details, REFERENCE_KEYS),
        test_score=_first(details, TEST_KEYS),
        details=details,
    )


def _test06(lines: list[str], where: str) -> AuditVerdict:
    checks = {m.group("check"): m.group("value") for m in map(CHECK_LINE.match, lines) if m}
    if TEST06_DONE not in lines:
        raise ResultParseError(f"{where}: TEST06 output without '{TEST06_DONE}': the check did not finish; "
                               "rerun TEST06's run_verification.py and save its whole output")
    return AuditVerdict(test="TEST06", kind="accuracy", passed="False" not in checks.values(), checks=checks)


def _kind(lines: list[str], where: str) -> str:
    for line in lines:
        if line.startswith("Verifying accuracy"):
            return "accuracy"
        if line.startswith("Verifying performance"):
            return "performance"
    name = Path(where).name
    for prefix, kind in KIND_BY_NAME:
        if name.startswith(prefix):
            return kind
    raise ResultParseError(f"{where}: not a compliance verdict: no 'Verifying accuracy' or 'Verifying "
                           "performance' line; pass the audit's verify_accuracy.txt, verify_performance.txt "
                           "or verify_output_len.txt")


def _test_name(given: str, where: str) -> str:
    match = TEST_NAME.search(given) or TEST_NAME.search(where)
    return match.group(1).upper() if match else given.strip().upper()


def _first(details: dict[str, float | int], keys: tuple[str, ...]) -> float | None:
    lowered = {key.lower(): value for key, value in details.items()}
    for key in keys:
        if key in lowered:
            return float(lowered[key])
    return None
