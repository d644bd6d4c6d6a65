"""The test kit: what the plugin's end-to-end tests share, reached through fixtures only.

- `mini` / `mini_project`: a pytester project holding a sample suite from tests/data/suites/
  (suites/suite.yaml + suites/test_<suite>.py), the fake workload's script, a run helper
  (`run`, `args`, `popen`) and what a run left (run folders, results.json, records).
- `freezer`: freeze(pid) puts a process in a frozen cgroup (v1 freezer, else cgroup v2), as
  a process stuck in the GPU driver is: SIGKILL waits until it is thawed (at teardown, when
  every frozen process is killed). Skips, saying why, where no writable freezer exists.
- Leftover scanning: `leftovers()` lists live processes carrying one of the project's run
  markers (PYTEST_MIG_RUN_ID) or in a process group recorded by a workload's pid file;
  `live_pids()` for a single pid. Both read /proc.

Rules: tests never import this module (pytest loads it; fixtures hand its objects out); the
sample suites and test modules are data files, varied per test with `edit_suite` (which fails
when the text it replaces is not there); every project's leftovers are killed at teardown as
hygiene only: a test asserts `leftovers() == []` where it matters.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
SAMPLES = TESTS / "data" / "suites"
FAKE = TESTS / "programs" / "fake_workload.py"
MARKER = b"PYTEST_MIG_RUN_ID="
# The flags most end-to-end runs use: a short allowance for the main's start (backgrounds'
# auto duration), and every outcome in the short summary.
DEFAULT_FLAGS = ("--mig-main-startup=1.5", "-rA")


@dataclass
class Proc:
    pid: int
    state: str
    ppid: int
    pgid: int
    marker: str | None

    def __str__(self) -> str:
        return f"pid {self.pid} (pgid {self.pgid}, ppid {self.ppid}, run {self.marker})"


def processes() -> list[Proc]:
    """Every live (non-zombie) process we can read, with its group and run marker."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            env = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        marker = next((e[len(MARKER):].decode("utf-8", "replace") for e in env
                       if e.startswith(MARKER)), None)
        out.append(Proc(int(entry.name), fields[0], int(fields[1]), int(fields[2]), marker))
    return [p for p in out if p.state not in ("Z", "X")]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class MiniProject:
    """A pytester project holding one sample suite; runs it and inspects what it left."""

    fake = FAKE

    def __init__(self, pytester: pytest.Pytester, suite: str = "mini", module: str = "hetero",
                 flags: Sequence[str] = DEFAULT_FLAGS) -> None:
        self.pytester = pytester
        self.path = Path(pytester.path)
        self.suites = pytester.mkdir("suites")
        self.suite_file = self.suites / "suite.yaml"
        self.suite_file.write_text((SAMPLES / f"{suite}.yaml").read_text())
        (self.suites / f"test_{suite}.py").write_text((SAMPLES / f"{module}.py").read_text())
        self.script = self.path / "script.json"
        self.script.write_text("{}")
        self.flags = list(flags)
        self.program: str | None = None  # the fake workload's program part; None: python FAKE
        self.command: str | None = None  # a whole --mig-command in place of the fake workload's
        self.harness: list[str] | None = None  # harness options in place of --harness=command

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    def edit_suite(self, old: str, new: str) -> None:
        text = self.suite_file.read_text()
        assert old in text, f"{old!r} is not in the sample suite {self.suite_file}"
        self.suite_file.write_text(text.replace(old, new))

    def set_script(self, script: dict[str, Any]) -> None:
        self.script.write_text(json.dumps(script))

    def fake_command(self) -> str:
        """--mig-command for the fake workload; every workload records its pid beside its log."""
        prog = self.program or f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))}"
        return (f"{prog} --script {self.script} --role {{role}} --name {{name}} "
                "--log-dir {log_dir} --min-duration-ms {min_duration_ms} --pid-file {log_dir}.pid")

    def args(self, *extra: str, flags: Sequence[str] | None = None) -> list[str]:
        harness = self.harness if self.harness is not None else [
            "--harness=command", f"--mig-command={self.command or self.fake_command()}"]
        return ["suites", "--mig-backend=simulated", *harness, *self.flags_or(flags),
                "-p", "no:cacheprovider", *extra]

    def flags_or(self, flags: Sequence[str] | None) -> list[str]:
        return list(self.flags if flags is None else flags)

    def run(self, script: dict[str, Any] | None = None, *extra: str, timeout: float = 240):
        """pytest on the project in a subprocess (the script, if given, replaces the last)."""
        if script is not None:
            self.set_script(script)
        return self.pytester.runpytest_subprocess(*self.args(*extra), timeout=timeout)

    def popen(self, script: dict[str, Any], *extra: str, env: dict[str, str] | None = None,
              flags: Sequence[str] | None = None) -> subprocess.Popen[bytes]:
        """pytest in the background (for signals): output in <project>/pytest.out."""
        self.set_script(script)
        out = open(self.path / "pytest.out", "wb")
        try:
            # xdist workers ignore SIGINT and children inherit that; a terminal's pytest does
            # not, so give the child the default disposition (Python then raises
            # KeyboardInterrupt on Ctrl-C, as it does for a user).
            return subprocess.Popen([sys.executable, "-m", "pytest",
                                     *self.args(*extra, flags=flags)],
                                    cwd=self.path, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, preexec_fn=_default_sigint)
        finally:
            out.close()

    def output(self) -> str:
        return (self.path / "pytest.out").read_text(errors="replace")

    # -- what a run left -------------------------------------------------------------------

    def run_dirs(self) -> list[Path]:
        if not self.reports.exists():
            return []
        return sorted((p for p in self.reports.iterdir() if p.is_dir()),
                      key=lambda p: p.stat().st_mtime)

    def run_dir(self) -> Path:
        dirs = self.run_dirs()
        assert len(dirs) == 1, f"expected one run under {self.reports}: {dirs}"
        return dirs[0]

    def results(self, run_dir: Path | None = None) -> dict[str, Any]:
        return json.loads(((run_dir or self.run_dir()) / "results.json").read_text())

    def records(self, run_dir: Path | None = None) -> dict[str, dict[str, Any]]:
        return {t["case"]: t for t in self.results(run_dir)["tests"]}

    def gpu_state(self) -> dict[str, Any]:
        return json.loads((self.run_dir() / "simulated-gpu.json").read_text())

    def recorded_pids(self) -> set[int]:
        return {int(p.read_text()) for p in self.reports.glob("*/*/*.pid") if p.read_text()}

    @staticmethod
    def live_pids() -> set[int]:
        return {p.pid for p in processes()}

    def leftovers(self) -> list[str]:
        """Processes of this project's runs still alive: by run marker and by process group."""
        runs = {d.name for d in self.run_dirs()}
        groups = self.recorded_pids()
        me = os.getpid()
        return [f"{p} (by {'marker' if p.marker in runs else 'group'})" for p in processes()
                if p.pid != me and (p.marker in runs or p.pgid in groups or p.pid in groups)]

    def wait_no_leftovers(self, timeout_s: float = 10.0) -> list[str]:
        """Leftovers after up to `timeout_s` (a SIGKILL is not instant for the scan)."""
        deadline = time.monotonic() + timeout_s
        left = self.leftovers()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.leftovers()
        return left

    def kill_leftovers(self) -> None:
        """Test hygiene for the cases where leftovers are the expected fault."""
        runs, groups = {d.name for d in self.run_dirs()}, self.recorded_pids()
        for p in processes():
            if p.pid != os.getpid() and (p.pgid in groups or p.marker in runs):
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def mini_project(pytester: pytest.Pytester,
                 monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., MiniProject]]:
    """Make the project: mini_project(suite="mini", module="hetero", flags=DEFAULT_FLAGS)."""
    # A run id of its own per inner session, so concurrent xdist workers' children stay apart.
    monkeypatch.delenv("PYTEST_MIG_RUN_ID", raising=False)
    made: list[MiniProject] = []

    def make(*args: Any, **kwargs: Any) -> MiniProject:
        made.append(MiniProject(pytester, *args, **kwargs))
        return made[-1]

    yield make
    for project in made:
        project.kill_leftovers()  # hygiene only: tests assert there were none where it matters


