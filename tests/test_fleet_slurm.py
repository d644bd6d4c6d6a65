"""deploy/slurm on a real one-host Slurm cluster: munged, slurmctld and slurmd started from a
generated slurm.conf in a tmp folder (three GRES GPUs on device nodes made there), a 3-task
array running 3 shards of the smoke suite on the simulated GPU, the merge as a dependent job;
the merged report must hold every case exactly once. Every daemon is stopped at the end.
Skipped only when the Slurm/munge binaries are absent (.ci/run installs them)."""
from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fleet_helpers import REPO, SMOKE_CASES, smoke_args, smoke_project

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo", "scancel")
NODE = "fleetnode"
GPUS = 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _slurm_conf(d: Path, user: str, host: str) -> str:
    return "\n".join([
        "ClusterName=pytestmig", f"SlurmctldHost={host}(127.0.0.1)",
        f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
        f"SlurmUser={user}", f"SlurmdUser={user}",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={d / 'munge.sock'}",
        f"StateSaveLocation={d / 'state'}", f"SlurmdSpoolDir={d / 'spool'}",
        f"SlurmctldPidFile={d / 'slurmctld.pid'}", f"SlurmdPidFile={d / 'slurmd.pid'}",
        f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
        # no cgroups in a CI container: plain process tracking, no task plugin, no accounting
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/none", "MpiDefault=none",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "SchedulerParameters=sched_interval=1",
        # the node may claim more CPUs than the 2-core CI machine has: three shards at once
        "SlurmdParameters=config_overrides", "ReturnToService=2", "GresTypes=gpu",
        "MinJobAge=600", "KillWait=5", "Waittime=0", "InactiveLimit=0",
        f"NodeName={NODE} NodeHostname={host} NodeAddr=127.0.0.1 CPUs=6 Gres=gpu:{GPUS} "
        "State=UNKNOWN",
        f"PartitionName=gpu Nodes={NODE} Default=YES MaxTime=INFINITE State=UP", ""])


def _gpu_files(d: Path) -> list[Path]:
    """GRES device files: character devices (those of /dev/null) where mknod is allowed."""
    dev = d / "dev"
    dev.mkdir()
    files = [dev / f"nvidia{i}" for i in range(GPUS)]
    for f in files:
        try:
            os.mknod(f, 0o666 | 0o020000, os.makedev(1, 3))
        except OSError:
            f.touch()  # slurmd logs that it is no device, and still counts it
    return files


class Cluster:
    def __init__(self, d: Path) -> None:
        self.d = d
        self.procs: list[subprocess.Popen] = []
        self.env = dict(os.environ, SLURM_CONF=str(d / "slurm.conf"))

    def start(self, argv: list[str], name: str) -> None:
        log = open(self.d / "log" / f"{name}.out", "w")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                           env=self.env, start_new_session=True))
        log.close()

    def run(self, *argv: str, cwd: Path | None = None, env: dict | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd,
                              env=env or self.env, timeout=timeout)

    def job_state(self, job: str) -> str:
        out = self.run("scontrol", "-o", "show", "job", job).stdout
        states = [w.split("=", 1)[1] for w in out.split() if w.startswith("JobState=")]
        return ",".join(states) or "UNKNOWN"

    def logs(self) -> str:
        parts = []
        for p in sorted((self.d / "log").glob("*")) + sorted(self.d.glob("fleet/logs/*.out")):
            parts.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:])
        return "\n".join(parts)

    def stop(self) -> None:
        self.run("scancel", "--full", f"--user={getpass.getuser()}")
        for p in reversed(self.procs):  # slurmd, slurmctld, munged: each by its own pid
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=5)


@pytest.fixture
def slurm(tmp_path):
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        pytest.skip(f"Slurm/munge not installed ({', '.join(missing)} missing): apt-get "
                    "install slurm-wlm munge (.ci/run does it)")
    d = tmp_path / "slurm"
    for sub in ("state", "spool", "log"):
        (d / sub).mkdir(parents=True)
    d.chmod(0o755)  # munged wants its socket folder reachable, not writable, by others
    key = d / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    host = socket.gethostname().split(".")[0]
    (d / "slurm.conf").write_text(_slurm_conf(d, getpass.getuser(), host))
    (d / "gres.conf").write_text("AutoDetect=off\n" + f"NodeName={NODE} Name=gpu File="
                                 + ",".join(str(f) for f in _gpu_files(d)) + "\n")
    cluster = Cluster(d)
    try:
        cluster.start(["munged", "-F", "--force", f"--key-file={key}",
                       f"--socket={d / 'munge.sock'}", f"--pid-file={d / 'munged.pid'}",
                       f"--log-file={d / 'log' / 'munged.log'}",
                       f"--seed-file={d / 'munged.seed'}"], "munged")
        deadline = time.monotonic() + 20
        while not (d / "munge.sock").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        cluster.start(["slurmctld", "-D", "-i", "-f", str(d / "slurm.conf")], "slurmctld")
        cluster.start(["slurmd", "-D", "-N", NODE, "-f", str(d / "slurm.conf")], "slurmd")
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = cluster.run("sinfo", "-h", "-n", NODE, "-o", "%T").stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        assert state == "idle", f"node {NODE} is {state!r}, not idle\n{cluster.logs()}"
        yield cluster
    finally:
        cluster.stop()


def test_job_array_shards_and_dependent_merge(slurm, tmp_path):
    root = smoke_project(tmp_path / "project")
    fleet = slurm.d / "fleet"
    env = dict(slurm.env, FLEET_DIR=str(fleet), SUITE=str(root / "suites"),
               PYTHON=sys.executable, PYTEST_MIG_COMMIT="c0ffee", FLEET_RUN="nightly")
    done = slurm.run("bash", str(REPO / "deploy" / "slurm" / "submit.sh"), "3",
                     *smoke_args(root), cwd=root, env=env)
    assert done.returncode == 0, done.stderr + slurm.logs()
    array, merge = (fleet / "logs" / "last-submit").read_text().split()
    assert f"merge: job {merge}" in done.stdout
    # the merge waits for the whole array
    assert f"afterany:{array}" in slurm.run("scontrol", "show", "job", merge).stdout
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if slurm.job_state(merge) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"):
            break
        time.sleep(1)
    states = {"array": slurm.job_state(array), "merge": slurm.job_state(merge)}
    assert states["merge"] == "COMPLETED", f"{states}\n{slurm.logs()}"
    assert set(states["array"].split(",")) == {"COMPLETED"}, f"{states}\n{slurm.logs()}"
    out = fleet / "reports" / "nightly"
    merged = json.loads((out / "results.json").read_text())
    cases = [t["case"] for t in merged["tests"]]
    assert len(cases) == SMOKE_CASES == len(set(cases)), cases  # every case exactly once
    assert {t["outcome"] for t in merged["tests"]} == {"passed"}
    shards = {m["shard"] for m in merged["run"]["merged_from"]}
    assert shards == {"shard-1-of-3", "shard-2-of-3", "shard-3-of-3"}
    logs = {p.name: p.read_text() for p in (fleet / "logs").glob("pytest-mig-shard-*.out")}
    assert len(logs) == 3 and all("GPUs " in t for t in logs.values())
    # each array task got its own GRES GPU from Slurm
    gpus = {t.split("GPUs ", 1)[1].split(")")[0] for t in logs.values()}
    assert gpus <= {"0", "1", "2", "none assigned"} and len(gpus) >= 1
    print((out / "summary.txt").read_text())
