"""The harness registry: which `--harness` names exist and what each one is.

Rules:
- One registry per run: the built-in harnesses, then whatever a conftest or plugin adds in
  its `pytest_mig_register_harnesses(registry)` hook (surface/hookspecs.py), called once at
  configure time. `--harness` is checked against it, and the case's harness is built by it.
- A built-in entry names its factory and option check as "module:attribute" strings,
  imported when first used: a start-up loads no adapter (and no result parser).
- A factory takes the harness options (dict) and returns an object that keeps the
  protocol of harness/base.py (`launch`, `collect`, `name`, `stop_exit_zero`).
"""
from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from pytest_mig.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from pytest_mig.harness.base import Harness

Factory = Callable[[dict[str, str]], "Harness"]
Check = Callable[[dict[str, str]], None]
NAME = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class HarnessEntry:
    """One `--harness` value: how to build it and how to check its options at configure
    time (HarnessError or ConfigError for the first option it cannot use)."""

    name: str
    factory: Union[Factory, str]  # or "module:attribute", imported when first used
    check: Union[Check, str, None] = None
    summary: str = ""
    words: str = ""  # what the run header calls it; default: "the <name> harness"

    @property
    def called(self) -> str:
        return self.words or f"the {self.name} harness"

    def build(self, options: Mapping[str, str]) -> Harness:
        return _resolve(self.factory)(dict(options))

    def check_options(self, options: Mapping[str, str]) -> None:
        if self.check is not None and options:
            _resolve(self.check)(dict(options))


class HarnessRegistry:
    """The harnesses of a run, by name, in the order they were added."""

    def __init__(self, entries: tuple[HarnessEntry, ...] = ()) -> None:
        self._entries: dict[str, HarnessEntry] = {}
        for entry in entries:
            self._put(entry)

    def add(self, name: str, factory: Union[Factory, str], check: Union[Check, str, None] = None,
            summary: str = "", words: str = "") -> None:
        """Add the harness `--harness=<name>` selects (the hook's one call per harness)."""
        self._put(HarnessEntry(name, factory, check, summary, words))

    def _put(self, entry: HarnessEntry) -> None:
        if not NAME.match(entry.name):
            raise ConfigError(f"harness name {entry.name!r}: use lowercase letters, digits, '-' "
                              "and '_', starting with a letter (it is the --harness value)")
        if entry.name in self._entries:
            raise ConfigError(f"harness {entry.name!r} is registered twice; a "
                              "pytest_mig_register_harnesses hook must pick a name of its own")
        self._entries[entry.name] = entry

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def entry(self, name: str) -> HarnessEntry:
        if name not in self._entries:
            raise ConfigError(f"--harness={name}: unknown harness{did_you_mean(name, self.names)}; "
                              f"choose one of {', '.join(self.names)}")
        return self._entries[name]

    def build(self, name: str, options: Mapping[str, str] | None = None) -> Harness:
        """The harness called `name`, given its options."""
        return self.entry(name).build(options or {})


def _resolve(target):
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


BUILT_IN = (
    HarnessEntry("loadgen", "pytest_mig.harness.loadgen:LoadgenHarness",
                 "pytest_mig.harness.loadgen:check_options",
                 "the built-in harness: real LoadGen driving PyTorch models",
                 "the built-in harness"),
    HarnessEntry("nvidia", "pytest_mig.harness.nvidia:NvidiaHarness", None,
                 "NVIDIA's closed-division code: make run_harness in --mlperf-root",
                 "NVIDIA's harness"),
    HarnessEntry("command", "pytest_mig.harness.command:CommandHarness",
                 "pytest_mig.harness.command:check_options",
                 "any program: --mig-command argv template", "your --mig-command program"),
)


def built_in() -> HarnessRegistry:
    """A registry holding the built-in harnesses only."""
    return HarnessRegistry(BUILT_IN)


def get_harness(name: str, options: Mapping[str, str] | None = None) -> Harness:
    """A built-in harness by name (a run builds its harness from Settings.harnesses)."""
    return built_in().build(name, options)
