"""The plugin's fixtures: the run's session, GPU topology and harness, a leased slot, and
`hetero` (what a test body calls: `outcome = hetero.run(mig_case)`).

Rules: declarations only; what a case does lives in case_runner.py, imported inside the
case fixtures with the harness adapters (a late import: docs/architecture.md, start-up cost).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pytest_mig.surface.keys import OUTCOME_KEY, SESSION_KEY  # noqa: F401 (named here too)
from pytest_mig.run.state import MigSession
from pytest_mig.types import Case

if TYPE_CHECKING:
    from pytest_mig.surface.case_runner import HeteroRunner


@pytest.fixture(scope="session")
def mig_session(pytestconfig) -> MigSession:
    return pytestconfig.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def mig_topology(mig_session):
    """The GPUs, MIG mode and instances this run talks to (real NVML or the simulator)."""
    return mig_session.topology()


@pytest.fixture(scope="session")
def mig_harness(mig_session):
    settings = mig_session.settings  # the adapter is imported now, at case time: see the rules
    return settings.harnesses.build(settings.harness, settings.harness_options)


@pytest.fixture
def mig_slot(mig_session, mig_case: Case):
    """Lease a whole GPU (xdist-safe) and carve main + background partitions from it."""
    from pytest_mig.surface.case_runner import leased_slot  # case time only: see the rules
    yield from leased_slot(mig_session, mig_case)


@pytest.fixture
def hetero(request, mig_session, mig_slot, mig_harness) -> HeteroRunner:
    from pytest_mig.surface.case_runner import HeteroRunner  # case time only: see the rules
    return HeteroRunner(request, mig_session, mig_slot, mig_harness)
