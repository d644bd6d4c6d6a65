"""Atomic file writes: a run killed at any moment leaves the previous file intact.

A write that fails (disk full, quota, read-only) is described in one line by
`write_problem`: the path, the error and the free space there; the callers keep going so
every earlier file stays and pytest's summary is still printed (see REPORT_INCOMPLETE).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


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
