"""Disk full and other write failures: one line naming the path and the free space, every
earlier file kept, pytest's summary printed, exit status 6 (REPORT_INCOMPLETE) when every
test passed; a workload's log reader survives a log it cannot write."""
from __future__ import annotations

import resource
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_mig.orchestration.process import Workload, child_env
from pytest_mig.report.files import REPORT_INCOMPLETE
from pytest_mig.types import LaunchSpec

PRINTER = [sys.executable, "-c",
           "import time\nfor i in range(200): print('line', i, 'x' * 100)\n"
           "print('Starting running actual test.', flush=True)\ntime.sleep(0.3)\nprint('bye')"]


def test_the_log_reader_survives_a_full_disk(tmp_path, monkeypatch):
    crashed: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashed.append(args.exc_value))
    log = tmp_path / "main.log"
    log.symlink_to("/dev/full")  # every write: ENOSPC
    spec = LaunchSpec(argv=tuple(PRINTER), env=child_env({}, "run-disk"), cwd=tmp_path,
                      ready_pattern=r"running actual test\.", log_path=log,
                      result_dir=tmp_path / "main")
    w = Workload("main", spec).start()
    try:
        assert w.wait_ready(timeout=60), "the reader died: readiness never seen"
        assert w.wait(timeout=60) == 0
    finally:
        w.stop(grace=1)
    assert crashed == []
    assert "bye" in w.tail_text()
    assert w.log_error and "No space left on device" in w.log_error


def _limit_file_size() -> None:
    # A real kernel refusal at a size: each record.json (~13.5 kB with the slices and CPU
    # placement) fits, results.json (two records and the run header, ~31 kB) does not.
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))


def test_a_report_that_cannot_be_written_is_one_line_and_exit_6(project):
    project.set_script({})
    r = subprocess.run([sys.executable, "-m", "pytest", *project.args("--mig-sample-interval=0")],
                       cwd=project.path, capture_output=True, text=True, timeout=240,
                       preexec_fn=_limit_file_size)
    out = r.stdout + r.stderr
    assert r.returncode == REPORT_INCOMPLETE, out[-3000:]
    assert "INTERNALERROR" not in out and "Traceback" not in out
    run = project.run_dir()
    lines = [x for x in out.splitlines() if x.startswith("pytest-mig: cannot write")]
    assert lines == [f"pytest-mig: cannot write {run / 'results.json'}: File too large "
                     f"({lines[0].split('(')[1].split(')')[0]}); files written before it are kept"]
    assert " MB free there" in lines[0]
    # pytest's summary still printed, last on stdout (fontconfig may still write to stderr)
    assert "2 passed" in r.stdout.splitlines()[-1]
    assert len(list(run.glob("test_*/record.json"))) == 2  # earlier files kept
    assert (run / "index.html").exists() and (run / "run.json").exists()
    assert not list(run.glob(".*.tmp")) and not list(run.glob(".results.json.*"))


def test_history_not_written_is_a_line_and_exit_6_even_under_q(project):
    # A report part that is lost is never silent: under -q too, with exit status 6.
    project.reports.mkdir()
    (project.reports / "history.jsonl").symlink_to(project.path / "elsewhere.jsonl")
    r = project.run({}, "-q")
    assert r.ret == REPORT_INCOMPLETE, r.stdout.str()[-3000:]
    r.stdout.fnmatch_lines(["pytest-mig: history NOT written: *history.jsonl: refused to append: "
                            "it is a symlink*"])
    assert not (project.path / "elsewhere.jsonl").exists()


def _limit_file_size_200k() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_a_log_cut_short_is_a_warning_on_the_case_and_in_results_json(project):
    # Each workload prints 300 KiB; the kernel refuses the log past 200 kB. The case still
    # measures (readiness comes from the pipe), and the cut log is never silent.
    project.set_script({"noise_kb": 300})
    r = subprocess.run([sys.executable, "-m", "pytest", *project.args("--mig-sample-interval=0")],
                       cwd=project.path, capture_output=True, text=True, timeout=240,
                       preexec_fn=_limit_file_size_200k)
    out = r.stdout + r.stderr
    assert "log cut short:" in out and "File too large" in out, out[-3000:]
    rec = project.records()["resnet50-Offline-1g.10gb-performance"]
    cut = [w for w in rec["warnings"] if "log cut short" in w]
    assert any(w.startswith("bg1-bert: log cut short: ") and "bg1-bert.log: File too large" in w
               for w in cut), rec["warnings"]


@pytest.fixture
def few_inodes(tmp_path):
    """A tmpfs of 10 MB with 8 inodes (root only): creating files runs out of inodes first."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=10m,nr_inodes=8", "tmpfs",
                           str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_inode_exhaustion_is_named_as_such_not_as_a_full_disk(few_inodes):
    from pytest_mig.io import write_json_atomic
    from pytest_mig.report.files import write_problem
    with pytest.raises(OSError) as info:
        for i in range(20):
            write_json_atomic(few_inodes / f"r{i}.json", {"i": i}, fsync=False)
    line = write_problem(few_inodes / "results.json", info.value)
    assert "no inodes left on that file system" in line and "0 of " in line, line
    assert "MB free there" in line  # the bytes were there all along


def test_a_run_folder_deleted_mid_run_is_named(tmp_path):
    from pytest_mig.report.files import write_problem
    run = tmp_path / "reports" / "run1"
    (run / "test_x").mkdir(parents=True)
    import shutil
    shutil.rmtree(run)
    with pytest.raises(OSError) as info:  # as the timeline's writer appends its note
        open(run / "test_x" / "timeline.csv", "a").close()
    line = write_problem(run / "test_x" / "timeline.csv", info.value)
    assert f"its folder {run} was deleted during the run" in line, line


def test_a_full_disk_under_the_simulated_gpus_state_is_one_line(tmp_path):
    # 4 KB free: the simulator's state write is a GpuError naming the file and the space,
    # which pytest-mig reports in one line (it was an INTERNALERROR of 64 lines).
    from pytest_mig.errors import GpuError
    from pytest_mig.gpu.sim.state import StateFile
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    try:
        (mnt / "filler").write_bytes(b"x" * 4096)
        f = StateFile(mnt / "simulated-gpu.json")
        with pytest.raises(GpuError, match=r"cannot write the simulated GPU's state .*"
                                           r"simulated-gpu.json: No space left on device "
                                           r"\(.* MB and .* inodes free there\)"):
            with f.locked():
                f.write({"blob": "y" * 20000})
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
