"""The layout comparison suite: one test per case (benchmark x layout) of suite.yaml beside this
file; the per-layout table and picture are written at the end of the run (report/layouts.py)."""
from __future__ import annotations

from pytest_mig.types import ACCURACY, PERFORMANCE


def test_hetero(mig_case, hetero):
    outcome = hetero.run(mig_case)
    if mig_case.mode == PERFORMANCE:
        assert outcome.valid, outcome.why_invalid()
    if mig_case.mode == ACCURACY:
        assert outcome.accuracy_ok, outcome.why_accuracy()
    assert outcome.background_healthy, outcome.why_unhealthy()