@pytest.fixture
def mini(mini_project: Callable[..., MiniProject]) -> MiniProject:
    """The mini suite (resnet50 Offline, bert Offline and Server; three backgrounds)."""
    return mini_project()


class Freezer:
    """Processes frozen in a cgroup of their own (see the module docstring: `freezer`)."""

    V1 = Path("/sys/fs/cgroup/freezer")
    V2 = Path("/sys/fs/cgroup/unified")

    def __init__(self, name: str) -> None:
        self.dir: Path | None = None
        for root, state in ((self.V1, "freezer.state"), (self.V2, "cgroup.freeze"),
                            (Path("/sys/fs/cgroup"), "cgroup.freeze")):
            if not (root / state).exists() and not (root / "cgroup.procs").exists():
                continue
            try:
                (root / name).mkdir()
            except OSError:
                continue
            if (root / name / state).exists():
                self.dir, self.state = root / name, state
                break
            (root / name).rmdir()
        self.pids: list[int] = []

    def freeze(self, pid: int) -> None:
        assert self.dir is not None
        (self.dir / "cgroup.procs").write_text(str(pid))
        self.pids.append(pid)
        (self.dir / self.state).write_text("FROZEN" if self.state == "freezer.state" else "1")

    def thaw_and_kill(self) -> None:
        if self.dir is None:
            return
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        (self.dir / self.state).write_text("THAWED" if self.state == "freezer.state" else "0")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                self.dir.rmdir()
                return
            except OSError:  # still holds a dying process
                time.sleep(0.05)


@pytest.fixture
def freezer(request: pytest.FixtureRequest) -> Iterator[Freezer]:
    """freezer.freeze(pid): the process is frozen until teardown (then killed)."""
    f = Freezer(f"pytest-mig-test-{os.getpid()}-{time.monotonic_ns()}")
    if f.dir is None:
        pytest.skip("no writable cgroup freezer here (needs root and a freezer hierarchy)")
    yield f
    f.thaw_and_kill()
