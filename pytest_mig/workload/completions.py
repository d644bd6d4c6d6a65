"""A workload's completion log: `completions.tsv`, one `unix_time<TAB>samples_completed` line at
most every `every_s` seconds, cumulative over every LoadGen test the process runs.

Rules: written by the workload process (the built-in harness's SUT, or any program that
imports this module); appended and flushed as it goes so a reader sees it live and a crash
keeps what was written; only samples answered with a real inference count (answers given
without inference while draining on SIGTERM are left out). The plugin reads it back with
pytest_mig.results.window to count what a background completed inside a main's window.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

from pytest_mig.results.window import FILE_NAME

__all__ = ["FILE_NAME", "CompletionLog"]
HEADER = "# pytest-mig completions: unix_time\tsamples_completed (cumulative)\n"


class CompletionLog:
    """Counts completed samples and appends a timestamped cumulative line now and then."""

    def __init__(self, log_dir: Path | str, every_s: float = 0.1) -> None:
        self.path = Path(log_dir) / FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.every_s = every_s
        self.count = 0
        self._lock = threading.Lock()
        self._fh = open(self.path, "a", encoding="utf-8")
        if self._fh.tell() == 0:
            self._fh.write(HEADER)
        self._last = 0.0
        self._write(time.time())

    def _write(self, now: float) -> None:
        self._fh.write(f"{now:.4f}\t{self.count}\n")
        self._fh.flush()
        self._last = now

    def add(self, samples: int) -> None:
        """`samples` more completed now; a line is written when `every_s` has passed."""
        with self._lock:
            if self._fh.closed:
                return
            self.count += samples
            now = time.time()
            if now - self._last >= self.every_s:
                self._write(now)

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._write(time.time())
                self._fh.close()
