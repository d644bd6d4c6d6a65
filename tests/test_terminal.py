"""A terminal people read: a live status line per case at the default verbosity (plain lines
when not a TTY, as here), nothing of it under -q, a table of every case at session end; a
selection of no case says what ids look like and leaves no run folder (nor does --co);
`pytest-mig --version`; help with placeholders and defaults; the prefixed option names."""
from __future__ import annotations

import subprocess
import sys

from pytest_mig.report.selection import zero_selection_hint
from pytest_mig.report.table import case_table

CASE = "resnet50-Offline-1g.10gb-performance"


def test_status_lines_then_a_table_of_every_case(mini):
    # a case still running after 10 s shows each later phase (a quick one keeps the dots)
    r = mini.run({}, "-k", "resnet50", "--mig-min-duration=11000")
    r.assert_outcomes(passed=1)
    out = r.stdout.str()
    r.stdout.fnmatch_lines([f"    mig {CASE}: health checked [[]*s[]]"])
    assert f"    mig {CASE}: starting" not in out  # before 10 s: nothing
    assert "AttributeError" not in out
    rec = mini.records()[CASE]
    value = rec["result"]["value"]
    r.stdout.fnmatch_lines([
        "*= pytest-mig results (SIMULATED GPU: CPU timings) =*",
        "case * result * headline * vs baseline * accuracy vs target * interference * GPU busy",
        f"{CASE} * passed VALID * {value:.4g} samples/s * - * - * - * -"])


def test_quiet_run_shows_no_status_line_but_the_table(mini):
    r = mini.run({}, "-k", "resnet50", "-q")
    r.assert_outcomes(passed=1)
    assert f"    mig {CASE}:" not in r.stdout.str()
    r.stdout.fnmatch_lines([f"{CASE} * passed VALID *"])


def test_zero_selection_says_what_ids_look_like_and_leaves_no_run_folder(mini):
    r = mini.run({}, "-k", "resnt50 and Offline")
    assert r.ret == 5
    r.stdout.fnmatch_lines([
        "pytest-mig: no case selected (-k 'resnt50 and Offline' matched none of 3 case(s)); "
        "case ids read <benchmark>-<scenario>-<profile>-<mode>, e.g. *; "
        "closest to 'resnt50': resnet50; `pytest --co -q` lists them"])
    assert mini.run_dirs() == []
    r = mini.run({}, "--co", "-q")
    assert r.ret == 0 and mini.run_dirs() == []


def test_hint_and_table_units():
    ids = ["bert-Server-1g.10gb-accuracy", CASE]
    assert "closest to 'Sever': Server" in zero_selection_hint(ids, "Sever")
    record = {"case": "bert-Server-1g.10gb-accuracy", "outcome": "failed",
              "result": {"result": "VALID", "metric": "Completed samples per second",
                         "value": 12.345, "accuracy_metric": "F1", "accuracy": 89.1,
                         "accuracy_target": 89.96},
              "interference": 0.0412, "gpu_busy": {"value": 0.934, "source": "NVML"}}
    lines = case_table([record], {record["case"]: "-3.1%"})
    cells = [c.strip() for c in lines[2].split("  ") if c.strip()]
    assert cells == ["bert-Server-1g.10gb-accuracy", "failed VALID", "12.35 samples/s", "-3.1%",
                     "89.1 F1 < 89.96", "4.1%", "93% (NVML)"]


def test_version_and_help():
    out = subprocess.run([sys.executable, "-m", "pytest_mig.fleet.cli", "--version"],
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("pytest-mig ") and "pytest " in out
    help_text = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                                "--help"], capture_output=True, text=True).stdout
    assert "--mig-partition=auto|mig|mps|none, --partition=auto|mig|mps|none" in help_text
    assert "--mig-harness=NAME, --harness=NAME" in help_text  # names: the harness registry
    assert "nvidia (NVIDIA's" in " ".join(help_text.split())
    assert "MIG_PARTITION" not in help_text and "MIG_HARNESS" not in help_text
    assert "Default: 600" in help_text  # --mig-lease-timeout's
