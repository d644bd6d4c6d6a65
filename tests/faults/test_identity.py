"""Run identity faults: the reaper kills only what it can prove it launched (the run's secret
key in a run folder of this reports root, owner provably gone), run folders are made
exclusively under unique names, appends and copies refuse symlinks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_mig.orchestration.process import (KEY_MARKER, RUN_MARKER, SPAWNER_MARKER, child_env,
                                              markers_of, reap_dead_runs)
from pytest_mig.report.allure_env import copy_history
from pytest_mig.report.history import HistoryEntry, append_history
from pytest_mig.runid import RunKey, new_run_id, write_key
from pytest_mig.io import UnsafeFile
from pytest_mig.run.settings import Settings
from pytest_mig.run.state import MigSession

SLEEP = [sys.executable, "-c", "import time; time.sleep(60)"]


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def spawn(procs, env: dict[str, str]) -> subprocess.Popen:
    p = subprocess.Popen(SLEEP, env=env, start_new_session=True)
    procs.append(p)
    deadline = time.monotonic() + 10
    while RUN_MARKER not in markers_of(p.pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return p


def dead_run(root: Path, run: str, key: str) -> Path:
    """A run folder of `root` whose owning pytest is gone."""
    d = root / run
    d.mkdir(parents=True)
    write_key(d, RunKey(key, dead_pid(), 1))
    return d


# -- 1. the reaper -------------------------------------------------------------------------

def test_an_inherited_run_id_of_a_dead_run_kills_nothing(project, procs, monkeypatch):
    # pytest started from a shell that carries a dead run's id: siblings carry it too.
    monkeypatch.setenv(RUN_MARKER, "20200101-000000-deadbeef")
    sibling = spawn(procs, {**os.environ, SPAWNER_MARKER: str(dead_pid())})
    result = project.pytester.runpytest_subprocess(*project.args("--co", "-q"), timeout=120)
    assert result.ret == 0, result.stdout.str()
    assert sibling.poll() is None, "the reaper killed a process it never launched"
    assert "killed leftover" not in result.stdout.str()


def test_only_this_projects_dead_runs_with_the_right_key_are_reaped(project, procs, tmp_path):
    key, other_key = "a" * 32, "b" * 32
    mine = "20200101-000000-aaaa1111"
    dead_run(project.reports, mine, key)
    ours = spawn(procs, {**child_env({}, mine), KEY_MARKER: key})
    forged = spawn(procs, {**child_env({}, mine), KEY_MARKER: other_key})  # our id, wrong key
    foreign = "20200101-000000-bbbb2222"  # a dead run of another project's reports folder
    dead_run(tmp_path / "elsewhere" / "reports", foreign, other_key)
    theirs = spawn(procs, {**child_env({}, foreign), KEY_MARKER: other_key})
    result = project.pytester.runpytest_subprocess(*project.args("--co", "-q"), timeout=120)
    assert result.ret == 0, result.stdout.str()
    assert ours.wait(timeout=10) == -9
    result.stdout.fnmatch_lines([f"*killed leftover workload pid {ours.pid} of dead run {mine}*"])
    assert forged.poll() is None and theirs.poll() is None


def test_a_live_owner_keeps_its_workloads(tmp_path, procs):
    key = "c" * 32
    run = "20200101-000000-cccc3333"
    d = tmp_path / run
    d.mkdir()
    write_key(d, RunKey(key, os.getpid(), None))  # owner: this (live) process
    p = spawn(procs, {**child_env({}, run), KEY_MARKER: key})
    assert reap_dead_runs(tmp_path, "current") == []
    assert p.poll() is None


def test_a_reused_owner_pid_is_a_dead_owner(tmp_path, procs):
    key = "d" * 32
    run = "20200101-000000-dddd4444"
    d = tmp_path / run
    d.mkdir()
    write_key(d, RunKey(key, os.getpid(), 1))  # our pid, but a start time that is not ours
    p = spawn(procs, {**child_env({}, run), KEY_MARKER: key})
    assert reap_dead_runs(tmp_path, "current") == [(p.pid, run)]
    assert p.wait(timeout=10) == -9


# -- 2. run folders, appends, copies -------------------------------------------------------

def test_run_ids_are_unique_within_one_second_and_carry_no_pid():
    ids = {new_run_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert not any(i.endswith(f"-{os.getpid()}") for i in ids)


def test_two_runs_with_the_same_id_get_two_folders(tmp_path):
    a = MigSession(Settings(), "20260101-000000-same", tmp_path)
    b = MigSession(Settings(), "20260101-000000-same", tmp_path)
    da, db = a.ensure_run_dir(), b.ensure_run_dir()
    assert da != db and da.is_dir() and db.is_dir()
    assert b.run_id == db.name != "20260101-000000-same"
    assert json.loads((db / "run.key").read_text())["key"] == b.key != a.key


def test_a_planted_symlink_never_becomes_the_run_folder(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "20260101-000000-abcd").symlink_to(victim)
    s = MigSession(Settings(), "20260101-000000-abcd", tmp_path)
    d = s.ensure_run_dir()
    assert not d.is_symlink() and d.resolve().parent == reports.resolve()
    assert list(victim.iterdir()) == []


def test_history_is_never_appended_through_a_symlink(tmp_path):
    target = tmp_path / "elsewhere.txt"
    target.write_text("precious\n")
    hist = tmp_path / "history.jsonl"
    hist.symlink_to(target)
    entry = HistoryEntry(case="c", run_id="r", timestamp="t", outcome="passed")
    with pytest.raises(UnsafeFile, match="history.jsonl: refused to append: it is a symlink"):
        append_history(hist, [entry])
    assert target.read_text() == "precious\n"


def test_allure_history_copies_no_symlink_targets(tmp_path):
    old = tmp_path / "old-report" / "history"
    old.mkdir(parents=True)
    (old / "history.json").write_text("{}")
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2")
    (old / "history-trend.json").symlink_to(secret)
    dest = copy_history(old.parent, tmp_path / "allure-results")
    assert sorted(p.name for p in dest.iterdir()) == ["history.json"]
