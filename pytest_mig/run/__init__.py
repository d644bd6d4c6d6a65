"""The run session: one run's settings and state, pytest-free; each case's MIG layout."""
