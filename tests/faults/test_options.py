"""Bad options are refused at configure time as one-line usage errors (exit 4) before any
folder is made or case runs; secrets stay out of reports; --mig-env passes named variables;
a background set cut to the free slots is said, never silent."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import FAULTY

BAD = {
    "empty reports": (["--mig-reports="], "--mig-reports names no folder"),
    "reports is a file": (["--mig-reports=afile"], "cannot create the run folder"),
    "reports in /proc": (["--mig-reports=/proc/pytest-mig-nope"], "cannot create the run folder"),
    "long name": (["--mig-reports=" + "x" * 300], "File name too long"),
    "unclosed quote": (["--mig-command=prog 'unclosed"], "No closing quotation"),
    "bad placeholder": (["--mig-command=prog {nope}"], "bad placeholder in '{nope}'"),
    "unknown command option": (["--mig-harness-opt", "size=small"],
                               "the command harness has no option 'size'"),
    "galactic size": (["--harness=loadgen", "--mig-harness-opt", "size=galactic"],
                      "size must be one of tiny, small, full"),
    "unknown loadgen option": (["--harness=loadgen", "--mig-harness-opt", "sise=small"],
                               "has no option 'sise' (did you mean 'size'?)"),
    "huge duration": (["--mig-min-duration=100000000000"], "must be 0 to 86400000 ms"),
    "huge timeout": (["--mig-main-timeout=1e35"], "at most 604800 (a week)"),
    "bad env name": (["--mig-env", "A=B"], "--mig-env 'A=B': not a variable name"),
}


@pytest.mark.parametrize("extra,message", list(BAD.values()), ids=list(BAD))
def test_bad_options_are_one_line_usage_errors(project, extra, message):
    (project.path / "afile").write_text("not a folder")
    args = project.args("--co")
    if "--harness=loadgen" in extra:  # drop the command harness of the fault suite
        args = [a for a in args if not a.startswith(("--harness=", "--mig-command="))]
    if any(e.startswith("--mig-command=") for e in extra):
        args = [a for a in args if not a.startswith("--mig-command=")]
    r = project.pytester.runpytest_subprocess(*args, *extra, timeout=120)
    assert r.ret == pytest.ExitCode.USAGE_ERROR, r.stdout.str()[-1500:] + r.stderr.str()[-1500:]
    # One line holds the message: ours ("ERROR: ..."), or argparse's for a value refused while
    # the command line is parsed ("pytest: error: argument --flag: ...", after pytest's usage).
    errors = [line for line in r.stderr.lines if ": error: argument --" in line
              or line.startswith("ERROR:") and not line.startswith("ERROR: usage:")]
    assert len(errors) == 1 and message in errors[0], r.stderr.str()[-1500:]
    assert "Traceback" not in r.stderr.str() + r.stdout.str()
    assert not project.reports.exists() or not any(project.reports.iterdir())


def test_secrets_stay_out_of_reports_and_mig_env_passes_names(project, monkeypatch):
    monkeypatch.setenv("MY_HF_TOKEN", "hf_s3cr3t_value")
    monkeypatch.setenv("NOT_PASSED", "nope")
    project.program = None
    args = project.args("--mig-env", "MY_HF_TOKEN", "-k", "bert")
    args = [a + " --api-key=hunter2 --password hunter3" if a.startswith("--mig-command=") else a
            for a in args]
    project.set_script({"print_env": True})
    r = project.pytester.runpytest_subprocess(*args, timeout=180)
    r.assert_outcomes(passed=1)
    run = project.run_dir()
    main_log = next(run.glob("test_*/main.log")).read_text()
    assert "[fake] env MY_HF_TOKEN=hf_s3cr3t_value" in main_log  # the workload has it
    assert "NOT_PASSED" not in main_log
    record = project.records(run)["bert-Offline-1g.10gb-performance"]
    assert "--api-key=***" in record["commands"]["main"]
    assert record["commands"]["main"][-1] == "***"  # --password's value
    header = json.loads((run / "run.json").read_text())
    assert header["passed_env"] == ["MY_HF_TOKEN"]
    for name in ("results.json", "run.json", "index.html"):
        text = (run / name).read_text()
        for secret in ("hunter2", "hunter3", "hf_s3cr3t_value"):
            assert secret not in text, f"{secret} in {name}"
    assert "hunter2" not in r.stdout.str()


def test_a_background_cut_is_a_warning_and_a_case_property(project):
    project.edit_suite("slots: 7", "slots: 3")
    r = project.run({}, "-k", "resnet50", "--junitxml=junit.xml", "-o", "junit_family=xunit1")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["*pytest-mig: resnet50: background cut to 2 of 3: rnnt not run "
                            "(only 2 free slot(s) beside the main)*"])
    import re  # one free-slot count, in the collection warning and the case's alike
    assert set(re.findall(r"only (\d+) free slot", r.stdout.str())) == {"2"}, r.stdout.str()
    junit = (project.path / "junit.xml").read_text()
    assert 'name="mig_background_cut" value="background cut to 2 of 3' in junit
    assert "background cut to 2 of 3" in " ".join(project.records()[FAULTY]["warnings"])


def test_unknown_run_profile_is_a_usage_error_before_any_run_folder(pytester):
    suites = pytester.mkdir("suites")
    (suites / "suite.yaml").write_text(
        (Path(__file__).resolve().parents[2] / "suites" / "datacenter" / "suite.yaml").read_text())
    (suites / "test_x.py").write_text("def test_x(mig_case, hetero):\n    pass\n")
    r = pytester.runpytest_subprocess("suites", "--mig-backend=simulated", "--mig-run-profile=smok",
                                      "-p", "no:cacheprovider")
    assert r.ret == 4
    r.stderr.fnmatch_lines(["*--mig-run-profile=smok: no suite of this run defines it (did you "
                            "mean 'smoke'?); defined: nightly, smoke, submission (in *suite.yaml)"])
    assert not (pytester.path / "reports").exists() or not any((pytester.path / "reports").iterdir())


def test_suite_error_is_printed_once(pytester):
    suites = pytester.mkdir("suites")
    text = (Path(__file__).resolve().parents[2] / "suites" / "datacenter" / "suite.yaml").read_text()
    (suites / "suite.yaml").write_text(text.replace("  resnet50: {", "  resnet5: {", 1))
    (suites / "test_x.py").write_text("def test_x(mig_case, hetero):\n    pass\n")
    r = pytester.runpytest_subprocess("suites", "--mig-backend=simulated", "-p", "no:cacheprovider")
    assert r.ret == 2
    out = r.stdout.str()
    # pytest's short summary repeats a collection error's message (in full when CI is set, cut to
    # the terminal width otherwise); the report body above it must hold the message exactly once.
    body = out.split("short test summary info")[0]
    assert body.count("benchmark 'resnet5' is not in the benchmark catalogue") == 1, out
    assert out.count("benchmark 'resnet5' is not in the benchmark catalogue") <= 2, out
    assert "During handling of the above exception" not in out
