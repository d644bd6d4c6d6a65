"""Atomic outputs: a writer SIGKILLed at random moments never leaves a half-written
results.json or record.json, and history.jsonl loses at most the line being appended."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_mig.io import write_atomic, write_json_atomic
from pytest_mig.report.history import HistoryEntry, append_history, read_history
from pytest_mig.report.records import RECORD, collect_results, load_records

KILLS = 12

# Each iteration adds a per-test record (20 kB) and rebuilds results.json from all of them,
# the way pytest-mig does as cases finish; it prints the iteration once both are written.
RESULTS_WRITER = textwrap.dedent("""
    import hashlib, itertools, sys
    from pathlib import Path
    from pytest_mig.report.records import collect_results, write_record

    run_dir, start = Path(sys.argv[1]), int(sys.argv[2])
    for i in itertools.count(start):
        body = f"case {i} " * 2500
        write_record(run_dir / f"test_{i:05d}", {"case": f"c{i}", "body": body,
                     "sha": hashlib.sha256(body.encode()).hexdigest()})
        collect_results(run_dir, {"run_id": "r", "iteration": i})
        print(i, flush=True)
""")

HISTORY_WRITER = textwrap.dedent("""
    import itertools, sys, time
    from pathlib import Path
    from pytest_mig.report.history import HistoryEntry, append_history

    path = Path(sys.argv[1])
    for run in itertools.count(int(sys.argv[2])):  # one append per "run", as the plugin does
        append_history(path, [HistoryEntry(case=f"case-{n}-" + "x" * 100, run_id=f"run-{run}",
                                           timestamp="t", outcome="passed") for n in range(10)])
        time.sleep(0.005)
""")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def kill_at_random(script: str, *args: str, rng: random.Random) -> str:
    """Start a writer, SIGKILL it after a random delay (startup included); its stdout."""
    proc = subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(rng.uniform(0.05, 1.2))
    proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL, err
    return out


def check_results(run_dir: Path, previous: int) -> int:
    """results.json parses whole, every record it lists is complete; its iteration."""
    data = json.loads((run_dir / "results.json").read_text())
    iteration = data["run"]["iteration"]
    assert iteration >= previous  # never an older file, never a torn one
    assert len(data["tests"]) >= iteration + 1
    for rec in data["tests"]:
        assert "error" not in rec and rec["sha"] == sha(rec["body"]), rec.get("case")
    for rec in load_records(run_dir):  # every record file on disk is whole, too
        assert "error" not in rec and rec["sha"] == sha(rec["body"])
    return iteration


def test_results_and_records_survive_sigkill_at_any_moment(tmp_path):
    rng = random.Random(20260101)
    run_dir = tmp_path / "run"
    body = "case 0 " * 2500
    (run_dir / "test_00000").mkdir(parents=True)
    write_json_atomic(run_dir / "test_00000" / RECORD, {"case": "c0", "body": body,
                                                        "sha": sha(body)})
    collect_results(run_dir, {"run_id": "r", "iteration": 0})
    seen, iteration = {0}, 0
    for _ in range(KILLS):
        start = len(list(run_dir.glob(f"*/{RECORD}")))
        out = kill_at_random(RESULTS_WRITER, str(run_dir), str(start), rng=rng)
        iteration = check_results(run_dir, iteration)
        seen.add(iteration)
        # What the writer reported done is on disk (the file may be one newer, not older).
        done = [int(n) for n in out.split()]
        assert not done or iteration >= done[-1]
    assert len(seen) >= 4, f"the writer hardly wrote: {sorted(seen)}"


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    write_json_atomic(target, {"v": 1})

    def boom(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, json.dumps({"v": 2}))
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


def test_history_loses_at_most_the_line_being_appended(tmp_path):
    rng = random.Random(20260102)
    path = tmp_path / "history.jsonl"
    for run in range(KILLS):
        kill_at_random(HISTORY_WRITER, str(path), str(run * 10_000), rng=rng)
        lines = path.read_bytes().split(b"\n") if path.exists() else [b""]
        complete, tail = lines[:-1], lines[-1]
        for line in complete:
            assert json.loads(line)["outcome"] == "passed"
        if tail:  # a line cut by the kill: only ever the last one
            with pytest.raises(ValueError):
                json.loads(tail)
        # Readers see exactly the complete lines, in order.
        assert [e.case for e in read_history(path)] == [json.loads(x)["case"] for x in complete]
        if tail:
            break  # the torn tail is the case below; keep appending would hit it
    assert path.exists() and read_history(path)


def test_an_append_after_a_torn_line_loses_nothing(tmp_path):
    path = tmp_path / "history.jsonl"
    entry = lambda case, run: HistoryEntry(case=case, run_id=run, timestamp="t",  # noqa: E731
                                           outcome="passed")
    append_history(path, [entry("a", "r1")])
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"case": "b", "run_id": "r2", "tim')  # a writer killed mid-line
    append_history(path, [entry("c", "r3"), entry("d", "r3")])
    assert [e.case for e in read_history(path)] == ["a", "c", "d"]
