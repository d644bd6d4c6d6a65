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

Each child also gets a lifeline: the read end of a pipe whose write end only this process
holds, until the child is reaped. If this process dies without stopping it (SIGKILL, a lost
xdist worker), the child reads end of file there; the built-in workload then stops itself
(`workload/cli.py`), so it does not wait for the next run's reaper.
"""
from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import re
import secrets
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pytest_mig.errors import HarnessError
from pytest_mig.runid import RunKey, read_key, start_ticks
from pytest_mig.types import Finished, LaunchSpec
from pytest_mig.workload_contract import LIFELINE_ENV

RUN_MARKER = "PYTEST_MIG_RUN_ID"
KEY_MARKER = "PYTEST_MIG_RUN_KEY"
SPAWNER_MARKER = "PYTEST_MIG_SPAWNER_PID"
WORKLOAD_MARKER = "PYTEST_MIG_WORKLOAD"
MARKERS = (RUN_MARKER, KEY_MARKER, SPAWNER_MARKER, WORKLOAD_MARKER)
# The only variables a workload inherits from us; everything else is explicit.
# Secrets in the caller's environment therefore never reach a workload or a report.
INHERITED_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV",
    "PYTHONPATH", "LD_LIBRARY_PATH", "CUDA_HOME", "NVIDIA_VISIBLE_DEVICES",
    "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY", "PYTEST_MIG_DATA",
)

_live: set["Workload"] = set()
_live_lock = threading.Lock()
_run_key: list[str] = []  # this process's run key (set once at configure), see use_run_key
_serial = itertools.count(1)


def use_run_key(key: str) -> None:
    """Every workload this process starts from now on carries `key` (PYTEST_MIG_RUN_KEY)."""
    _run_key[:] = [key]


_passed: list[str] = []  # --mig-env names, set once at configure (pass_env)


def pass_env(names: tuple[str, ...] | list[str]) -> None:
    """Workloads also inherit these variables of ours (--mig-env); values never reported."""
    _passed[:] = list(names)


def passed_env_names() -> tuple[str, ...]:
    return tuple(_passed)


def child_env(extra: Mapping[str, str], run_id: str) -> dict[str, str]:
    """An explicit environment for a workload: an allow-list of ours, the variables named by
    --mig-env, plus `extra`."""
    env = {k: os.environ[k] for k in (*INHERITED_ENV, *_passed) if k in os.environ}
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
        self.log_error: str | None = None  # the log could not be written (disk full)
        self.proc: subprocess.Popen[bytes] | None = None
        self._lifeline = -1  # write end of the child's lifeline pipe, open while it lives
        self._reader: threading.Thread | None = None
        # Unique per process: the sweep tells a live workload's processes from leftovers.
        self.marker = f"{os.getpid()}.{next(_serial)}:{name}"

    def start(self) -> "Workload":
        self.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.spec.result_dir.mkdir(parents=True, exist_ok=True)
        # The child's lifeline (workload_contract.LIFELINE_ENV): it inherits the read end only;
        # the write end stays here, non-inheritable, until the child is reaped.
        life_r, life_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                list(self.spec.argv), cwd=str(self.spec.cwd),
                env={**self.spec.env, SPAWNER_MARKER: str(os.getpid()),
                     WORKLOAD_MARKER: self.marker, LIFELINE_ENV: str(life_r),
                     **({KEY_MARKER: _run_key[0]} if _run_key else {})},
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                bufsize=0, pass_fds=(life_r,),
                start_new_session=True,  # own process group: we can always kill all of it
            )
        except FileNotFoundError:
            os.close(life_w)
            # from None: the message says it all; subprocess internals would only bury it.
            raise HarnessError(
                f"{self.name}: cannot start '{self.spec.argv[0]}': executable not found "
                f"(check the harness options or PATH)") from None
        except PermissionError as exc:
            os.close(life_w)
            raise HarnessError(
                f"{self.name}: cannot execute '{self.spec.argv[0]}': {exc.strerror}") from None
        except BaseException:
            os.close(life_w)
            raise
        finally:
            os.close(life_r)
        self._lifeline = life_w
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
        os.close(self._lifeline)  # the child is gone: its lifeline has served
        self._reaped_event.set()
        self._changed.set()

    def _read(self) -> None:
        # Blocking chunk reads: readiness is known the moment its line arrives, no polling.
        # Whole chunks go to the log and through one multi-line regex search, so a workload
        # printing 100,000 lines before its ready line costs C-speed work, not a Python loop.
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        pending = b""
        # A log that cannot be written (disk full) must not kill this thread: readiness,
        # the tail and the pipe (a blocked child) all depend on it. The log stops; noted once.
        try:
            log = open(self.spec.log_path, "ab")
        except OSError as exc:
            log = None
            self.log_error = f"{self.spec.log_path}: {exc.strerror or exc}"
        with log if log is not None else contextlib.nullcontext():
            while True:
                data = os.read(fd, 1 << 16)
                if not data:
                    break
                if log is not None:
                    try:
                        log.write(data)
                        log.flush()
                    except OSError as exc:
                        self.log_error = (f"{self.spec.log_path}: {exc.strerror or exc}; "
                                          "output after that point is not in the log")
                        try:
                            log.close()
                        except OSError:
                            pass
                        log = None
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
        self.tail.extend(printable(line)
                         for line in text[-16384:].splitlines()[-self.tail.maxlen:])

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


# C0/C1 controls but tab, DEL, and Unicode line/bidi controls: a workload's last lines
# reach the terminal in failure messages and must not clear it, retitle it or recolour it.
_UNPRINTABLE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with every control character shown as an escape (ESC -> \\x1b)."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 256
                            else f"\\u{ord(m.group()):04x}", text)


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
    """Our markers (run id, key, spawner, workload) in a process's environment, if readable."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    wanted = tuple(m.encode() + b"=" for m in MARKERS)
    return {item.split(b"=", 1)[0].decode(): item.split(b"=", 1)[1].decode("utf-8", "replace")
            for item in env if item.startswith(wanted)}


