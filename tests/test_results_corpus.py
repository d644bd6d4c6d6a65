"""Every file of the MLPerf results corpus (tests/data/mlperf_corpus) parses to its expected values.

The corpus holds real files of MLPerf Inference v0.5 to v5.1 (summaries, detail logs,
accuracy.txt, compliance verdicts, and files the parsers must refuse), picked by
collect.py and copied byte for byte; a SOURCE file beside each names repository, commit
and original path. expected.json was written by this module's digest() (run it as a script
to rewrite it) after a sample of each kind was checked by hand against the raw text; hand-
written spot checks of tricky files are in test_results_corpus_spots.py.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
import warnings
from pathlib import Path

import pytest

from pytest_mig.errors import ResultParseError
from pytest_mig.results import AccuracyWarning, parse_accuracy, parse_audit, parse_detail, parse_summary

CORPUS = Path(__file__).parent / "data" / "mlperf_corpus"
EXPECTED = CORPUS / "expected.json"
SCENARIOS = ("offline", "server", "singlestream", "multistream", "interactive")
NOT_DATA = ("SOURCE", "expected.json", "collect.py", "README.md")
FILES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name not in NOT_DATA)


def rel(path: Path) -> str:
    return path.relative_to(CORPUS).as_posix()


def kind_of(path: Path) -> str:
    if path.name == "mlperf_log_summary.txt":
        return "summary"
    if path.name == "mlperf_log_detail.txt":
        return "detail"
    if path.name == "accuracy.txt":
        return "accuracy"
    if re.fullmatch(r"verify_\w+\.txt", path.name):
        return "verify"
    raise AssertionError(f"{path}: no parser for this file")


def benchmark_of(path: Path) -> str:
    parts = path.parts
    for i, part in enumerate(parts):
        if part.lower() in SCENARIOS and i > 0:
            return parts[i - 1]
    raise AssertionError(f"{path}: no scenario folder in the path")


def digest(path: Path) -> dict:
    """What the parsers read from one corpus file (or the error they refuse it with)."""
    kind = kind_of(path)
    try:
        if kind == "summary":
            s = dataclasses.asdict(parse_summary(path))
            del s["source"]
            s["test_parameters"] = len(s["test_parameters"])
            return {"kind": kind, **s}
        if kind == "detail":
            d = parse_detail(path)
            return {"kind": kind, "format": d.format, "loadgen_version": d.loadgen_version, "sut_name": d.sut_name,
                    "result_validity": d.result_validity, "scenario": d.scenario, "mode": d.mode,
                    "results": d.results, "early_stopping": d.early_stopping, "warnings": len(d.warnings),
                    "errors": len(d.errors), "num_errors": d.num_errors, "malformed": d.malformed}
        if kind == "accuracy":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AccuracyWarning)  # kept in the digest instead
                a = parse_accuracy(path, benchmark_of(path))
            read = {"kind": kind, "metric": a.metric, "value": a.value, "fields": a.fields}
            return {**read, "warning": a.warning.split(": ", 1)[1]} if a.warning else read
        v = dataclasses.asdict(parse_audit(path))
        v["audit_kind"] = v.pop("kind")
        return {"kind": kind, **v}
    except ResultParseError as exc:
        return {"kind": kind, "error": str(exc).split(": ", 1)[1]}


@functools.cache
def _expected() -> dict:
    return json.loads(EXPECTED.read_text(encoding="utf-8"))


def test_expected_values_cover_every_file():
    assert sorted(_expected()) == sorted(rel(p) for p in FILES)


@pytest.mark.parametrize("path", FILES, ids=rel)
def test_file_parses_to_expected_values_and_names_its_source(path: Path):
    """Parsed values as expected; SOURCE beside the file: 'mlcommons/inference_results_<round> @ <commit>'
    then '<name> <- <original path>'."""
    assert json.loads(json.dumps(digest(path))) == _expected()[rel(path)]
    lines = (path.parent / "SOURCE").read_text(encoding="utf-8").splitlines()
    round_, submitter, division, *rest = path.relative_to(CORPUS).parts
    # MLCommons' repository, or a fork of it (named on the next line, 'via ...') for rounds too
    # large to mirror here.
    assert re.fullmatch(rf"[\w.-]+/[\w.-]*inference_results_{re.escape(round_)} @ [0-9a-f]{{40}}", lines[0])
    assert lines[0].startswith("mlcommons/") or lines[1].startswith("via ")
    original = "/".join([division, submitter, *rest])
    assert f"{path.name} <- {original}" in lines[1:]


def test_corpus_breadth():
    """At least 300 files over 6 rounds and 10 submitters, every scenario, INVALID runs, failing audits."""
    table = _expected()
    assert len(table) >= 300
    assert len({k.split("/")[0] for k in table}) >= 6
    assert len({k.split("/")[1] for k in table}) >= 10
    summaries = [v for v in table.values() if v["kind"] == "summary" and "error" not in v]
    assert {v["scenario"] for v in summaries} >= {"Offline", "Server", "SingleStream", "MultiStream"}
    assert any(v["result"] == "INVALID" for v in summaries)
    assert any(v["kind"] == "verify" and v.get("passed") is False for v in table.values())
    assert any("error" in v for v in table.values())  # files the parsers must refuse
    assert sum(p.stat().st_size for p in FILES) < 2_000_000


def test_rounds_v3_1_to_v6_0_breadth():
    """Issue 27: at least 200 files of v3.1, v4.0, v5.0 and v6.0 from at least 20 submitters, every
    file kind, the audits of v6.0 (TEST07/08/09) beside TEST01/04/05/06, INVALID runs and refusals."""
    table = {k: v for k, v in _expected().items() if k.split("/")[0] in ("v3.1", "v4.0", "v5.0", "v6.0")}
    assert len(table) >= 200
    assert {k.split("/")[0] for k in table} == {"v3.1", "v4.0", "v5.0", "v6.0"}
    assert len({k.split("/")[1] for k in table}) >= 20
    assert {v["kind"] for v in table.values()} == {"summary", "detail", "accuracy", "verify"}
    tests = {v["test"] for v in table.values() if v["kind"] == "verify" and "error" not in v}
    assert {"TEST01", "TEST04", "TEST05", "TEST06", "TEST07", "TEST08", "TEST09"} <= tests
    assert any(v.get("result") == "INVALID" for v in table.values())
    assert any(v.get("passed") is False for v in table.values())
    assert any("error" in v for v in table.values())
    assert any(v.get("warning") for v in table.values())  # open-division names read by metric name


if __name__ == "__main__":  # rewrite expected.json from the parsers' current output
    table = {rel(p): digest(p) for p in sorted(FILES, key=rel)}
    lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in table.items()]  # one file a line
    EXPECTED.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print(f"{len(FILES)} files -> {EXPECTED}", file=sys.stderr)
