"""parse_detail against real `:::MLLOG` detail logs (v1.1 published result and LoadGen 6.0.17 runs)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import ResultParseError
from pytest_mig.results import Detail, LogMessage, parse_detail

DATA = Path(__file__).parent / "data" / "mlperf_logs"
LG6 = DATA / "loadgen-6.0.17"
V11_SERVER = (DATA / "v1.1" / "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT_HeteroMultiUse" / "ssd-resnet34"
              / "Server" / "performance" / "run_1")
DETAIL = "mlperf_log_detail.txt"
LG6_VERSION = "6.0.17 @ d6147c7eb7"


def allocation_warning(tid: int, max_entries: int, line: int) -> LogMessage:
    return LogMessage("warning_generic_message",
                      f"Logging allocation detected: tid: {tid} reserved_entries: 1024 max_entries: {max_entries}",
                      line)


RAN_OUT = ("Ending early: Ran out of generated queries to issue before the minimum query count and test "
           "duration were reached. Please update the relevant expected latency or target qps in the "
           "TestSettings so they are more accurate.")

# folder -> expected values, copied by hand from each file.
EXPECTED: dict[Path, dict] = {
    V11_SERVER: dict(
        version="1.1 @ b1452de454", sut="LWIS_Server", validity="VALID", scenario="Server",
        effective={"min_duration_ms": 600000, "target_qps": 100, "target_latency_ns": 100000000,
                   "min_query_count": 270336, "performance_sample_count": 64, "samples_per_query": 1},
        requested={"server_target_qps": 100, "min_duration_ms": 600000},
        results={"perf_constraints_met": True, "min_duration_met": True, "scheduled_samples_per_sec": 99.9804,
                 "completed_samples_per_sec": 99.9786, "99.00_percentile_latency_ns": 94286630},
        early_stopping={}, warnings=[], errors=[], num_errors=None, n_results=15),
    LG6 / "Server-valid": dict(
        version=LG6_VERSION, sut="PySUT", validity="VALID", scenario="Server",
        effective={"min_duration_ms": 1000, "target_qps": 2000, "target_latency_ns": 100000000,
                   "min_query_count": 2000, "performance_sample_count": 128},
        requested={"server_target_qps": 2000, "min_duration_ms": 1000},
        results={"query_count": 2000, "overlatency_query_count": 0, "completed_samples_per_sec": 1983.38},
        early_stopping={"met": True, "result": " * Run successful."},
        warnings=[], errors=[], num_errors=0, n_results=17),
    LG6 / "Server-invalid-latency": dict(
        version=LG6_VERSION, sut="PySUT", validity="INVALID", scenario="Server",
        effective={"min_duration_ms": 1000, "target_qps": 200, "target_latency_ns": 1000000,
                   "min_query_count": 300},
        requested={"server_target_qps": 200},
        results={"perf_constraints_met": False, "overlatency_query_count": 300,
                 "scheduled_samples_per_sec": 190.648, "completed_samples_per_sec": 189.383,
                 "invalid_reason": "Reduce target QPS to improve latency. "},
        early_stopping={"met": False, "result": " * Run unsuccessful.  * Processed 300 queries.  * Would need "
                        "to run at least 33962 more queries,  with the run being successful if every "
                        "additional  query were under latency."},
        warnings=[], errors=[], num_errors=0, n_results=18),
    LG6 / "Offline-invalid": dict(
        version=LG6_VERSION, sut="PySUT", validity="INVALID", scenario="Offline",
        effective={"min_duration_ms": 1000, "target_qps": 1000, "samples_per_query": 1100, "min_query_count": 1},
        requested={"offline_expected_qps": 1000},
        results={"min_duration_met": False, "samples_per_second": 428937, "query_count": 1,
                 "invalid_reason": "Increase expected QPS so the loadgen pre-generates a larger (coalesced) "
                                   "query. "},
        early_stopping={"met": True, "result": ""},
        warnings=[allocation_warning(5955, 1113, 66)], errors=[], num_errors=0, n_results=15),
    LG6 / "MultiStream-valid": dict(
        version=LG6_VERSION, sut="PySUT", validity="VALID", scenario="MultiStream",
        effective={"min_duration_ms": 1000, "samples_per_query": 8, "min_query_count": 1000,
                   "target_latency_percentile": 0.99},
        requested={"multi_stream_expected_latency_ns": 10000},
        results={"query_count": 38992, "99.00_percentile_per_query_latency_ns": 37280,
                 "99.90_percentile_latency_ns": 67507},
        early_stopping={"met": True, "latency_ms": 38703,
                        "result": " * Processed at least 662 queries (38992).  * Would discard 343 highest "
                        "latency queries.  * Early stopping 99.0th percentile estimate: 38703"},
        warnings=[allocation_warning(6264, 169899, 68)], errors=[], num_errors=0, n_results=22),
    LG6 / "MultiStream-invalid": dict(
        version=LG6_VERSION, sut="PySUT", validity="INVALID", scenario="MultiStream",
        effective={"min_duration_ms": 1000, "samples_per_query": 8, "min_query_count": 100, "target_qps": 100},
        requested={"multi_stream_expected_latency_ns": 1e7},
        results={"query_count": 201, "min_duration_met": False,
                 "invalid_reason": "Decrease the expected latency so the loadgen pre-generates more queries. "},
        early_stopping={"met": False, "latency_ms": 0},
        warnings=[], errors=[LogMessage("error_runtime", RAN_OUT, 67)], num_errors=1, n_results=23),
    LG6 / "SingleStream-valid": dict(
        version=LG6_VERSION, sut="PySUT", validity="VALID", scenario="SingleStream",
        effective={"min_duration_ms": 1000, "target_qps": 100000, "min_query_count": 100,
                   "target_latency_percentile": 0.9},
        requested={"single_stream_expected_latency_ns": 10000},
        results={"query_count": 138949, "qps_with_loadgen_overhead": 138948, "90.00_percentile_latency_ns": 5530},
        early_stopping={"met": True, "latency_ss": 5541, "latency_ms": 7945},
        warnings=[allocation_warning(6262, 257100, 67)], errors=[], num_errors=0, n_results=15),
}


def test_expected_table_covers_every_detail_log_in_the_data_tree():
    assert sorted(DATA.rglob(DETAIL)) == sorted(p / DETAIL for p in EXPECTED)


@pytest.mark.parametrize("folder", list(EXPECTED), ids=lambda p: str(p.relative_to(DATA)))
def test_detail_matches_file(folder: Path):
    want = EXPECTED[folder]
    got = parse_detail(folder / DETAIL)
    assert isinstance(got, Detail)
    assert got.malformed == []
    assert got.loadgen_version == want["version"]
    assert got.sut_name == want["sut"]
    assert got.result_validity == want["validity"]
    assert got.results["validity"] == want["validity"]
    assert got.valid is (want["validity"] == "VALID") and got.complete
    assert (got.scenario, got.mode) == (want["scenario"], "PerformanceOnly")
    for section in ("effective", "requested", "results", "early_stopping"):
        for key, value in want[section].items():
            assert getattr(got, section)[key] == value, (section, key)
    assert len(got.results) == want["n_results"]
    assert got.warnings == want["warnings"]
    assert got.errors == want["errors"]
    assert got.num_errors == want["num_errors"]
    assert not any(k.startswith(("effective_", "requested_", "result_")) for k in
                   [*got.effective, *got.requested, *got.results])
    assert got.values["effective_min_duration_ms"] == want["effective"]["min_duration_ms"]


def test_nested_json_values_are_kept():
    got = parse_detail(LG6 / "Server-valid" / DETAIL)
    sha1 = got.values["loadgen_file_sha1"]
    assert isinstance(sha1, dict) and sha1["/early_stopping.cc"] == "0cd7b546a389deac73f7955cd39255ed76557d62"
    assert got.values["generic_message"] == "Starting performance mode"


def test_malformed_and_foreign_lines_are_recorded_not_fatal():
    lines = (LG6 / "MultiStream-invalid" / DETAIL).read_text().splitlines()
    lines[9] = lines[9][:40]  # a line cut in the middle of its JSON
    lines[20] = ':::MLLOG ["not", "an", "object"]'
    lines.insert(30, "some harness chatter between records")
    got = parse_detail("\n".join(lines) + "\n")
    assert got.malformed == [10, 21]
    assert got.result_validity == "INVALID"
    assert got.errors == [LogMessage("error_runtime", RAN_OUT, 68)]


def test_log_cut_before_the_verdict_is_incomplete_not_fatal():
    lines = (LG6 / "MultiStream-invalid" / DETAIL).read_text().splitlines(keepends=True)
    got = parse_detail("".join(lines[:67]) + lines[67][:50])
    assert got.result_validity == "" and not got.valid and not got.complete
    assert got.malformed == [68]
    assert got.errors == [LogMessage("error_runtime", RAN_OUT, 67)]
    assert got.effective["min_duration_ms"] == 1000


@pytest.mark.parametrize("text, needle", [
    ("", "no ':::MLLOG"),
    ("just\nsome\nlog lines\n", "no ':::MLLOG"),
    (":::MLLOG {broken\n:::MLLOG {\"key\": 1}\n", "2 malformed"),
])
def test_logs_without_any_record_are_refused(tmp_path: Path, text: str, needle: str):
    target = tmp_path / DETAIL
    target.write_text(text)
    with pytest.raises(ResultParseError, match=needle) as info:
        parse_detail(target)
    assert str(target) in str(info.value)


def test_missing_detail_file_is_refused(tmp_path: Path):
    with pytest.raises(ResultParseError, match="file not found"):
        parse_detail(tmp_path / DETAIL)
