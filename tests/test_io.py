"""pytest_mig.io's atomic writers: their options (mode, fsync) and what a failure leaves.

The kill-at-random proof of atomicity is in test_atomic.py; the hostile-file-system reads and
appends in faults/test_fs_states.py. Here: each option the former hand-written copies had.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pytest_mig import io
from pytest_mig.gpu.ownership import OwnershipStore
from pytest_mig.gpu.sim.state import StateFile
from pytest_mig.report.allure_env import copy_history


def perms(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.fixture
def fsyncs(monkeypatch):
    """The descriptors os.fsync was called with (the real fsync still runs)."""
    calls: list[int] = []
    real = os.fsync

    def spy(fd):
        calls.append(fd)
        return real(fd)

    monkeypatch.setattr(io.os, "fsync", spy)
    return calls


def test_text_and_bytes_replace_the_file(tmp_path):
    target = tmp_path / "sub" / "a.txt"
    io.write_atomic(target, "héllo\n")
    assert target.read_bytes() == "héllo\n".encode()
    io.write_atomic(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert leftovers(target.parent) == []


def test_json_is_sorted_indented_and_stringifies(tmp_path):
    target = tmp_path / "a.json"
    io.write_json_atomic(target, {"b": 1, "a": Path("/x")})
    assert target.read_text() == '{\n  "a": "/x",\n  "b": 1\n}\n'
    io.write_json_atomic(target, {"k": [1]}, indent=1)
    assert target.read_text() == '{\n "k": [\n  1\n ]\n}\n'


def test_mode_default_is_owner_only_and_0o666_follows_the_umask(tmp_path, umask022):
    io.write_atomic(tmp_path / "private", "x")
    io.write_atomic(tmp_path / "shared", "x", mode=0o666)
    with io.atomic_path(tmp_path / "pic", mode=0o666) as tmp:
        tmp.write_bytes(b"png")
    assert perms(tmp_path / "private") == 0o600
    assert perms(tmp_path / "shared") == 0o644
    assert perms(tmp_path / "pic") == 0o644


def test_fsync_is_on_by_default_and_can_be_switched_off(tmp_path, fsyncs):
    io.write_atomic(tmp_path / "a", "x")
    assert len(fsyncs) == 1
    io.write_json_atomic(tmp_path / "b", {}, fsync=False)
    with io.atomic_path(tmp_path / "c", fsync=False) as tmp:
        tmp.write_text("x")
    assert len(fsyncs) == 1
    with io.atomic_path(tmp_path / "d") as tmp:
        tmp.write_text("x")
    assert len(fsyncs) == 2


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    io.write_json_atomic(target, {"old": True})
    with pytest.raises(TypeError):
        io.write_atomic(target, 42)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert json.loads(target.read_text()) == {"old": True}
    assert leftovers(tmp_path) == []


def test_replacing_a_symlink_replaces_the_link_not_its_target(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "out.json"
    link.symlink_to(victim)
    io.write_atomic(link, "new")
    assert victim.read_text() == "keep"
    assert not link.is_symlink() and link.read_text() == "new"


def test_the_former_copies_keep_their_options(tmp_path, umask022, fsyncs):
    """Ownership file: owner-only, no fsync; simulator state: no fsync; Allure history copy:
    umask permissions, no fsync."""
    store = OwnershipStore(tmp_path / "own" / "mig-ownership.json")
    store.path.parent.mkdir()
    store._write([])
    assert perms(store.path) == 0o600
    assert json.loads(store.path.read_text())["instances"] == []
    state = StateFile(tmp_path / "sim" / "state.json")
    state.path.parent.mkdir()
    state.write({"format": "x"})
    assert json.loads(state.path.read_text()) == {"format": "x"}
    previous = tmp_path / "old-report" / "history"
    previous.mkdir(parents=True)
    (previous / "history.json").write_text("{}")
    dest = copy_history(tmp_path / "old-report", tmp_path / "allure")
    assert perms(dest / "history.json") == 0o644 and (dest / "history.json").read_text() == "{}"
    assert fsyncs == []
    assert [leftovers(p) for p in (store.path.parent, state.path.parent, dest)] == [[], [], []]
