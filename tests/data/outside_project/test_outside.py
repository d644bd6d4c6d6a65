"""One heterogeneous case per suite.yaml entry, with the project's own latency bound."""
from __future__ import annotations


def test_hetero(mig_case, hetero, max_p90_latency_ms):
    outcome = hetero.run(mig_case)
    assert outcome.valid, outcome.why_invalid()
    assert outcome.background_healthy, outcome.why_unhealthy()
    p90_ms = outcome.result.metric_value / 1e6
    assert 0 < p90_ms <= max_p90_latency_ms, f"p90 {p90_ms:.2f} ms"
