"""Every real LoadGen/MLPerf file kept under tests/data/mlperf_logs parses, and keeps its provenance."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.results import parse_accuracy, parse_audit, parse_detail, parse_summary

DATA = Path(__file__).parent / "data" / "mlperf_logs"
FILES = sorted(p for p in DATA.rglob("*") if p.is_file())


def _benchmark(path: Path) -> str:
    # .../<system>/<benchmark>/<scenario>/accuracy/accuracy.txt
    return path.parents[2].name


def _parse(path: Path) -> object:
    if path.name == "mlperf_log_summary.txt":
        return parse_summary(path)
    if path.name == "mlperf_log_detail.txt":
        return parse_detail(path)
    if path.name == "accuracy.txt":
        return parse_accuracy(path, _benchmark(path))
    if path.name.startswith("verify_"):
        return parse_audit(path)
    raise AssertionError(f"{path}: no parser for this file; add one or a test for it")


def test_tree_is_the_expected_size():
    names = [p.name for p in FILES]
    assert len(FILES) == 43
    assert (names.count("mlperf_log_summary.txt"), names.count("mlperf_log_detail.txt"),
            names.count("accuracy.txt"), names.count("SOURCE")) == (13, 7, 6, 13)


@pytest.mark.parametrize("path", [p for p in FILES if p.name != "SOURCE"], ids=lambda p: str(p.relative_to(DATA)))
def test_every_result_file_parses(path: Path):
    assert path.stat().st_size < 1_000_000
    assert _parse(path) is not None


@pytest.mark.parametrize("path", [p for p in FILES if p.name != "SOURCE"], ids=lambda p: str(p.relative_to(DATA)))
def test_every_result_file_has_a_source_line(path: Path):
    """The published files name their origin in a SOURCE file beside them or in a parent folder."""
    if "loadgen-6.0.17" in path.parts:
        return  # produced locally with mlcommons-loadgen 6.0.17; provenance in data/README.md
    folder = path.parent
    while folder != DATA and not (folder / "SOURCE").exists():
        folder = folder.parent
    source = (folder / "SOURCE").read_text()
    assert source.startswith("closed/"), source
    if path.parent == folder and path.name.startswith("mlperf_log"):
        assert path.name in source
