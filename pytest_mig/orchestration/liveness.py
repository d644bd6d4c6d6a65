"""Liveness of backgrounds while a main runs: an exit code says nothing of a process that is
stopped (SIGSTOP, a debugger), frozen (a cgroup freezer, a process stuck in the GPU driver)
or a zombie, nor of one whose completions stopped advancing.

Rules: one sampling thread per main run, reading /proc (process.process_state) and the
modification time of each background's completions.tsv every `every_s`; the first time a
background is seen in trouble is kept with what was seen (`since`), later samples never
overwrite it. A problem found fails the case through the health check (hetero_run adds
`problems()` to the background's verdict); nothing here signals a process.
"""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_mig.orchestration.process import Workload, process_state
from pytest_mig.results.window import FILE_NAME as COMPLETIONS

STALL_S = 20.0  # completions.tsv not touched this long while the main runs: stalled


@dataclass(frozen=True)
class Trouble:
    """What was first seen wrong with one background, and when (time.time())."""

    what: str
    since: float

    def describe(self, main_start: float | None) -> str:
        at = time.strftime("%H:%M:%S", time.localtime(self.since)) + f".{int(self.since % 1 * 10)}"
        into = (f" ({self.since - main_start:.1f} s after the main started)"
                if main_start is not None and self.since >= main_start else "")
        return f"{self.what} since {at}{into}"


def trouble_of(state: str) -> str | None:
    """The problem a /proc state (process_state's words) is, or None when it is fine."""
    if "frozen by the cgroup freezer" in state:
        return f"frozen ({state})"
    if state[:1] in ("T", "t"):
        return f"stopped ({state})"
    if state[:1] == "Z":
        return f"a zombie ({state})"
    return None


class LivenessWatch:
    """Samples each named background (workload, log dir) until stop()."""

    def __init__(self, backgrounds: list[tuple[str, Workload, Path]], every_s: float = 0.5,
                 stall_s: float = STALL_S) -> None:
        self.backgrounds = backgrounds
        self.every_s, self.stall_s = every_s, stall_s
        self.started = time.time()
        self.trouble: dict[str, Trouble] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="mig-liveness", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def sample(self) -> None:
        now = time.time()
        for name, w, log_dir in self.backgrounds:
            if name in self.trouble or not w.running() or w.pid is None or w.stopped_by_us:
                continue
            what = trouble_of(process_state(w.pid))
            if what is None and now - self.started >= self.stall_s:
                what = self._stalled(log_dir, now)
            if what is not None:
                with self._lock:
                    self.trouble.setdefault(name, Trouble(what, now))

    def _stalled(self, log_dir: Path, now: float) -> str | None:
        try:
            touched = os.stat(Path(log_dir) / COMPLETIONS).st_mtime
        except OSError:
            return None  # no completions log (a command harness): nothing to judge by
        if now - max(touched, self.started) < self.stall_s:
            return None
        return (f"its completions stopped advancing ({COMPLETIONS} untouched for "
                f"{now - touched:.0f} s)")

    def flagged(self, name: str) -> bool:
        with self._lock:
            return name in self.trouble

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()  # the last look, at the main's end

    def problems(self, name: str, main_start: float | None) -> list[str]:
        with self._lock:
            t = self.trouble.get(name)
        return [f"was {t.describe(main_start)} while the main ran"
                if t.what.startswith(("stopped", "frozen", "a zombie"))
                else f"{t.describe(main_start)} while the main ran"] if t else []
