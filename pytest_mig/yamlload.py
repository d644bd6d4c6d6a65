"""Plain YAML reading with libyaml's C parser when PyYAML has it (10-20x the pure-Python one).

Rule: every plain (position-free) data file is read through `safe_load` here; yamlpos.py
keeps line numbers for suite files. Same safe schema either way.
"""
from __future__ import annotations

from typing import Any

import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """yaml.safe_load with the C loader when available; raises yaml.YAMLError like it."""
    return yaml.load(text, Loader=LOADER)  # noqa: S506 - a safe loader
