"""Samples a workload completed inside a time window, from its `completions.tsv`.

The measurement (stated wherever it is reported as `window_source: completions.tsv`): the
workload's SUT appends its cumulative count of completed samples with a wall-clock time at
most every 0.1 s (pytest_mig.workload.completions); the count at a window edge is linearly
interpolated between the two lines around it. A window only partly covered by the log (the
workload started late or ended early) is clipped to the covered part and marked partial.
Rules: no pytest, no GPU; a missing or empty log answers None, a malformed line is skipped;
the log is read through the guarded reader (a regular file up to CAP_BYTES: a FIFO or
/dev/zero planted there answers None at once, never a hang or a full memory).
"""
from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

from pytest_mig.io import UnsafeFile, read_text

FILE_NAME = "completions.tsv"  # written by pytest_mig.workload.completions
CAP_BYTES = 64 << 20  # a line per 0.1 s at most: hours of a run
SOURCE = FILE_NAME


@dataclass(frozen=True)
class WindowCount:
    """What one workload completed between `start` and `end` (unix seconds)."""

    samples: float
    seconds: float  # the covered part of the window
    partial: bool  # the log did not cover the whole window

    @property
    def samples_per_s(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None


def read_completions(path: Path) -> list[tuple[float, int]]:
    points: list[tuple[float, int]] = []
    try:
        text = read_text(Path(path), CAP_BYTES)
    except (OSError, UnsafeFile):
        return points
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        t, _, n = line.partition("\t")
        try:
            point = (float(t), int(n))
        except ValueError:
            continue  # a line cut short by a kill
        if points and point[0] < points[-1][0]:
            continue
        points.append(point)
    return points


def _at(points: list[tuple[float, int]], t: float) -> float:
    i = bisect_right([p[0] for p in points], t)
    if i == 0:
        return float(points[0][1])
    if i == len(points):
        return float(points[-1][1])
    (t0, n0), (t1, n1) = points[i - 1], points[i]
    return n0 + (n1 - n0) * ((t - t0) / (t1 - t0) if t1 > t0 else 1.0)


def count_window(points: list[tuple[float, int]], start: float, end: float) -> WindowCount | None:
    """Samples completed in [start, end]; None when the log does not overlap the window."""
    if len(points) < 2 or end <= start:
        return None
    lo, hi = max(start, points[0][0]), min(end, points[-1][0])
    if hi <= lo:
        return None
    return WindowCount(samples=_at(points, hi) - _at(points, lo), seconds=hi - lo,
                       partial=lo > start or hi < end)


def window_in_dir(log_dir: Path, start: float, end: float) -> WindowCount | None:
    """count_window of `log_dir`/completions.tsv (None when there is none)."""
    return count_window(read_completions(Path(log_dir) / FILE_NAME), start, end)
