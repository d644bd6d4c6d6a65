"""Repo-root defaults: reports go to ./reports, suites live in ./suites.

The plugin itself is registered through the pytest11 entry point (pip install -e .);
nothing here is needed for it to work, this only makes a plain checkout discoverable.
"""
from __future__ import annotations

collect_ignore = ["benchmarks", "reports"]
