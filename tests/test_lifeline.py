"""A workload outlives no run: when the pytest process that started it is SIGKILLed (no stop,
no atexit), the built-in workload reads end of file on its lifeline and stops itself."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pytest_mig.workload.cli import LIFELINE_NOTE, watch_lifeline
from pytest_mig.workload_contract import LIFELINE_ENV

REPO = Path(__file__).resolve().parents[1]

# A stand-in for the pytest process: starts one workload through process.Workload, waits for
# its ready line, prints the child's pid, then idles until killed.
LAUNCHER = """
import sys, time
from pathlib import Path
from pytest_mig.orchestration.process import Workload
from pytest_mig.types import LaunchSpec
from pytest_mig.workload_contract import MODULE

out = Path(sys.argv[1])
argv = [sys.executable, "-m", MODULE, "--log-dir", str(out / "logs"), "--benchmark", "resnet50",
        "--scenario", "Offline", "--mode", "performance", "--min-duration-ms", "200",
        "--device", "cpu", "--until-stopped"]
spec = LaunchSpec(argv=tuple(argv), env={"PATH": "/usr/bin:/bin"},
                  cwd=out, ready_pattern=r"running actual test\\.$", log_path=out / "bg.log",
                  result_dir=out / "logs")
w = Workload("bg1", spec).start()
assert w.wait_ready(120), spec.log_path.read_text()
print(w.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _launch(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(tmp_path)], cwd=REPO,
                                stdout=subprocess.PIPE, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
    assert launcher.stdout is not None
    line = launcher.stdout.readline()
    assert line.strip().isdigit(), f"launcher printed {line!r}; log: {(tmp_path / 'bg.log').read_text()}"
    return launcher, int(line)


def test_sigkilled_launcher_leaves_no_workload(tmp_path):
    launcher, child = _launch(tmp_path)
    try:
        assert _alive(child)
        os.kill(launcher.pid, signal.SIGKILL)  # no stop(), no atexit: only the lifeline is left
        launcher.wait()
        deadline = time.monotonic() + 30
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = (tmp_path / "bg.log").read_text(errors="replace")
        assert not _alive(child), f"workload {child} outlived its launcher:\n{log[-2000:]}"
        # Its output's reader died with the launcher: the workload leaves its word in its log dir.
        note = (tmp_path / "logs" / LIFELINE_NOTE).read_text()
        assert note.endswith("is gone: stopped\n"), note
    finally:
        if _alive(child):
            os.kill(child, signal.SIGKILL)


def test_lifeline_is_only_watched_when_given():
    assert watch_lifeline({}) is None  # run by hand: nothing to watch
    r, _w = os.pipe()  # the write end stays open for this process's life: no end of file here
    thread = watch_lifeline({LIFELINE_ENV: str(r)})
    assert thread is not None and thread.daemon and thread.is_alive()
