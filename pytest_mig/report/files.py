"""Report files that could not be written: the one-line message and the exit status.

The atomic writers themselves live in the bottom layer, `pytest_mig.io`. A write that fails
(disk full, quota, read-only) is described in one line by `write_problem`: the path, the
error and the free space there; the callers keep going so every earlier file stays and
pytest's summary is still printed (see REPORT_INCOMPLETE).
"""
from __future__ import annotations

import shutil
from pathlib import Path

# Exit status of a run whose tests all passed but one of whose report files could not be
# written (disk full, read-only): the report is incomplete, the line above the summary says
# which file. (pytest uses 0-5.)
REPORT_INCOMPLETE = 6


def write_problem(path: Path, exc: OSError) -> str:
    """One line: which file could not be written, why, and how much space is left there."""
    free = "free space unknown"
    for folder in (Path(path), *Path(path).parents):
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.1f} MB free there"
            break
        except OSError:
            continue
    return (f"pytest-mig: cannot write {path}: {exc.strerror or exc} ({free}); files written "
            "before it are kept")
