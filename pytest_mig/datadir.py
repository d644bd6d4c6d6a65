"""Where the run-time data lives: GPU profile tables, the benchmark catalogue, layouts.

Rules:
- One home: the data lives in the project's top-level `fixtures/` folder. The wheel ships
  that folder as `pytest_mig/data/` (pyproject.toml maps the data package onto it; there
  is no second copy in the checkout), found with `importlib.resources`, so an installed
  wheel needs no checkout beside it; a checkout (editable install) reads `fixtures/`.
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
    """The data shipped with pytest-mig: `pytest_mig/data/` of an installed wheel, else the
    checkout's `fixtures/` beside the package (an editable install, or a bare checkout)."""
    installed = Path(str(resources.files("pytest_mig") / "data"))
    if installed.is_dir():
        return installed
    return Path(__file__).resolve().parent.parent / "fixtures"


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
