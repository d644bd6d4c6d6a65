"""The fleet smoke suite's one test: run the case, assert a valid result and healthy backgrounds."""


def test_smoke(mig_case, hetero):
    outcome = hetero.run(mig_case)
    assert outcome.valid, outcome.why_invalid()
    assert outcome.background_healthy, outcome.why_unhealthy()
