"""Harness adapters (plugin side): turn a WorkSpec + Partition into a LaunchSpec, outputs into a result.

Each module is named after its `--harness` value: loadgen (the built-in child program,
launched as `python -m pytest_mig.workload`), nvidia, command; registry.py lists them and
whatever a conftest or plugin registers. Nothing here imports torch or pytest_mig.workload
(that program is launched, never imported), and this package's face imports no adapter.
"""
from __future__ import annotations

from pytest_mig.harness.registry import HarnessRegistry, built_in, get_harness

__all__ = ["HarnessRegistry", "built_in", "get_harness"]
