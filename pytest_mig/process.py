"""Child processes of a run: spawned as argv in their own process group, logged, reaped.

Every child gets the environment marker PYTEST_MIG_RUN_ID so a leftover can always be
found, and PYTEST_MIG_SPAWNER_PID (the pytest process that started it) so the workloads of a
killed xdist worker are known as orphans while the rest of the run goes on. Children are
registered until reaped so an interpreter exit still kills their group.

Who ended a child is decided without a race: one waiter thread per child learns of the exit
with waitid(WNOWAIT), records it under the workload's lock and only then reaps. stop() takes
the same lock and asks the kernel (waitid WNOHANG|WNOWAIT: a zombie not yet reaped still
answers) whether the child has already exited; only a child alive at that instant is
signalled and counted as `stopped_by_us`. Until the child is reaped its pid cannot be reused,
so the signal can never reach another process. Nothing else calls Popen.poll()/wait().
"""
from __future__ import annotations

import atexit
import os
import re
import signal
import subprocess
import threading
import time
from collections import deque
from pathlib import Path
from typing import Mapping

from pytest_mig.errors import HarnessError
from pytest_mig.types import Finished, LaunchSpec

RUN_MARKER = "PYTEST_MIG_RUN_ID"
SPAWNER_MARKER = "PYTEST_MIG_SPAWNER_PID"
# The only variables a workload inherits from us; everything else is explicit.
# Secrets in the caller's environment therefore never reach a workload or a report.
INHERITED_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV",
    "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES",
    "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY", "PYTEST_MIG_DATA",
)

_live: set["Workload"] = set()
_live_lock = threading.Lock()


def child_env(extra: Mapping[str, str], run_id: str) -> dict[str, str]:
    """An explicit environment for a workload: an allow-list of ours plus `extra`."""
    env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
    env["PYTHONUNBUFFERED"] = "1"
    env[RUN_MARKER] = run_id
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Workload:
    """One running child: a reader thread streams its output to the log and spots readiness."""

    def __init__(self, name: str, spec: LaunchSpec) -> None:
        self.name = name
        self.spec = spec
        # MULTILINE: ^ and $ keep their per-line meaning when a whole chunk is searched.
        self._ready_re = re.compile(spec.ready_pattern, re.MULTILINE)
        self._ready = threading.Event()
        self._done = threading.Event()  # reader reached EOF
        self._changed = threading.Event()  # ready line seen or output ended
        self.ready_at: float | None = None
        self.ended_at: float | None = None
        self.started_at = 0.0
        self.stopped_by_us = False
        self.stop_signalled_at: float | None = None
        self.returncode: int | None = None  # set once reaped
        self._state = threading.Lock()  # exit bookkeeping vs. stop()'s signal decision
        self._exited = False  # the kernel reported the exit (reaped or about to be)
        self._reaped_event = threading.Event()
        self.tail: deque[str] = deque(maxlen=40)
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> "Workload":
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.spec.result_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.proc = subprocess.Popen(
                list(self.spec.argv), cwd=str(self.spec.cwd),
                env={**self.spec.env, SPAWNER_MARKER: str(os.getpid())},
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                bufsize=0,
                start_new_session=True,  # own process group: we can always kill all of it
            )
        except FileNotFoundError:
            # from None: the message says it all; subprocess internals would only bury it.
            raise HarnessError(
                f"{self.name}: cannot start '{self.spec.argv[0]}': executable not found "
                f"(check the harness options or PATH)") from None
        except PermissionError as exc:
            raise HarnessError(
                f"{self.name}: cannot execute '{self.spec.argv[0]}': {exc.strerror}") from None
        self.started_at = time.time()
        with _live_lock:
            _live.add(self)
        self._reader = threading.Thread(target=self._read, name=f"mig-reader-{self.name}",
                                        daemon=True)
        self._reader.start()
        # The exit time is taken when the kernel reports it, not when someone next looks.
        threading.Thread(target=self._await_exit, name=f"mig-waiter-{self.name}",
                         daemon=True).start()
        return self

    def _await_exit(self) -> None:
        assert self.proc is not None
        try:  # the exit, without reaping: until reaped the pid stays ours
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # already reaped (cannot happen unless someone called waitpid behind us)
        except InterruptedError:  # pragma: no cover - PEP 475 retries, kept for clarity
            pass
        with self._state:
            self._exited = True
            if self.ended_at is None:
                self.ended_at = time.time()
        self.returncode = self.proc.wait()  # reaps
        self._reaped_event.set()
        self._changed.set()

    def _read(self) -> None:
        # Blocking chunk reads: readiness is known the moment its line arrives, no polling.
        # Whole chunks go to the log and through one multi-line regex search, so a workload
        # printing 100,000 lines before its ready line costs C-speed work, not a Python loop.
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        with open(self.spec.log_path, "ab") as log:
            while True:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                log.write(data)
                log.flush()
                pending += data
                cut = pending.rfind(b"\n")
                if cut < 0:
                    if len(pending) > 1 << 20:  # a 1 MiB line: scan it anyway
                        self._scan(pending)
                        pending = b""
                    continue
                self._scan(pending[:cut + 1])
                pending = pending[cut + 1:]
            if pending:
                self._scan(pending)
        self._done.set()
        self._changed.set()

    def _scan(self, chunk: bytes) -> None:
        text = chunk.decode("utf-8", "replace")
        if self.ready_at is None and self._ready_re.search(text):
            self.ready_at = time.time()
            self._ready.set()
            self._changed.set()
        self.tail.extend(text[-16384:].splitlines()[-self.tail.maxlen:])

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        """The exit code once the child is reaped, else None (never reaps itself)."""
        return self.returncode

    def running(self) -> bool:
        """True until the kernel reports the child's exit."""
        return self.proc is not None and not self._exited

    def wait_ready(self, timeout: float) -> bool:
        """True once the ready line was seen; False on exit-before-ready or timeout."""
        # Wakes on readiness or on end of output (the child died): never a blind sleep.
        self._changed.wait(timeout=timeout)
        if not self._ready.is_set() and self._changed.is_set():
            # Exited: let the reader drain lines still in the pipe (the ready line may be there).
            self._done.wait(timeout=2.0)
        return self._ready.is_set()

    def wait(self, timeout: float | None = None) -> int | None:
        """Exit code, or None if still running after `timeout` seconds."""
        if self.proc is None:
            return None
        if not self._reaped_event.wait(timeout=timeout):
            return None
        return self._reaped(self.returncode)

    def _exited_now(self) -> bool:
        """Ask the kernel, under the state lock: has the child exited (zombie or reaped)?"""
        assert self.proc is not None
        if self._exited:
            return True
        try:
            info = os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the whole group, then SIGKILL after `grace`; always reaps.

        Only a child still alive when stop() decides is signalled and marked
        `stopped_by_us`; one that had already exited keeps its own exit as its story.
        """
        if self.proc is None:
            return None
        with self._state:
            if not self._exited_now():
                self.stopped_by_us = True
                self.stop_signalled_at = time.time()
                _signal_group(self.proc.pid, signal.SIGTERM)
        self._reaped_event.wait(timeout=grace)
        # Grandchildren may outlive the leader: the group goes in every case.
        _signal_group(self.proc.pid, signal.SIGKILL)
        self._reaped_event.wait()
        return self._reaped(self.returncode)

    def _reaped(self, code: int) -> int:
        """Bookkeeping once the child is reaped: end time, drained output, unregistered."""
        if self.ended_at is None:
            self.ended_at = time.time()
        if self._reader is not None:
            self._reader.join(timeout=5)
        self._forget()
        return code

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def finished(self) -> Finished:
        code = self.returncode
        return Finished(name=self.name, started_at=self.started_at, ready_at=self.ready_at,
                        ended_at=self.ended_at if code is not None else None, exit_code=code,
                        log_path=self.spec.log_path, stopped_by_us=self.stopped_by_us,
                        stop_signalled_at=self.stop_signalled_at)

    def tail_text(self, lines: int = 15) -> str:
        return "\n".join(list(self.tail)[-lines:])


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_all(grace: float = 2.0) -> int:
    """Stop every workload still registered; returns how many were running."""
    with _live_lock:
        live = list(_live)
    for w in live:
        w.stop(grace=grace)
    return len(live)


def markers_of(pid: int) -> dict[str, str]:
    """Our markers (run id, spawner pid) in a process's environment, where we may read it."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    wanted = (RUN_MARKER.encode() + b"=", SPAWNER_MARKER.encode() + b"=")
    return {item.split(b"=", 1)[0].decode(): item.split(b"=", 1)[1].decode("utf-8", "replace")
            for item in env if item.startswith(wanted)}


