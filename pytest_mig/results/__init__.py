"""Parsers for what LoadGen and the MLPerf scripts leave behind; no pytest in here."""
from __future__ import annotations

from pytest_mig.results.accuracy import (
    ACCURACY_FIELDS,
    ACCURACY_METRICS,
    AccuracyResult,
    AccuracyWarning,
    format_accuracy,
    normalize_benchmark,
    parse_accuracy,
    read_fields,
)
from pytest_mig.results.audit import AuditVerdict, parse_audit
from pytest_mig.results.detail import Detail, LogMessage, parse_detail
from pytest_mig.results.summary import Summary, headline, parse_summary

__all__ = [
    "ACCURACY_FIELDS", "ACCURACY_METRICS", "AccuracyResult", "AccuracyWarning", "AuditVerdict", "Detail", "LogMessage",
    "Summary", "format_accuracy", "headline", "normalize_benchmark", "parse_accuracy", "parse_audit",
    "parse_detail", "parse_summary", "read_fields",
]
