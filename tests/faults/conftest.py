from __future__ import annotations

import pytest

from .helpers import fault_project


@pytest.fixture
def project(mini_project):
    """The fault suite's project; its leftovers are killed at teardown (tests/conftest.py)."""
    return fault_project(mini_project)
