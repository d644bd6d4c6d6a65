"""Harness backends: turn a WorkSpec + Partition into a LaunchSpec, and outputs into a result."""
from __future__ import annotations

from pytest_mig.errors import ConfigError, did_you_mean
from pytest_mig.harness.base import Harness

HARNESSES = ("loadgen", "nvidia", "command")


def get_harness(name: str, options: dict[str, str] | None = None) -> Harness:
    """The backend called `name`; imports lazily so the plugin never needs torch."""
    options = dict(options or {})
    if name == "loadgen":
        from pytest_mig.harness.builtin import BuiltinHarness
        return BuiltinHarness(options)
    if name == "nvidia":
        from pytest_mig.harness.nvidia import NvidiaHarness
        return NvidiaHarness(options)
    if name == "command":
        from pytest_mig.harness.command import CommandHarness
        return CommandHarness(options)
    raise ConfigError(f"--harness={name}: unknown harness{did_you_mean(name, HARNESSES)}; "
                      f"choose one of {', '.join(HARNESSES)}")
