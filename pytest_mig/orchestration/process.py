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

Stops are bounded (stop_workloads): SIGTERM goes to every workload at once, they share one
grace, then SIGKILL goes to every group, and the wait after it is bounded (KILL_WAIT_S). A
process that still will not die (frozen by a cgroup freezer, stuck in the GPU driver: state
D) is named with its state from /proc (process_state) and abandoned, so the reports are
still written; it stays out of the sweeps. What a stop waits for is said (`announce`).

Whatever the harness, a guardian (orchestration/guardian.py, one per pytest process, started
with the first workload) learns each workload's process group and stops every group still
running once this process is gone (kill -9, the OOM killer): the lifeline below is the
built-in workload's own way, the guardian everyone's.

A helper that escaped its group (double fork, setsid, a clean environment: no marker to find
it by) but still holds the workload's output pipe after the workload was reaped is found by
that pipe (/proc/*/fd), killed, and named in `escaped` for the case's warning.

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

KILL_WAIT_S = 5.0  # after SIGKILL: how long a process may take to go before it is abandoned
# An exited child is reaped by its waiter thread right after `running()` turns False; a
# `finished()` read in between would say 'still running: no exit code' (seen under CI load).
REAP_WAIT_S = 5.0
ANNOUNCE_AFTER_S = 1.0  # a stop still waiting after this long says what it waits for

_guardian: list = []  # [write fd, Popen] of this process's guardian, once started
_guardian_lock = threading.Lock()
_guardian_note: list[str] = [""]  # the file the guardian notes its kills in (orphans.log)
escaped: list[str] = []  # helpers found holding a reaped workload's pipe, killed (drained by
# take_escaped)

_live: set["Workload"] = set()
_abandoned: set[str] = set()  # markers of workloads that would not die (kept out of sweeps)
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
        self.stuck: str = ""  # would not die after SIGKILL: its state, then abandoned
        self.proc: subprocess.Popen[bytes] | None = None
        self._lifeline = -1  # write end of the child's lifeline pipe, open while it lives
        self._reader: threading.Thread | None = None
        self._pipe_ino = 0  # inode of its output pipe: an escaped helper may hold it
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
        ticks = start_ticks(self.proc.pid)
        _guard(f"+{self.proc.pid} {ticks if ticks is not None else 0}")
        self._pipe_ino = os.fstat(self.proc.stdout.fileno()).st_ino if self.proc.stdout else 0
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
        _guard(f"-{self.proc.pid}")
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
        """SIGTERM the whole group, then SIGKILL after `grace`; reaps, or abandons a process
        that will not die (see stop_workloads). The exit code, None when abandoned.

        Only a child still alive when stop() decides is signalled and marked
        `stopped_by_us`; one that had already exited keeps its own exit as its story.
        """
        stop_workloads([self], grace)
        return self.returncode if self._reaped_event.is_set() else None

    def signal_stop(self, sig: int = signal.SIGTERM) -> None:
        """Signal the group if the child is alive now (it is then `stopped_by_us`)."""
        if self.proc is None:
            return
        with self._state:
            if not self._exited_now():
                if not self.stopped_by_us:
                    self.stopped_by_us = True
                    self.stop_signalled_at = time.time()
                _signal_group(self.proc.pid, sig)

    def _abandon(self) -> None:
        assert self.proc is not None
        self.stuck = (f"pid {self.proc.pid} would not die {KILL_WAIT_S:g} s after SIGKILL "
                      f"({process_state(self.proc.pid)}); abandoned")
        with _live_lock:
            _live.discard(self)
            _abandoned.add(self.marker)

    def _reaped(self, code: int) -> int:
        """Bookkeeping once the child is reaped: end time, drained output, unregistered."""
        if self.ended_at is None:
            self.ended_at = time.time()
        if self._reader is not None:
            self._reader.join(timeout=2)
            if self._reader.is_alive():  # someone still holds its output pipe: escaped
                found = _kill_pipe_holders(self._pipe_ino, self.name)
                escaped.extend(found)
                self._reader.join(timeout=3)
        self._forget()
        return code

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def finished(self) -> Finished:
        if self._exited:  # its waiter thread saw the exit and is reaping it: take the code it records
            self._reaped_event.wait(timeout=REAP_WAIT_S)
        code = self.returncode
        return Finished(name=self.name, started_at=self.started_at, ready_at=self.ready_at,
                        ended_at=self.ended_at if code is not None else None, exit_code=code,
                        log_path=self.spec.log_path, stopped_by_us=self.stopped_by_us,
                        stop_signalled_at=self.stop_signalled_at, stuck=self.stuck,
                        log_error=self.log_error or "")

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


def set_guardian_note(path: str | Path) -> None:
    """Where the guardian notes the groups it kills (the run's orphans.log)."""
    _guardian_note[0] = str(path)


def _guard(line: str) -> None:
    """Tell the guardian (started on first use) a line of its protocol; never raises."""
    with _guardian_lock:
        try:
            if not _guardian:
                r, w = os.pipe()
                try:
                    env = {k: v for k, v in os.environ.items() if k not in MARKERS}
                    import sys
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "pytest_mig.orchestration.guardian",
                         _guardian_note[0]], stdin=r, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, env=env, start_new_session=True)
                finally:
                    os.close(r)
                _guardian[:] = [w, proc]
            os.write(_guardian[0], (line + "\n").encode("ascii"))
        except OSError:
            pass  # no guardian: the lifeline and the next run's reaper remain


def _kill_pipe_holders(ino: int, name: str) -> list[str]:
    """SIGKILL every other process holding pipe `ino` (a reaped workload's output pipe)."""
    if not ino:
        return []
    target, me, found = f"pipe:[{ino}]", os.getpid(), []
    pids, _ = _ancestry()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in pids or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) != target:
                    continue
            except OSError:
                continue
            pid = int(entry.name)
            text = (f"pid {pid} ({_cmdline(pid)}), escaped from workload {name} (it still held "
                    "its output pipe after the workload ended)")
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            found.append(text)
            break
    return found


def take_escaped() -> list[str]:
    """The escaped helpers killed since the last call (for a warning)."""
    out, escaped[:] = list(escaped), []
    return out


def _stderr_line(line: str) -> None:
    import sys
    try:
        print(line, file=sys.__stderr__, flush=True)
    except (OSError, ValueError, AttributeError):
        pass


_announcer = [_stderr_line]


def announce_with(say) -> None:
    """Where stops say what they wait for (the terminal reporter's write_line; stderr)."""
    _announcer[:] = [say or _stderr_line]


def announce(line: str) -> None:
    try:
        _announcer[0](line)
    except Exception:  # noqa: BLE001 - a closed terminal must not stop a stop
        _stderr_line(line)


def _names(ws: list["Workload"]) -> str:
    return ", ".join(f"{w.name} (pid {w.pid})" for w in ws)


def stop_workloads(workloads: list["Workload"], grace: float, kill_wait: float = KILL_WAIT_S,
                   say=None) -> list["Workload"]:
    """Stop many workloads in bounded time: SIGTERM to all at once, one shared `grace`,
    SIGKILL to every group, at most `kill_wait` more. Returns those that would not die
    (each `stuck` says its state); they are abandoned, the rest are reaped."""
    say = say or announce
    ws = [w for w in workloads if w.proc is not None]
    for w in ws:
        w.signal_stop(signal.SIGTERM)
    start = time.monotonic()

    def wait_all(pending: list[Workload], until: float, what: str) -> list[Workload]:
        told = False
        while True:
            pending = [w for w in pending if not w._reaped_event.is_set()]
            now = time.monotonic()
            if not pending or now >= until:
                return pending
            if not told and now - start >= ANNOUNCE_AFTER_S:
                told = True
                say(f"pytest-mig: waiting up to {until - now:.0f} s for {len(pending)} "
                    f"workload(s) to stop after {what}: {_names(pending)}")
            pending[0]._reaped_event.wait(
                until - now if told else min(until - now, start + ANNOUNCE_AFTER_S - now))

    pending = wait_all(ws, start + grace, "SIGTERM")
    for w in ws:  # grandchildren may outlive the leader: every group goes
        _signal_group(w.proc.pid, signal.SIGKILL)
    pending = wait_all(pending, time.monotonic() + kill_wait, "SIGKILL")
    for w in ws:
        if w._reaped_event.is_set():
            w._reaped(w.returncode)
    for w in pending:
        w._abandon()
        say(f"pytest-mig: workload {w.name}: {w.stuck}; it may hold its GPU slice until "
            "it is freed (thaw its cgroup, or reset the GPU), then kill it")
    return pending


def stop_all(grace: float = 2.0) -> int:
    """Stop every workload still registered (bounded); returns how many were running."""
    with _live_lock:
        live = list(_live)
    stop_workloads(live, grace)
    return len(live)


def signal_all(sig: int) -> int:
    """`sig` to every registered workload's group now (for signal handlers: no lock waited
    for); returns how many were signalled."""
    try:
        live = list(_live)
    except RuntimeError:  # changed size under us: another thread is registering
        return 0
    for w in live:
        if w.proc is None:
            continue
        if w._state.acquire(blocking=False):
            try:
                if not w._exited_now():
                    if not w.stopped_by_us:
                        w.stopped_by_us = True
                        w.stop_signalled_at = time.time()
                    _signal_group(w.proc.pid, sig)
            finally:
                w._state.release()
        else:  # the main thread is deciding a stop of this one right now
            _signal_group(w.proc.pid, sig)
    return len(live)


def oom_record(pid: int, timeout_s: float = 0.5) -> str:
    """The kernel's OOM-kill record of `pid` read from /dev/kmsg ('' when there is none or the
    log cannot be read); bounded by `timeout_s` whatever the device does."""
    found: list[str] = []

    def scan() -> None:
        try:
            fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            return
        try:
            for _ in range(100000):
                try:
                    rec = os.read(fd, 8192)
                except BlockingIOError:
                    break
                except OSError:  # EPIPE: a record overwritten while we read
                    continue
                if not rec:
                    break
                text = rec.decode("utf-8", "replace").split(";", 1)[-1].strip()
                if f"Killed process {pid} " in text or (
                        "oom-kill" in text and f",pid={pid}," in text + ","):
                    found.append(printable(text[:300]))
        finally:
            os.close(fd)

    t = threading.Thread(target=scan, name="mig-oom-record", daemon=True)
    t.start()
    t.join(timeout_s)
    return next((f for f in reversed(found) if "Killed process" in f), found[-1] if found else "")


_STATE_WORDS = {
    "D": "D: stuck in the kernel or driver (uninterruptible sleep)",
    "T": "T: stopped (SIGSTOP or a job-control signal)",
    "t": "t: stopped by a debugger (ptrace)",
    "Z": "Z: a zombie, exited but not reaped",
    "X": "X: dead",
    "R": "R: running", "S": "S: sleeping", "I": "I: idle",
}


def process_state(pid: int) -> str:
    """A process's state from /proc, in words (`D: stuck in the kernel or driver ...`), with
    the cgroup freezer that froze it where one did."""
    st = _stat(pid)
    if st is None:
        return "gone"
    words = _STATE_WORDS.get(st[0], st[0])
    frozen = _frozen_by(pid)
    return f"{words}; frozen by the cgroup freezer {frozen}" if frozen else words


def _frozen_by(pid: int) -> str:
    """The freezer cgroup holding `pid` frozen (v1 freezer.state or v2 cgroup.freeze), or ''."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "freezer" in controllers.split(","):
            state = Path("/sys/fs/cgroup/freezer") / path.lstrip("/") / "freezer.state"
            try:
                if state.read_text().strip() in ("FROZEN", "FREEZING"):
                    return str(state.parent)
            except OSError:
                pass
        elif controllers == "":
            for root in (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup")):
                freeze = root / path.lstrip("/") / "cgroup.freeze"
                try:
                    if freeze.read_text().strip() == "1":
                        return str(freeze.parent)
                except OSError:
                    continue
    return ""


def markers_of(pid: int) -> dict[str, str]:
    """Our markers (run id, key, spawner, workload) in a process's environment, if readable."""
    try:
        env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return {}
    wanted = tuple(m.encode() + b"=" for m in MARKERS)
    return {item.split(b"=", 1)[0].decode(): item.split(b"=", 1)[1].decode("utf-8", "replace")
            for item in env if item.startswith(wanted)}


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
        live = {w.marker for w in _live} | _abandoned
    victims = [m for m in keyed_processes()
               if m.run == current_run and secrets.compare_digest(m.key, key)
               and (spawner is None or m.markers.get(SPAWNER_MARKER) == str(spawner))
               and m.markers.get(WORKLOAD_MARKER) not in live]
    return [m.describe() for m in _kill(victims)]


received_signal: int | None = None  # the signal that interrupted this run, if any
_signals_seen = [0]
_prior_handlers: dict[int, object] = {}


def interruption() -> str:
    """'SIGTERM' (etc.) when a signal interrupted this run, else ''."""
    return signal.Signals(received_signal).name if received_signal else ""


def _on_signal(signum, frame) -> None:
    """SIGTERM, SIGHUP and SIGINT (a CI job cancelled, `kill`, Ctrl-C): the first tells every
    workload to stop at once (a supervisor's SIGKILL may follow within seconds: `docker stop`,
    Slurm, Kubernetes) and unwinds like Ctrl-C so every finally runs and the reports are
    written. A second one during that cleanup kills every workload group and lets the
    cleanup finish (no second traceback); a third gives up on the cleanup."""
    global received_signal
    _signals_seen[0] += 1
    name = signal.Signals(signum).name
    if _signals_seen[0] == 1:
        received_signal = signum
        signal_all(signal.SIGTERM)
        _escalate.set()  # SIGKILL for what is left after INTERRUPTED_GRACE_S, wherever we are
        raise KeyboardInterrupt(f"pytest-mig: received signal {signum}")
    if _signals_seen[0] == 2:
        signal_all(signal.SIGKILL)
        _stderr_line(f"pytest-mig: {name} again during cleanup: every workload killed; "
                     "finishing the reports (send it once more to give up on them)")
        return
    raise KeyboardInterrupt(f"pytest-mig: received signal {signum} a third time")


INTERRUPTED_GRACE_S = 4.0  # docker stop, Slurm and CI cancels SIGKILL 10 s after SIGTERM
_escalate = threading.Event()  # set by the first signal only (no lock of anyone else's)


def _escalator() -> None:
    """Started before any signal: once the first one came, every workload group still there
    INTERRUPTED_GRACE_S later gets SIGKILL, however long pytest's own unwinding takes."""
    _escalate.wait()
    time.sleep(INTERRUPTED_GRACE_S)
    if received_signal is not None:
        signal_all(signal.SIGKILL)


def install_sigterm_handler() -> None:
    """SIGTERM, SIGHUP (a closed terminal or ssh session) and SIGINT, where Python's own
    handler has it, go to _on_signal; uninstall_signal_handlers puts the prior ones back."""
    if threading.current_thread() is not threading.main_thread():
        return
    global received_signal
    received_signal, _signals_seen[0] = None, 0
    if not any(t.name == "pytest-mig-escalator" for t in threading.enumerate()):
        _escalate.clear()
        threading.Thread(target=_escalator, name="pytest-mig-escalator", daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        prior = signal.getsignal(sig)
        if sig == signal.SIGINT and prior is not signal.default_int_handler:
            continue  # an xdist worker ignores SIGINT; someone else's handler stays
        _prior_handlers.setdefault(sig, prior)
        signal.signal(sig, _on_signal)


def uninstall_signal_handlers() -> None:
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, prior in list(_prior_handlers.items()):
        if signal.getsignal(sig) is _on_signal:
            signal.signal(sig, prior)
        del _prior_handlers[sig]


atexit.register(stop_all)
