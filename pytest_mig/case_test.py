"""The suites' one test body: run the case, then assert what a heterogeneous MIG case promises.

A suite's test module imports it (`from pytest_mig.case_test import test_hetero`); pytest
collects it there under the name it is bound to, parametrized with that suite's cases. Rules:
a performance run must be VALID, an accuracy run must reach its accuracy target, and every
background must be healthy (started before the main, still running at its end, ended as its
harness allows); each failing assert says why in one message. A user's own suite may import
it the same way or write its own body with these fixtures.
"""
from __future__ import annotations

from pytest_mig.types import ACCURACY, PERFORMANCE


def test_hetero(mig_case, hetero):
    outcome = hetero.run(mig_case)
    if mig_case.mode == PERFORMANCE:
        assert outcome.valid, outcome.why_invalid()
    if mig_case.mode == ACCURACY:
        assert outcome.accuracy_ok, outcome.why_accuracy()
    assert outcome.background_healthy, outcome.why_unhealthy()
