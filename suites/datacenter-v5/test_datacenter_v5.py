"""The v5.x datacenter heterogeneous MIG suite: one test per case of suite.yaml beside this file."""
from __future__ import annotations

from pytest_mig.types import ACCURACY, PERFORMANCE


def test_hetero_v5(mig_case, hetero):
    outcome = hetero.run(mig_case)
    if mig_case.mode == PERFORMANCE:
        assert outcome.valid, outcome.why_invalid()
    if mig_case.mode == ACCURACY:
        assert outcome.accuracy_ok, outcome.why_accuracy()
    assert outcome.background_healthy, outcome.why_unhealthy()
