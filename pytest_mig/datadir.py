"""Where the run-time data lives: GPU profile tables, the benchmark catalogue, layouts.

Rules:
- The data ships inside the package (`pytest_mig/data/`) and is found with
  `importlib.resources`, so an installed wheel needs no checkout beside it.
- One override, honoured by every reader: the environment variable `PYTEST_MIG_DATA`
  (the option `--mig-data DIR` sets it at configure time, so workloads inherit it).
  A path the override folder lacks falls back to the packaged file, so a user may
  override `gpus/` alone, or only `benchmarks.yaml`.
- Bottom layer: imports nothing of pytest_mig.
"""
from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

DATA_ENV = "PYTEST_MIG_DATA"


def packaged_dir() -> Path:
    """The data folder inside the installed package."""
    return Path(str(resources.files("pytest_mig") / "data"))


def override_dir() -> Path | None:
    """$PYTEST_MIG_DATA, or None when unset or empty."""
    value = os.environ.get(DATA_ENV, "")
    return Path(value) if value else None


def data_path(*parts: str) -> Path:
    """`parts` under the override folder if it has them, else under the packaged data."""
    override = override_dir()
    if override is not None and (override.joinpath(*parts)).exists():
        return override.joinpath(*parts)
    return packaged_dir().joinpath(*parts)
