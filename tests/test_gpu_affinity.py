"""CPU placement: NVML's CPU affinity read as a mask, split into shares, pinned on a real
child; the fallbacks and the no-op say why."""
from __future__ import annotations

import os
import subprocess
import sys

from pytest_mig.gpu.affinity import gpu_local_cpus, pin, plan, split


class Api:
    def __init__(self, mask=None, fail=False):
        self.mask, self.fail = mask, fail

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetCpuAffinity(self, handle, words):
        if self.fail:
            raise RuntimeError("not supported")
        assert words >= 1
        return self.mask


ALLOWED = sorted(os.sched_getaffinity(0))


def test_split_is_contiguous_and_near_equal():
    assert split(list(range(16)), 7) == [(0, 1, 2), (3, 4, 5), (6, 7), (8, 9), (10, 11),
                                         (12, 13), (14, 15)]
    assert split([4, 5], 2) == [(4,), (5,)]


def test_nvml_mask_is_intersected_with_this_process_and_falls_back_saying_why():
    last = ALLOWED[-1]
    cpus, source = gpu_local_cpus(Api([1 << last]), 0)
    assert cpus == [last] and source == "NVML CPU affinity of GPU 0"
    cpus, source = gpu_local_cpus(Api(fail=True), 0)
    assert cpus == ALLOWED and "NVML CPU affinity: RuntimeError" in source
    cpus, source = gpu_local_cpus(None, 3)  # no such function
    assert cpus == ALLOWED and source.startswith(f"all {len(ALLOWED)} cores")


def test_the_simulator_says_it_has_no_affinity_not_an_exception_name(tmp_path):
    from pytest_mig.gpu.sim.simulator import SimulatedNvml
    cpus, source = gpu_local_cpus(SimulatedNvml(tmp_path / "gpu.json"), 0)
    assert cpus == ALLOWED
    assert source == (f"all {len(ALLOWED)} cores of this process (the GPU backend has no CPU "
                      "affinity: simulated GPU)")


def test_plan_pins_when_cores_suffice_else_says_why():
    full = plan(Api([(1 << 64) - 1]), 0, 1)
    assert full.pinning and full.shares == (tuple(ALLOWED),)
    crowded = plan(Api([(1 << 64) - 1]), 0, len(ALLOWED) + 5)
    assert not crowded.pinning
    assert crowded.note.startswith(f"not pinned: {len(ALLOWED)} CPU core(s) for "
                                   f"{len(ALLOWED) + 5} workload(s) on GPU 0")
    off = plan(None, 0, 1, enabled=False)
    assert not off.pinning and off.note == "not pinned: --mig-cpu-pinning=off"


def test_pin_sets_the_childs_affinity():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        got = pin(child.pid, "main", (ALLOWED[-1],))
        assert got.pinned and got.cpus == [ALLOWED[-1]]
        assert os.sched_getaffinity(child.pid) == {ALLOWED[-1]}
    finally:
        child.kill()
        child.wait()
    gone = pin(child.pid, "main", (ALLOWED[-1],))
    assert not gone.pinned and gone.note.startswith("not pinned: ")
