"""parse_audit against real compliance verdicts (TEST01, TEST04-A, TEST05 of a v1.1 hetero submission)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import ResultParseError
from pytest_mig.results import AuditVerdict, parse_audit

COMPLIANCE = Path(__file__).parent / "data" / "mlperf_logs" / "v1.1" / "compliance"

REAL = {
    "TEST01/verify_accuracy.txt": AuditVerdict(
        "TEST01", "accuracy", True, None, None,
        {"num_acc_log_entries": 50000, "num_acc_log_duplicate_keys": 0, "num_acc_log_data_mismatch": 0,
         "num_perf_log_entries": 4090, "num_perf_log_qsl_idx_match": 4090, "num_perf_log_data_mismatch": 0,
         "num_missing_qsl_idxs": 0}),
    "TEST01/verify_performance.txt": AuditVerdict(
        "TEST01", "performance", True, 5270.08, 5271.2, {"reference score": 5270.08, "test score": 5271.2}),
    "TEST04-A/verify_performance.txt": AuditVerdict(
        "TEST04", "performance", True, 5319.42, 5205.19, {"TEST04-A score": 5319.42, "TEST04-B score": 5205.19}),
    "TEST05/verify_performance.txt": AuditVerdict(
        "TEST05", "performance", True, 5270.08, 5272.01, {"reference score": 5270.08, "test score": 5272.01}),
}


def test_table_covers_every_verdict_in_the_data_tree():
    assert sorted(COMPLIANCE.rglob("verify_*.txt")) == sorted(COMPLIANCE / name for name in REAL)


@pytest.mark.parametrize("name", list(REAL))
def test_real_verdict(name: str):
    got = parse_audit(COMPLIANCE / name)
    assert got == REAL[name]
    assert isinstance(got.details.get("num_acc_log_entries", 0), int)


def test_explicit_test_name_wins_over_the_path():
    text = (COMPLIANCE / "TEST05" / "verify_performance.txt").read_text()
    assert parse_audit(text).test == ""
    assert parse_audit(text, "test05").test == "TEST05"
    assert parse_audit(COMPLIANCE / "TEST01" / "verify_performance.txt", "TEST04-B").test == "TEST04"


def test_failed_verdict():
    text = "Verifying performance.\nreference score = 5270.08\ntest score = 4000.5\nTEST FAIL\n"
    got = parse_audit(text, "TEST05")
    assert (got.passed, got.reference_score, got.test_score) == (False, 5270.08, 4000.5)


@pytest.mark.parametrize("text, needle", [
    ("", "no 'Verifying accuracy'"),
    ("Verifying performance.\nreference score = 5270.08\n", "no 'TEST PASS' or 'TEST FAIL'"),
    ("Verifying accuracy. This might take a while...\nReading accuracy mode results...\n",
     "no 'TEST PASS' or 'TEST FAIL'"),
    ("random words\nTEST PASS\n", "no 'Verifying accuracy'"),
])
def test_truncated_or_foreign_text_is_refused(tmp_path: Path, text: str, needle: str):
    target = tmp_path / "verdict.txt"
    target.write_text(text)
    with pytest.raises(ResultParseError, match=needle) as info:
        parse_audit(target)
    assert str(target) in str(info.value)


def test_kind_falls_back_to_the_file_name(tmp_path: Path):
    target = tmp_path / "TEST01" / "verify_accuracy.txt"
    target.parent.mkdir()
    target.write_text("num_acc_log_entries = 3\nTEST PASS\n")
    assert parse_audit(target) == AuditVerdict("TEST01", "accuracy", True, None, None, {"num_acc_log_entries": 3})
