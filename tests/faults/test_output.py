"""What reaches the terminal: a workload's text made printable, and the simulated-GPU banner
and run.json whatever the verbosity."""
from __future__ import annotations

import json

import pytest

from pytest_mig.orchestration.process import printable

from .helpers import FAULTY


def test_a_failing_workloads_escapes_never_reach_the_terminal(project):
    r = project.run({"cases": {"resnet50": {"main": "ansi_crash"}}})
    r.assert_outcomes(failed=1, passed=1)
    raw = "\n".join(r.outlines)
    for seq in ("\x1b[2J", "\x1b]0;", "\x00", "\x07"):
        assert seq not in raw, f"{seq!r} reached the terminal"
    assert "\\x1b[2J\\x1b[H\\x1b]0;pwned\\x07\\x1b[31mred\\x00nul\\x1b[0m fatal" in raw
    assert "\x1b[2J" in (project.run_dir() / f"test_hetero_{FAULTY}" / "main.log").read_text()


@pytest.mark.parametrize("text,shown", [
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"), ("a\x00b\tc", "a\\x00b\tc"),
    ("\u202eevil", "\\u202eevil"), ("caf\u00e9 \u2713", "caf\u00e9 \u2713"), ("\x9b2J", "\\x9b2J"),
])
def test_printable(text, shown):
    assert printable(text) == shown


@pytest.mark.parametrize("flags", [("-q",), ("-qq",), ("--no-header",)])
def test_banner_whatever_the_verbosity_run_json_from_the_first_case(project, flags):
    r = project.pytester.runpytest_subprocess(*project.args("--co", *flags), timeout=120)
    assert r.ret == 0, r.stdout.str()[-2000:]
    r.stdout.fnmatch_lines(["*SIMULATED GPU: no hardware is used*"])
    assert r.stdout.str().count("SIMULATED GPU") == 1
    # It names the harness in use (--harness=command here), not the built-in one.
    r.stdout.fnmatch_lines(["*CPU timings of your --mig-command program, not GPU results*"])
    assert "built-in harness" not in r.stdout.str()
    # Collecting opens no GPU backend and a collect-only run leaves no run folder...
    assert project.run_dirs() == []
    if flags != ("-q",):
        return
    # ...a case opens it, and run.json is there whatever the verbosity.
    r = project.run({}, "-k", "bert", *flags)
    r.assert_outcomes(passed=1)
    data = json.loads((project.run_dir() / "run.json").read_text())
    assert data["simulated"] is True and data["backend"] == "simulated"