def run_marker_of(pid: int) -> str | None:
    """The PYTEST_MIG_RUN_ID in a process's environment, if it has one and we may read it."""
    return markers_of(pid).get(RUN_MARKER)


def owner_pid(run_id: str) -> int | None:
    """Run ids end in the pid of the pytest process that owns the run."""
    tail = run_id.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (a killed worker not yet waited for) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _is_orphan(pid: int, markers: dict[str, str], current_run: str, only_run: bool) -> bool:
    """A marked process whose spawner died, or whose run's pytest (another run) is gone."""
    run = markers.get(RUN_MARKER)
    if not run or (only_run and run != current_run):
        return False
    spawner = markers.get(SPAWNER_MARKER, "")
    if spawner.isdigit() and int(spawner) != pid and not _pid_alive(int(spawner)):
        return True
    owner = owner_pid(run)
    return not (run == current_run or owner is None or owner == pid or _pid_alive(owner))


def reap_orphans(current_run: str, only_run: bool = False) -> list[tuple[int, str]]:
    """Kill workloads whose pytest process is gone: a run killed with SIGKILL or os._exit,
    or a killed xdist worker (its spawner marker names a dead pid while the run goes on).

    Found by the environment markers every child carries; returns (pid, run id) of each.
    With `only_run`, only the current run's own orphans are touched.
    """
    reaped = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        markers = markers_of(pid)
        if not _is_orphan(pid, markers, current_run, only_run):
            continue
        _signal_group(pid, signal.SIGKILL)
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        reaped.append((pid, markers[RUN_MARKER]))
    return reaped


received_signal: int | None = None  # the signal that interrupted this run, if any


def interruption() -> str:
    """'SIGTERM' (etc.) when a signal interrupted this run, else ''."""
    return signal.Signals(received_signal).name if received_signal else ""


def _on_sigterm(signum, frame) -> None:
    # SIGTERM (a CI job cancelled, `kill`) must unwind like Ctrl-C so every finally runs
    # and every workload group is stopped; the default action would orphan them.
    global received_signal
    received_signal = signum
    raise KeyboardInterrupt(f"pytest-mig: received signal {signum}")


def install_sigterm_handler() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


atexit.register(stop_all)
