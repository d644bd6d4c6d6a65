"""Errors a user can cause, each with a message naming where (file, key) and the fix.

Anything raised from deep inside that is *not* one of these is a bug in pytest-mig.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class MigError(Exception):
    """Base of every pytest-mig error a user can cause or fix."""


class SuiteError(MigError):
    """A suite YAML file is invalid: names file, line, key, allowed values and the fix."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 key: str | None = None, fix: str | None = None) -> None:
        self.file, self.line, self.key, self.fix = file, line, key, fix
        where = f"{file}:{line}" if file and line else (file or "")
        parts = [p for p in (where, f"key '{key}'" if key else "") if p]
        text = (": ".join(parts) + ": " if parts else "") + message
        if fix:
            text += f"\n  fix: {fix}"
        super().__init__(text)


class ConfigError(MigError):
    """Bad or conflicting command-line options / ini values."""


class GpuError(MigError):
    """The GPU cannot do what was asked (missing driver, MIG disabled, no capacity)."""


class LayoutError(MigError):
    """A MIG layout is unknown, malformed or impossible on the GPU."""


class HarnessError(MigError):
    """A harness could not be launched (missing executable, bad template)."""


class ResultParseError(MigError):
    """A LoadGen output file is missing or not in any known format."""


class LeaseTimeout(MigError):
    """No GPU slot set became free in time (more xdist workers than GPUs)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""
