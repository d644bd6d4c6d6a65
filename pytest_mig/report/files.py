"""Report files that could not be written: the one-line message and the exit status.

The atomic writers themselves live in the bottom layer, `pytest_mig.io`. A write that fails
(disk full, quota, read-only) is described in one line by `write_problem`: the path, the
error and the free space there; the callers keep going so every earlier file stays and
pytest's summary is still printed (see REPORT_INCOMPLETE).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

# Exit status of a run whose tests all passed but one of whose report files could not be
# written (disk full, read-only): the report is incomplete, the line above the summary says
# which file. (pytest uses 0-5.)
REPORT_INCOMPLETE = 6


def write_problem(path: Path, exc: OSError) -> str:
    """One line: which file could not be written, why (out of inodes is not out of bytes; a
    folder deleted under the run is named), and how much space is left there."""
    free, why = "free space unknown", exc.strerror or str(exc)
    for folder in (Path(path), *Path(path).parents):
        try:
            st = os.statvfs(folder)
        except OSError:
            continue
        free = f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free there"
        if exc.errno == errno.ENOSPC and st.f_files and st.f_favail == 0:
            why = "no inodes left on that file system (no file can be created, whatever the space)"
            free = f"{free}, 0 of {st.f_files} inodes"
        break
    if exc.errno == errno.ENOENT:
        missing = [f for f in Path(path).parents if not f.exists()]
        if missing:  # the outermost missing folder: the one deleted under the run
            why = f"its folder {missing[-1]} was deleted during the run"
    return (f"pytest-mig: cannot write {path}: {why} ({free}); files written "
            "before it are kept")
