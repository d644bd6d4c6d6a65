"""JUnit XML a CI system accepts: valid against the schema pytest targets for its default
family (xunit2, tests/data/junit/junit-10.xsd), figures as numbers with their unit apart,
`simulated` marked, no absolute path; per-case properties under `-o junit_family=xunit1`."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

etree = pytest.importorskip("lxml.etree")

SCHEMA = Path(__file__).resolve().parent / "data" / "junit" / "junit-10.xsd"


def _validate(path: Path) -> None:
    schema = etree.XMLSchema(etree.parse(str(SCHEMA)))
    doc = etree.parse(str(path))
    assert schema.validate(doc), "\n".join(str(e) for e in schema.error_log)


def _no_absolute_path(text: str, project: Path) -> None:
    assert str(project) not in text and "/tmp/" not in text


def test_xunit2_is_valid_and_carries_run_facts(mini):
    junit = mini.path / "junit.xml"
    r = mini.run({}, "-k", "resnet50", "--mig-isolated-baseline", f"--junitxml={junit}")
    r.assert_outcomes(passed=1)
    _validate(junit)
    root = ET.parse(junit).getroot()
    assert not list(root.iter("testcase"))[0].findall("properties")
    suite_props = {p.get("name"): p.get("value") for p in root.find("testsuite").iter("property")}
    run_id = mini.run_dir().name
    assert suite_props == {
        "mig_run_id": run_id, "mig_backend": "simulated", "mig_simulated": "true",
        "mig_results": f"{run_id}/results.json", "mig_metrics": f"{run_id}/metrics.txt",
        "mig_benchmark_json": f"{run_id}/benchmark.json"}
    _no_absolute_path(junit.read_text(), mini.path)
    # the per-case figures xunit2 has no place for: in the run folder's metrics files
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    metrics = {f.name: f.samples for f in text_string_to_metric_families(
        (mini.run_dir() / "metrics.txt").read_text())}
    rec = mini.results()["tests"][0]
    (head,) = metrics["mig_headline"]
    assert head.value == pytest.approx(rec["result"]["value"])
    assert head.labels["case"] == rec["case"] and head.labels["simulated"] == "true"
    bench = json.loads((mini.run_dir() / "benchmark.json").read_text())
    assert {e["name"] for e in bench} >= {f"{rec['case']} headline"}


def test_the_schema_refuses_what_pytest_mig_wrote_before(tmp_path):
    """The check can fail: a <testcase> holding <properties> is what xunit2 forbids."""
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="p" tests="1" failures="0" errors="0">'
                   '<testcase name="t"><properties><property name="mig_result" value="VALID"/>'
                   '</properties></testcase></testsuite></testsuites>')
    with pytest.raises(AssertionError, match="properties.*not expected"):
        _validate(bad)


def test_xunit1_keeps_numeric_case_properties(mini):
    junit = mini.path / "junit1.xml"
    r = mini.run({}, "-k", "resnet50", "--mig-isolated-baseline", f"--junitxml={junit}",
                 "-o", "junit_family=xunit1")
    r.assert_outcomes(passed=1)
    (case,) = ET.parse(junit).getroot().iter("testcase")
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    rec = mini.results()["tests"][0]
    assert props["mig_simulated"] == "true" and props["mig_result"] == "VALID"
    assert float(props["mig_headline"]) == pytest.approx(rec["result"]["value"])
    assert props["mig_headline_unit"] == "samples/s"
    assert props["mig_headline_metric"] == "Samples per second"
    assert float(props["mig_interference"]) == pytest.approx(rec["interference"])
    assert props["mig_interference_unit"] == "fraction"
    for name, value in props.items():  # every figure with a unit is a plain number
        if f"{name}_unit" in props:
            float(value)
    assert props["mig_dir"] == f"{mini.run_dir().name}/{Path(rec['paths']['dir']).name}"
    _no_absolute_path(junit.read_text(), mini.path)
