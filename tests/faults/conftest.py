from __future__ import annotations

import pytest

from .helpers import Project


@pytest.fixture
def project(pytester) -> Project:
    proj = Project(pytester)
    yield proj
    proj.kill_leftovers()  # hygiene only: every test asserts there were none where it matters
