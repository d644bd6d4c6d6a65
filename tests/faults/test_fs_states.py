"""Hypothesis over file-system states a workload or a user can leave where pytest-mig reads
and appends: missing, regular, too big, directory, FIFO, device, symlinks to each, read-only.
The readers return exactly the bytes of a regular file within the cap and otherwise raise
one of two things: FileNotFoundError for a missing path, or an UnsafeFile whose single line
starts with the path; they never block (a FIFO with no writer) and never follow an append
through a symlink. (A full disk is exercised in test_disk.py with a file-size limit.)"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_mig.io import UnsafeFile, open_append, read_bytes

STATES = ("missing", "regular", "empty", "oversize", "directory", "fifo", "readonly",
          "link_to_regular", "link_to_fifo", "link_to_dev_zero", "link_to_dev_null",
          "dangling_link")
CAP = 64


def make(root: Path, state: str, payload: bytes) -> Path:
    path = root / f"{state}.txt"
    target = root / f"{state}.target"
    if state in ("regular", "link_to_regular", "readonly"):
        (target if state == "link_to_regular" else path).write_bytes(payload)
    if state == "empty":
        path.write_bytes(b"")
    if state == "oversize":
        path.write_bytes(payload + b"x" * (CAP + 1))
    if state == "directory":
        path.mkdir()
    if state == "fifo":
        os.mkfifo(path)
    if state == "link_to_fifo":
        os.mkfifo(target)
    if state == "readonly":
        path.chmod(stat.S_IRUSR)
    links = {"link_to_regular": target, "link_to_fifo": target, "link_to_dev_zero": "/dev/zero",
             "link_to_dev_null": "/dev/null", "dangling_link": root / "nowhere"}
    if state in links:
        path.symlink_to(links[state])
    return path


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.sampled_from(STATES), payload=st.binary(max_size=CAP))
def test_read_bytes_over_file_states(tmp_path_factory, state, payload):
    path = make(tmp_path_factory.mktemp("fs"), state, payload)
    expect = {"regular": payload, "readonly": payload, "link_to_regular": payload, "empty": b""}
    if state in expect:
        assert read_bytes(path, cap=CAP) == expect[state]
    elif state in ("missing", "dangling_link"):
        with pytest.raises(FileNotFoundError):
            read_bytes(path, cap=CAP)
    else:
        with pytest.raises(UnsafeFile) as info:
            read_bytes(path, cap=CAP)
        text = str(info.value)
        assert text.startswith(f"{path}: refused to read it") and "\n" not in text


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.sampled_from(STATES), payload=st.binary(min_size=1, max_size=CAP))
def test_open_append_over_file_states(tmp_path_factory, state, payload):
    root = tmp_path_factory.mktemp("fs")
    path = make(root, state, b"old")
    targets_before = {p: p.read_bytes() for p in root.glob("*.target") if p.is_file()}
    if state in ("missing", "regular", "empty", "oversize", "readonly"):
        before = path.read_bytes() if path.exists() else b""
        fd = open_append(path)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
        assert path.read_bytes() == before + payload
    elif state == "directory":
        with pytest.raises(IsADirectoryError):
            open_append(path)
    else:
        with pytest.raises(UnsafeFile) as info:
            open_append(path)
        assert str(info.value).startswith(f"{path}: refused to append")
    # Never written through a link: every link target is unchanged.
    assert {p: p.read_bytes() for p in targets_before} == targets_before
