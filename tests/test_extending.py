"""docs/extending.md's worked example, run as written: the conftest block of the page adds a
harness through pytest_mig_register_harnesses, and a whole session runs with it."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "extending.md"
OUTSIDE = Path(__file__).resolve().parent / "data" / "outside_project"


def conftest_block() -> str:
    blocks = re.findall(r"```python\n(# conftest\.py\n.*?)```", PAGE.read_text(), re.S)
    assert len(blocks) == 1, "docs/extending.md: one ```python block starting '# conftest.py'"
    return blocks[0]


@pytest.fixture
def project(pytester):
    for name in ("suite.yaml", "tiny_harness.py"):
        shutil.copy(OUTSIDE / name, pytester.path / name)
    (pytester.path / "conftest.py").write_text(conftest_block())
    (pytester.path / "test_tiny.py").write_text(
        "from pytest_mig.case_test import test_hetero  # noqa: F401\n")
    return pytester


def test_the_documented_harness_runs_a_session(project):
    r = project.runpytest_subprocess("-p", "no:cacheprovider", "--harness=tiny",
                                     "--mig-reports", str(project.path / "reports"),
                                     timeout=300)
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*SIMULATED GPU: * CPU timings of tiny_harness.py, not GPU results*"])
    run_dir = next(p for p in (project.path / "reports").iterdir() if p.is_dir())
    (rec,) = json.loads((run_dir / "results.json").read_text())["tests"]
    assert rec["result"]["valid"] is True
    assert any("tiny_harness.py" in part for part in rec["commands"]["main"])
    bgs = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert len(bgs["workloads"]) == 2 and bgs["healthy"]


def test_an_unknown_or_twice_registered_harness_is_a_usage_error(project):
    r = project.runpytest_subprocess("-p", "no:cacheprovider", "--harness=tiyn", timeout=120)
    assert r.ret == 4  # usage error
    r.stderr.fnmatch_lines(["*--harness=tiyn: unknown harness (did you mean 'tiny'?)*"])
    (project.path / "conftest.py").write_text(
        conftest_block() + "\n\ndef pytest_mig_register_harnesses(registry):\n"
        "    registry.add('loadgen', TinyHarness)\n")
    r = project.runpytest_subprocess("-p", "no:cacheprovider", "--harness=tiny", timeout=120)
    assert r.ret == 4
    r.stderr.fnmatch_lines(["*harness 'loadgen' is registered twice*"])
