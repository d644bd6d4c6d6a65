"""The run id a run puts in os.environ (for xdist workers and children) is its own only while it
runs: an in-process run gives back whatever was there before."""
import os

import pytest
import yaml  # noqa: F401  loaded before pytester's module snapshot: a C extension is not re-importable

RUN_MARKER = "PYTEST_MIG_RUN_ID"


@pytest.mark.parametrize("before", [None, "20991231-000000-outer"])
def test_in_process_run_restores_the_run_marker(mini, monkeypatch, before):
    if before is None:
        monkeypatch.delenv(RUN_MARKER, raising=False)
    else:
        monkeypatch.setenv(RUN_MARKER, before)
    seen = []

    class Spy:
        @pytest.hookimpl(trylast=True)
        def pytest_collection_finish(self, session):
            seen.append(os.environ.get(RUN_MARKER))

    result = mini.pytester.runpytest_inprocess(*mini.args("--collect-only", "-q"), plugins=[Spy()])
    assert result.ret == 0, result.stdout.str()
    assert seen and seen[0] not in (None, before)  # the inner run had an id of its own
    assert os.environ.get(RUN_MARKER) == before