def run_marker_of(pid: int) -> str | None:
    """The PYTEST_MIG_RUN_ID in a process's environment, if it has one and we may read it."""
    return markers_of(pid).get(RUN_MARKER)


@dataclass(frozen=True)
class Marked:
    """A live process carrying a run key: what the reaper and the sweep decide on."""

    pid: int
    pgid: int
    start: int | None
    markers: dict[str, str]

    @property
    def run(self) -> str:
        return self.markers.get(RUN_MARKER, "")

    @property
    def key(self) -> str:
        return self.markers.get(KEY_MARKER, "")

    @property
    def workload(self) -> str:
        return self.markers.get(WORKLOAD_MARKER, "").partition(":")[2] or "?"

    def describe(self) -> str:
        return f"pid {self.pid} ({_cmdline(self.pid)}) of workload {self.workload}"


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "?"
    text = " ".join(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text[:120] + ("..." if len(text) > 120 else "")


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, start ticks) of `pid`, or None."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        return f[0], int(f[1]), int(f[2]), int(f[19])
    except (OSError, IndexError, ValueError):
        return None


def keyed_processes() -> list[Marked]:
    """Every live process (not a zombie) whose environment carries a run key."""
    out = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        markers = markers_of(pid)
        if not markers.get(KEY_MARKER):
            continue
        st = _stat(pid)
        if st is None or st[0] in ("Z", "X"):
            continue
        out.append(Marked(pid, st[2], st[3], markers))
    return out


def _ancestry() -> tuple[set[int], set[int]]:
    """Pids and process groups of this process and every ancestor: never signalled."""
    pids, groups = set(), {os.getpgid(0)}
    pid = os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        st = _stat(pid)
        if st is None:
            break
        groups.add(st[2])
        pid = st[1]
    return pids, groups


def _alive_since(pid: int, not_after: int | None) -> bool:
    """True while `pid` runs and started no later than `not_after` (a reused pid is not it)."""
    if not _pid_alive(pid):
        return False
    st = _stat(pid)
    return st is None or not_after is None or st[3] <= not_after


def _pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (a killed worker not yet waited for) is dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    st = _stat(pid)
    return st is None or st[0] not in ("Z", "X")


def _owner_gone(rk: RunKey) -> bool:
    """The run's pytest is gone: its pid is dead, or now names a process started later."""
    return not _pid_alive(rk.owner_pid) or (
        rk.owner_start is not None and start_ticks(rk.owner_pid) != rk.owner_start)


def _kill(victims: list[Marked]) -> list[Marked]:
    """SIGKILL each victim (and its group where it leads one), sparing our own ancestry."""
    pids, groups = _ancestry()
    killed = []
    for m in victims:
        if m.pid in pids:
            continue
        if m.pgid == m.pid and m.pgid not in groups:
            _signal_group(m.pid, signal.SIGKILL)
        try:
            os.kill(m.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(m)
    return killed


def reap_dead_runs(reports_root: Path, current_run: str) -> list[tuple[int, str]]:
    """Kill leftovers of *this* reports root's dead runs: a process is killed only if it
    carries the secret key written in `<reports_root>/<its run>/run.key` and that run's owning
    pytest (pid and start time) is gone. Another project's, an inherited variable's or our
    own ancestry's processes are never touched. Returns (pid, run id) of each."""
    keys: dict[str, RunKey | None] = {}
    victims = []
    for m in keyed_processes():
        if not m.run or m.run == current_run or "/" in m.run or m.run in (".", ".."):
            continue
        if m.run not in keys:
            keys[m.run] = read_key(reports_root / m.run)
        rk = keys[m.run]
        if rk is not None and secrets.compare_digest(rk.key, m.key) and _owner_gone(rk):
            victims.append(m)
    return [(m.pid, m.run) for m in _kill(victims)]


def reap_orphans(current_run: str, key: str) -> list[tuple[int, str]]:
    """Kill this run's workloads whose spawning pytest (a killed xdist worker) is gone."""
    victims = []
    for m in keyed_processes():
        if m.run != current_run or not secrets.compare_digest(m.key, key):
            continue
        spawner = m.markers.get(SPAWNER_MARKER, "")
        if spawner.isdigit() and int(spawner) != m.pid and not _alive_since(int(spawner), m.start):
            victims.append(m)
    return [(m.pid, m.run) for m in _kill(victims)]


def sweep_escaped(current_run: str, key: str, spawner: int | None) -> list[str]:
    """Kill processes of this run (its key) spawned by `spawner` (None: any) that belong to no
    live workload: what a stopped workload left behind (a setsid'd grandchild ignoring
    SIGTERM). Returns a description of each killed process."""
    with _live_lock:
        live = {w.marker for w in _live}
    victims = [m for m in keyed_processes()
               if m.run == current_run and secrets.compare_digest(m.key, key)
               and (spawner is None or m.markers.get(SPAWNER_MARKER) == str(spawner))
               and m.markers.get(WORKLOAD_MARKER) not in live]
    return [m.describe() for m in _kill(victims)]


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
    """SIGTERM and SIGHUP (a closed terminal or ssh session) unwind like Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
        signal.signal(signal.SIGHUP, _on_sigterm)


atexit.register(stop_all)
