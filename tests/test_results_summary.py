"""parse_summary against real LoadGen summaries (v1.1 published results and LoadGen 6.0.17 runs)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import ResultParseError
from pytest_mig.results import Summary, headline, parse_summary

DATA = Path(__file__).parent / "data" / "mlperf_logs"
LG6 = DATA / "loadgen-6.0.17"
HETERO = DATA / "v1.1" / "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT_HeteroMultiUse"
SUMMARY = "mlperf_log_summary.txt"

ALL_MET_V1 = {"Min duration satisfied": True, "Min queries satisfied": True}
ALL_MET_V1_SERVER = {"Performance constraints satisfied": True, **ALL_MET_V1}
ALL_MET_V6 = {**ALL_MET_V1, "Early stopping satisfied": True}


def lat(mn, mx, mean, p50, p90, p95, p97, p99, p999) -> dict[str, float]:
    return {"min": mn, "max": mx, "mean": mean, "p50": p50, "p90": p90, "p95": p95, "p97": p97,
            "p99": p99, "p99.9": p999}


# path -> expected fields, every value copied by hand from the file itself.
EXPECTED: dict[Path, dict] = {
    LG6 / "MultiStream-invalid": dict(
        sut_name="PySUT", scenario="MultiStream", result="INVALID",
        headline=("99.0th percentile latency (ns)", 2691338),
        constraints={"Min duration satisfied": False, "Min queries satisfied": True,
                     "Early stopping satisfied": False},
        invalid_reasons=[
            "Min duration not satisfied",
            "Early stopping not satisfied (Only processed 201 queries. "
            "Need to process at least 662 queries for early stopping.)",
            "Decrease the expected latency so the loadgen pre-generates more queries."],
        recommendations=["Decrease the expected latency so the loadgen pre-generates more queries."],
        early_stopping=["Only processed 201 queries.", "Need to process at least 662 queries for early stopping."],
        estimates={}, additional={},
        latencies=lat(2258235, 2811353, 2455455, 2453101, 2554000, 2606939, 2625424, 2691338, 2811353),
        params={"samples_per_query": "8", "target_qps": "100", "min_duration (ms)": "1000",
                "min_query_count": "100", "performance_sample_count": "128", "accuracy_sample_count": "1024"},
        warnings=0, errors=1),
    LG6 / "MultiStream-valid": dict(
        sut_name="PySUT", scenario="MultiStream", result="VALID",
        headline=("99.0th percentile latency (ns)", 37280), constraints=ALL_MET_V6, invalid_reasons=[],
        recommendations=[],
        early_stopping=["Processed at least 662 queries (38992).", "Would discard 343 highest latency queries.",
                        "Early stopping 99.0th percentile estimate: 38703"],
        estimates={"99.0th percentile": 38703}, additional={},
        latencies=lat(16531, 302077, 19320, 17082, 28103, 30467, 31589, 37280, 67507),
        params={"samples_per_query": "8", "target_qps": "100000", "min_query_count": "1000",
                "min_duration (ms)": "1000"},
        warnings=1, errors=0),
    LG6 / "Offline-invalid": dict(
        sut_name="PySUT", scenario="Offline", result="INVALID",
        headline=("Samples per second", 428937),
        constraints={"Min duration satisfied": False, "Min queries satisfied": True,
                     "Early stopping satisfied": True},
        invalid_reasons=["Min duration not satisfied",
                         "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."],
        recommendations=["Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."],
        early_stopping=[], estimates={}, additional={},
        latencies=lat(*[2564479] * 9),
        params={"samples_per_query": "1100", "target_qps": "1000", "min_duration (ms)": "1000",
                "target_latency (ns)": "0"},
        warnings=1, errors=0),
    LG6 / "Offline-valid": dict(
        sut_name="PySUT", scenario="Offline", result="VALID",
        headline=("Samples per second", 318100), constraints=ALL_MET_V6, invalid_reasons=[],
        recommendations=[], early_stopping=[], estimates={}, additional={},
        latencies=lat(*[6916062570] * 9),
        params={"samples_per_query": "2200000", "target_qps": "2e+06", "min_duration (ms)": "1000"},
        warnings=10108, errors=0),
    LG6 / "Server-invalid-latency": dict(
        sut_name="PySUT", scenario="Server", result="INVALID",
        headline=("Completed samples per second", 189.38),
        constraints={"Performance constraints satisfied": False, "Min duration satisfied": True,
                     "Min queries satisfied": True, "Early stopping satisfied": False},
        invalid_reasons=[
            "Performance constraints not satisfied",
            "Early stopping not satisfied (Run unsuccessful. Processed 300 queries. Would need to run at "
            "least 33962 more queries, with the run being successful if every additional query were "
            "under latency.)",
            "Reduce target QPS to improve latency."],
        recommendations=["Reduce target QPS to improve latency."],
        early_stopping=["Run unsuccessful.", "Processed 300 queries.",
                        "Would need to run at least 33962 more queries, with the run being successful if "
                        "every additional query were under latency."],
        estimates={}, additional={"Scheduled samples per second": 190.65},
        latencies=lat(10260595, 11541401, 10582943, 10560573, 10776588, 10949874, 11033597, 11098110,
                      11541401),
        params={"target_qps": "200", "target_latency (ns)": "1000000", "min_query_count": "300",
                "max_async_queries": "0"},
        warnings=0, errors=0),
    LG6 / "Server-valid": dict(
        sut_name="PySUT", scenario="Server", result="VALID",
        headline=("Completed samples per second", 1983.38),
        constraints={"Performance constraints satisfied": True, **ALL_MET_V6}, invalid_reasons=[],
        recommendations=[], early_stopping=["Run successful."], estimates={},
        additional={"Scheduled samples per second": 1983.54},
        latencies=lat(4405, 603761, 89928, 81482, 124922, 158096, 186089, 261696, 496317),
        params={"target_qps": "2000", "target_latency (ns)": "100000000", "min_query_count": "2000"},
        warnings=0, errors=0),
    LG6 / "SingleStream-valid": dict(
        sut_name="PySUT", scenario="SingleStream", result="VALID",
        headline=("90.0th percentile latency (ns)", 5530), constraints=ALL_MET_V6, invalid_reasons=[],
        recommendations=[],
        early_stopping=["Processed at least 64 queries (138949).", "Would discard 13633 highest latency queries.",
                        "Early stopping 90.0th percentile estimate: 5541",
                        "Early stopping 99.0th percentile estimate: 7945"],
        estimates={"90.0th percentile": 5541, "99.0th percentile": 7945},
        additional={"QPS w/ loadgen overhead": 138947.75, "QPS w/o loadgen overhead": 217817.47},
        latencies=lat(3426, 18330057, 4591, 4087, 5530, 5941, 6282, 7654, 32231),
        params={"target_qps": "100000", "min_query_count": "100", "min_duration (ms)": "1000"},
        warnings=1, errors=0),
    DATA / "v1.1" / "A30-MIG_1x1g.6gb_TRT_HeteroMultiUse" / "resnet50" / "Server" / "performance" / "run_1": dict(
        sut_name="LWIS_Server", scenario="Server", result="VALID",
        headline=("Scheduled samples per second", 3102.76), constraints=ALL_MET_V1_SERVER, invalid_reasons=[],
        recommendations=[], early_stopping=[], estimates={},
        additional={"Completed samples per second": 3102.73},
        latencies=lat(929518, 18339224, 5426688, 5165190, 7981998, 8982805, 9670704, 11031504, 13437371),
        params={"target_qps": "3100", "target_latency (ns)": "15000000", "min_duration (ms)": "600000",
                "min_query_count": "270336", "schedule_rng_seed": "10051496985653635065",
                "performance_sample_count": "2048"},
        warnings=0, errors=0),
    DATA / "v1.1" / "DGX-A100_A100-SXM-80GB-MIG_1x1g.10gb_TRT" / "resnet50" / "SingleStream" / "performance"
    / "run_1": dict(
        sut_name="LWIS_Server", scenario="SingleStream", result="VALID",
        headline=("90th percentile latency (ns)", 657664), constraints=ALL_MET_V1, invalid_reasons=[],
        recommendations=[], early_stopping=[], estimates={},
        additional={"QPS w/ loadgen overhead": 1520.67, "QPS w/o loadgen overhead": 1529.55},
        latencies=lat(617348, 5801914, 653786, 652284, 657664, 660459, 662443, 666090, 787078),
        params={"target_qps": "1515.15", "min_duration (ms)": "600000", "min_query_count": "1024"},
        warnings=0, errors=0),
    HETERO / "bert-99" / "Server" / "performance" / "run_1": dict(
        sut_name="BERT SERVER", scenario="Server", result="VALID",
        headline=("Scheduled samples per second", 379.93), constraints=ALL_MET_V1_SERVER, invalid_reasons=[],
        recommendations=[], early_stopping=[], estimates={},
        additional={"Completed samples per second": 379.91},
        latencies=lat(4397814, 714823728784, 3366250407, 41582953, 63069902, 69667186, 74457099, 91880236,
                      625720679164),
        params={"target_qps": "380", "target_latency (ns)": "130000000", "performance_sample_count": "10833"},
        warnings=0, errors=0),
    HETERO / "ssd-resnet34" / "Offline" / "performance" / "run_1": dict(
        sut_name="LWIS_Server", scenario="Offline", result="VALID",
        headline=("Samples per second", 133.743), constraints=ALL_MET_V1, invalid_reasons=[],
        recommendations=[], early_stopping=[], estimates={}, additional={},
        latencies=lat(474104960, 666202816035, 333339177572, 333590611706, 599604020494, 633101693114,
                      646498244287, 659892851815, 665634255414),
        params={"samples_per_query": "89100", "target_qps": "135", "min_duration (ms)": "600000",
                "performance_sample_count": "64"},
        warnings=0, errors=0),
    HETERO / "ssd-resnet34" / "Server" / "performance" / "run_1": dict(
        sut_name="LWIS_Server", scenario="Server", result="VALID",
        headline=("Scheduled samples per second", 99.98), constraints=ALL_MET_V1_SERVER, invalid_reasons=[],
        recommendations=[], early_stopping=[], estimates={},
        additional={"Completed samples per second": 99.98},
        latencies=lat(8295052, 204917523, 35688097, 31421001, 58949476, 69792977, 77452614, 94286630, 128378638),
        params={"target_qps": "100", "target_latency (ns)": "100000000", "min_query_count": "270336"},
        warnings=0, errors=0),
    DATA / "v1.1" / "invalid" / "A10x1_TRT_ssd-mobilenet_Offline_TEST04-A": dict(
        sut_name="LWIS_Server", scenario="Offline", result="INVALID",
        headline=("Samples per second", 15462.3),
        constraints={"Min duration satisfied": False, "Min queries satisfied": True},
        invalid_reasons=["Min duration not satisfied",
                         "Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."],
        recommendations=["Increase expected QPS so the loadgen pre-generates a larger (coalesced) query."],
        early_stopping=[], estimates={}, additional={},
        latencies=lat(59218904, 66225407, 60313670, 59218904, *[66225407] * 5),
        params={"samples_per_query": "1024", "target_qps": "19000", "min_duration (ms)": "600000",
                "performance_issue_unique": "1"},
        warnings=1, errors=0),
}


def test_expected_table_covers_every_summary_in_the_data_tree():
    assert sorted(DATA.rglob(SUMMARY)) == sorted(p / SUMMARY for p in EXPECTED)


@pytest.mark.parametrize("folder", list(EXPECTED), ids=lambda p: str(p.relative_to(DATA)))
def test_summary_matches_file(folder: Path):
    want = EXPECTED[folder]
    got = parse_summary(folder / SUMMARY)
    assert isinstance(got, Summary)
    assert got.source == str(folder / SUMMARY)
    assert (got.sut_name, got.scenario, got.mode) == (want["sut_name"], want["scenario"], "PerformanceOnly")
    assert got.result == want["result"]
    assert got.valid is (want["result"] == "VALID")
    assert headline(got) == want["headline"]
    assert (got.headline_name, got.headline_value) == want["headline"]
    assert got.constraints == want["constraints"]
    assert got.invalid_reasons == want["invalid_reasons"]
    assert got.recommendations == want["recommendations"]
    assert got.early_stopping == want["early_stopping"]
    assert got.early_stopping_estimates == want["estimates"]
    assert got.additional == want["additional"]
    assert got.latencies_ns == want["latencies"]
    for key, value in want["params"].items():
        assert got.test_parameters[key] == value, key
    assert (got.warnings, got.errors) == (want["warnings"], want["errors"])


def test_v1_and_v6_test_parameter_sets():
    v1 = parse_summary(HETERO / "ssd-resnet34" / "Server" / "performance" / "run_1" / SUMMARY)
    v6 = parse_summary(LG6 / "Server-valid" / SUMMARY)
    assert len(v1.test_parameters) == 19 and "accuracy_sample_count" not in v1.test_parameters
    assert len(v6.test_parameters) == 20 and v6.test_parameters["accuracy_sample_count"] == "1024"
    assert v6.test_parameters["qsl_rng_seed"] == "0"


def test_text_source_is_parsed_like_the_file():
    path = LG6 / "Offline-valid" / SUMMARY
    from_text = parse_summary(path.read_text())
    assert from_text.source == "<text>"
    assert from_text.headline_value == parse_summary(str(path)).headline_value == 318100


# -- unusable input ---------------------------------------------------------------

def _real_lines() -> list[str]:
    return (LG6 / "Server-invalid-latency" / SUMMARY).read_text().splitlines(keepends=True)


def test_every_truncation_before_the_last_line_is_refused(tmp_path: Path):
    lines = _real_lines()
    last = max(i for i, line in enumerate(lines) if line.strip())
    for cut in range(last):
        target = tmp_path / f"cut{cut}.txt"
        target.write_text("".join(lines[:cut + 1]))
        with pytest.raises(ResultParseError) as info:
            parse_summary(target)
        assert str(target) in str(info.value)
    assert parse_summary("".join(lines[:last + 1])).errors == 0


@pytest.mark.parametrize("text, needle", [
    ("", "empty"),
    ("\n\n   \n", "empty"),
    ("hello\nworld\n", "MLPerf Results Summary"),
    ("\x00\x01\xff garbage \x02\n" * 20, "MLPerf Results Summary"),
    # What LoadGen 6.0.17 writes as the summary of an AccuracyOnly run.
    ("\nNo warnings encountered during test.\n\nNo errors encountered during test.\n", "AccuracyOnly"),
])
def test_garbled_text_is_refused(tmp_path: Path, text: str, needle: str):
    target = tmp_path / SUMMARY
    target.write_text(text, encoding="utf-8", errors="surrogateescape")
    with pytest.raises(ResultParseError, match=needle) as info:
        parse_summary(target)
    assert str(target) in str(info.value)


@pytest.mark.parametrize("old, new, needle", [
    ("Completed samples per second    : 189.38", "Completed samples per second    : fast",
     "'Completed samples per second' has value 'fast'"),
    ("Result is : INVALID", "Result is : MAYBE", "neither VALID nor INVALID"),
    ("Result is : INVALID", "Outcome : INVALID", "no 'Result is' line"),
    ("Scenario : Server\n", "", "no 'Scenario :' line"),
    ("Completed samples per second    : 189.38\n", "", "no headline metric"),
    ("  Min duration satisfied : Yes", "  Min duration satisfied : maybe", "expected a constraint"),
    ("Additional Stats", "More Stats", "no 'Additional Stats' section"),
    ("Test Parameters Used", "Parameters", "no 'Test Parameters Used' section"),
    ("No warnings encountered during test.", "", "no '... warnings encountered' line"),
    ("min_duration (ms): 1000", "min_duration 1000", "expected 'parameter : value'"),
])
def test_damaged_real_file_is_refused(old: str, new: str, needle: str):
    text = "".join(_real_lines())
    assert old in text
    with pytest.raises(ResultParseError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        parse_summary(text.replace(old, new, 1))


def test_missing_file_and_directory_are_refused(tmp_path: Path):
    with pytest.raises(ResultParseError, match="file not found"):
        parse_summary(tmp_path / "nope" / SUMMARY)
    with pytest.raises(ResultParseError, match="is a directory"):
        parse_summary(tmp_path)


def test_crlf_line_endings_are_read():
    text = (LG6 / "SingleStream-valid" / SUMMARY).read_text().replace("\n", "\r\n")
    got = parse_summary(text)
    assert got.early_stopping_estimates == {"90.0th percentile": 5541, "99.0th percentile": 7945}
    assert got.warnings == 1


def test_invalid_without_reasons_still_explains():
    text = "".join(_real_lines())
    for old in ("  Performance constraints satisfied : NO\n", "  Early stopping satisfied: NO\n",
                "Recommendations:\n * Reduce target QPS to improve latency.\n"):
        text = text.replace(old, "")
    got = parse_summary(text)
    assert not got.valid
    assert got.invalid_reasons == [
        "LoadGen reported INVALID without naming a reason; see mlperf_log_detail.txt"]
