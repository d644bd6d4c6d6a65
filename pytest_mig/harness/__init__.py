"""Harness adapters (plugin side): turn a WorkSpec + Partition into a LaunchSpec, outputs into a result.

Each module is named after its `--harness` value: loadgen (the built-in child program,
launched as `python -m pytest_mig.workload`), nvidia, command. Nothing here imports torch
or pytest_mig.workload (that program is launched, never imported).
"""
from __future__ import annotations

from pytest_mig.errors import ConfigError, did_you_mean
from pytest_mig.harness.base import Harness
from pytest_mig.harness.command import CommandHarness
from pytest_mig.harness.loadgen import LoadgenHarness
from pytest_mig.harness.nvidia import NvidiaHarness

HARNESSES = {"loadgen": LoadgenHarness, "nvidia": NvidiaHarness, "command": CommandHarness}


def get_harness(name: str, options: dict[str, str] | None = None) -> Harness:
    """The backend called `name` (the value of --harness), given its --mig-harness-opt options."""
    if name not in HARNESSES:
        raise ConfigError(f"--harness={name}: unknown harness{did_you_mean(name, HARNESSES)}; "
                          f"choose one of {', '.join(HARNESSES)}")
    return HARNESSES[name](dict(options or {}))
