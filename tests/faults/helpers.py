"""Shared pieces of the fault matrix: a two-case suite, the fake workload's command line, and
the checks every fault ends with (no process left, leases free, GPU as found, logs kept)."""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"
FAKE = PROGRAMS / "fake_workload.py"
MARKER = b"PYTEST_MIG_RUN_ID="

# The faulty case comes first (resnet50), a healthy one after it (bert) in the same session.
FAULTY = "resnet50-Offline-1g.10gb-performance"
HEALTHY = "bert-Offline-1g.10gb-performance"
FAULTY_DIR = f"test_hetero_{FAULTY}"
HEALTHY_DIR = f"test_hetero_{HEALTHY}"
BGS = ("bg1-bert", "bg2-dlrm", "bg3-rnnt")  # the background workloads of every case

SUITE = textwrap.dedent("""
    suite: faults
    class: datacenter
    benchmarks:
      resnet50: {scenarios: [Offline], accuracy: 0.99}
      bert: {scenarios: [Offline], accuracy: 0.99}
    gpus:
      A100-SXM4-80GB: {profiles: [1g.10gb], slots: 7}
    modes: [performance]
    background:
      set: [bert, dlrm, rnnt]
      lifetime: per-test
    run_profiles:
      smoke:
        min_duration_ms: 400
        min_query_count: 1
        start_time_buffer_s: 4
        end_time_buffer_min_s: 0.2
        background_min_duration_ms: auto
        sample_count: 16
    default_run_profile: smoke
""")

TEST = textwrap.dedent("""
    def test_hetero(mig_case, hetero):
        outcome = hetero.run(mig_case)
        assert outcome.valid, outcome.why_invalid()
        assert outcome.background_healthy, outcome.why_unhealthy()
""")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def fake_command(script: Path, program: str | None = None) -> str:
    """--mig-command for the fake workload; every workload records its pid beside its log."""
    prog = program or f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE))}"
    return (f"{prog} --script {script} --role {{role}} --name {{name}} --log-dir {{log_dir}} "
            "--min-duration-ms {min_duration_ms} --pid-file {log_dir}.pid")


def base_args(command: str) -> list[str]:
    return ["suites", "--mig-backend=simulated", "--harness=command", f"--mig-command={command}",
            "--mig-main-startup=1.5", "--mig-lease-timeout=20", "-p", "no:cacheprovider", "-rA"]


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


class Project:
    """A pytester project holding the fault suite; runs it and inspects what it left."""

    def __init__(self, pytester) -> None:
        self.pytester = pytester
        self.path = Path(pytester.path)
        d = pytester.mkdir("suites")
        (d / "suite.yaml").write_text(SUITE)
        (d / "test_faults.py").write_text(TEST)
        self.script = self.path / "script.json"
        self.script.write_text("{}")
        self.program: str | None = None

    @property
    def reports(self) -> Path:
        return self.path / "reports"

    def set_script(self, script: dict[str, Any]) -> None:
        self.script.write_text(json.dumps(script))

    def args(self, *extra: str) -> list[str]:
        return [*base_args(fake_command(self.script, self.program)), *extra]

    def run(self, script: dict[str, Any] | None = None, *extra: str, timeout: float = 240):
        if script is not None:
            self.set_script(script)
        return self.pytester.runpytest_subprocess(*self.args(*extra), timeout=timeout)

    def popen(self, script: dict[str, Any], *extra: str,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """pytest in the background (for signals): output in <project>/pytest.out."""
        self.set_script(script)
        out = open(self.path / "pytest.out", "wb")
        try:
            # xdist workers ignore SIGINT and children inherit that; a terminal's pytest does
            # not, so give the child the default disposition (Python then raises
            # KeyboardInterrupt on Ctrl-C, as it does for a user).
            return subprocess.Popen([sys.executable, "-m", "pytest", *self.args(*extra)],
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

    def records(self, run_dir: Path | None = None) -> dict[str, dict[str, Any]]:
        data = json.loads(((run_dir or self.run_dir()) / "results.json").read_text())
        return {t["case"]: t for t in data["tests"]}

    def recorded_pids(self) -> set[int]:
        return {int(p.read_text()) for p in self.reports.glob("*/*/*.pid") if p.read_text()}

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
        for p in processes():
            if p.pgid in self.recorded_pids() or p.marker in {d.name for d in self.run_dirs()}:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def assert_clean(project: Project, run_dir: Path | None = None) -> None:
    """Nothing of the run remains: no process, no held lease, the GPU as the run found it."""
    assert project.wait_no_leftovers() == []
    run_dir = run_dir or project.run_dir()
    assert_leases_free(run_dir)
    assert_gpu_as_found(run_dir)


def assert_leases_free(run_dir: Path) -> None:
    locks = sorted((run_dir / "locks").glob("gpu-*.lock"))
    assert locks, f"no lease lock files under {run_dir}/locks"
    for lock in locks:
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AssertionError(f"{lock} is still held ({lock.read_text().strip()})")
            fcntl.flock(fh, fcntl.LOCK_UN)


def gpu_state(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "simulated-gpu.json").read_text())


def assert_gpu_as_found(run_dir: Path) -> None:
    """The simulated default: 7 x 1g.10gb made by the simulator, none by the run."""
    (gpu,) = gpu_state(run_dir)["gpus"]
    assert sorted((gi["profile_id"], gi["start"], len(gi["compute_instances"]))
                  for gi in gpu["gpu_instances"]) == [(19, s, 1) for s in range(7)]
    own = run_dir / "mig-ownership.json"
    assert not own.exists() or json.loads(own.read_text())["instances"] == []


def assert_logs_kept(run_dir: Path, test_dir: str, names: tuple[str, ...]) -> None:
    """The case's progress log and the logs of each named workload are in reports/."""
    d = run_dir / test_dir
    assert (d / "progress.log").read_text(), f"no progress.log in {d}"
    for name in names:
        log = d / f"{name}.log"
        assert log.exists() and "[fake] warming up 0" in log.read_text(), f"{log} missing/empty"


def case_dirs(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.is_dir() and p.name.startswith("test_"))
