"""The user's conftest: what their own tests need beside pytest-mig's fixtures."""
from __future__ import annotations

import pytest


@pytest.fixture
def max_p90_latency_ms() -> float:
    """The project's own service-level bound for the main's 90th percentile latency."""
    return 250.0
