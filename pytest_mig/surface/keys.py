"""The stash keys of the pytest surface: where plugin.py, case_fixtures.py and the hook objects
(surface/report_hooks.py, manage_hooks.py, surface/shard_hooks.py) find the run's state.

Rules: keys only, no logic; the values' types are named for checkers, never imported here,
so any surface module may import this one without pulling orchestration in.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_mig.orchestration.hetero_run import HeteroOutcome
    from pytest_mig.run.state import MigSession

SESSION_KEY = pytest.StashKey["MigSession"]()  # config.stash: the run (settings, run dir, GPUs)
OUTCOME_KEY = pytest.StashKey["HeteroOutcome"]()  # item.stash: the case's outcome until recorded
PRIOR_RUN_MARKER_KEY = pytest.StashKey["str | None"]()  # config.stash: PYTEST_MIG_RUN_ID before us
