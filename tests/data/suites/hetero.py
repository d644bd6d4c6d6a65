"""A sample suite's test module (copied into a project as suites/test_<suite>.py): run the
case; a performance run must be valid, an accuracy run must reach its target; the
backgrounds must be healthy."""
from pytest_mig.types import PERFORMANCE


def test_hetero(mig_case, hetero):
    outcome = hetero.run(mig_case)
    if mig_case.mode == PERFORMANCE:
        assert outcome.valid, outcome.why_invalid()
    else:
        assert outcome.accuracy_ok, outcome.why_accuracy()
    assert outcome.background_healthy, outcome.why_unhealthy()
