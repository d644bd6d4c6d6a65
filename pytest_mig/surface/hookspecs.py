"""pytest-mig's own hooks, for conftests and plugins (added by plugin.py's pytest_addhooks).

Like pytest-xdist's `pytest_xdist_make_scheduler`: declared here, called by pytest-mig,
implemented by whoever extends it (docs/extending.md).
"""
from __future__ import annotations

import pytest


@pytest.hookspec
def pytest_mig_register_harnesses(registry) -> None:
    """Add harnesses to this run: `registry.add(name, factory, check=None, summary="", words="")`.

    `registry` is a pytest_mig.harness.registry.HarnessRegistry holding the built-in ones;
    `factory(options: dict[str, str])` returns an object keeping the protocol of
    pytest_mig/harness/base.py (`launch`, `collect`, `name`, `stop_exit_zero`); `check(options)`
    raises HarnessError for an option it cannot use (called at configure time).
    `--harness=<name>` then selects it. Called once per pytest process, at configure time.
    """
