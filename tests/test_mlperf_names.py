"""MLPerf's names are defined once (pytest_mig/mlperf_names.py): no other module uses a
LoadGen file name as a string value, and every reader normalises benchmark names alike."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pytest_mig import mlperf_names
from pytest_mig.mlperf_names import LOADGEN_FILES, normalize_benchmark

PACKAGE = Path(mlperf_names.__file__).resolve().parent
NAMES = {mlperf_names.SUMMARY_FILE, mlperf_names.DETAIL_FILE, mlperf_names.ACCURACY_LOG,
         mlperf_names.ACCURACY_FILE}


def literals(path: Path) -> set[str]:
    """LoadGen file names a module's code uses as a value: a string that is the name (prose
    in docstrings and messages names them for the reader, and is not counted)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and node.value in NAMES}


def test_loadgen_file_names_are_written_once():
    where = {str(p.relative_to(PACKAGE)): sorted(literals(p)) for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in where.items() if v} == {"mlperf_names.py": sorted(NAMES)}
    assert LOADGEN_FILES[0] == mlperf_names.SUMMARY_FILE


@pytest.mark.parametrize("name, canonical", [
    ("bert-99", "bert"), ("BERT-99.9", "bert"), ("dlrm-99.9", "dlrm"), ("resnet", "resnet50"),
    ("llama3_1-8b", "llama3.1-8b"), ("llama2-70b-interactive-99", "llama2-70b"),
    ("3d-unet-99.9", "3d-unet"), ("ssd-small", "ssd-mobilenet")])
def test_every_reader_normalises_alike(name, canonical):
    from pytest_mig.results.accuracy import normalize_benchmark as results_normalize
    from pytest_mig.results.folders import benchmark_matches
    assert normalize_benchmark(name) == results_normalize(name) == canonical
    assert benchmark_matches(name, canonical)
