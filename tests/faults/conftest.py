from __future__ import annotations

import subprocess

import pytest

from .helpers import fault_project


@pytest.fixture
def project(mini_project):
    """The fault suite's project; its leftovers are killed at teardown (tests/conftest.py)."""
    return fault_project(mini_project)


@pytest.fixture
def procs():
    """Processes a test starts itself: killed and reaped at teardown."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        p.kill()
        p.wait()
