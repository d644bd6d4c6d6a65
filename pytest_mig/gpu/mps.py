"""CUDA MPS partitions: a control daemon per run, and client shares sized like MIG profiles.

Used where MIG is unavailable or may not be reconfigured: each workload becomes an MPS
client limited to the SM fraction (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE) and memory
(CUDA_MPS_PINNED_DEVICE_MEM_LIMIT) of the MIG profile it stands in for.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_mig.errors import GpuError

CONTROL = "nvidia-cuda-mps-control"


@dataclass(frozen=True)
class MpsShare:
    """The client limits standing in for one MIG profile."""

    thread_percentage: int
    memory_mb: int

    def env(self, pipe_dir: Path | None) -> dict[str, str]:
        env = {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": str(self.thread_percentage),
               # Device 0 is the one GPU CUDA_VISIBLE_DEVICES leaves the client.
               "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": f"0={self.memory_mb}M"}
        if pipe_dir is not None:
            env["CUDA_MPS_PIPE_DIRECTORY"] = str(pipe_dir)
        return env


def share_for(sm_fraction: float, memory_bytes: int) -> MpsShare:
    """Nearest whole percent: MPS then rounds the SM count up to whole TPCs (2 SMs), so
    H100 1g.10gb (16 of 132 SMs, 12.1%) asks 12% and gets the same 16 SMs."""
    pct = max(1, min(100, round(sm_fraction * 100)))
    return MpsShare(thread_percentage=pct, memory_mb=max(1, memory_bytes // (1024 * 1024)))


class MpsDaemon:
    """One MPS control daemon with pipe and log directories under the run directory."""

    def __init__(self, run_dir: Path, gpu_uuid: str) -> None:
        self.base = run_dir / "mps"
        self.pipe_dir = self.base / "pipe"
        self.log_dir = self.base / "log"
        self.gpu_uuid = gpu_uuid
        self.started = False

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LD_LIBRARY_PATH")}
        env.update(CUDA_MPS_PIPE_DIRECTORY=str(self.pipe_dir),
                   CUDA_MPS_LOG_DIRECTORY=str(self.log_dir),
                   CUDA_VISIBLE_DEVICES=self.gpu_uuid)
        return env

    def start(self, timeout_s: float = 15.0) -> None:
        exe = shutil.which(CONTROL)
        if exe is None:
            raise GpuError(f"--partition=mps needs {CONTROL} (part of the NVIDIA driver/CUDA "
                           "toolkit) on PATH; use --partition=mig or --partition=none instead")
        self.pipe_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # Its own session: a signal to pytest's process group (a CI job limit, Ctrl-C in a
        # terminal) must not take the daemon, and with it every client, down before
        # pytest-mig has stopped the workloads in order (backgrounds, then the daemon).
        res = subprocess.run([exe, "-d"], env=self._env(), capture_output=True, text=True,
                             timeout=timeout_s, start_new_session=True)
        if res.returncode != 0:
            raise GpuError(f"{CONTROL} -d failed (exit {res.returncode}): "
                           f"{(res.stderr or res.stdout).strip()}; see {self.log_dir}")
        self.started = True
        # The daemon is ready once its control pipe exists.
        deadline = time.monotonic() + timeout_s
        while not any(self.pipe_dir.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self, timeout_s: float = 15.0) -> bool:
        """Ask the daemon to quit (it ends its servers too); True when it was running."""
        if not self.started:
            return False
        exe = shutil.which(CONTROL) or CONTROL
        try:
            subprocess.run([exe], input="quit\n", env=self._env(), capture_output=True,
                           text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.started = False
        return True
