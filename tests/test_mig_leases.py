"""GPU leases across processes: exclusive, released on death, clear timeout message."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pytest_mig.errors import LeaseTimeout
from pytest_mig.gpu.leases import acquire


def test_two_leases_get_different_gpus(tmp_path):
    a = acquire(["G0", "G1"], tmp_path, timeout_s=1)
    b = acquire(["G0", "G1"], tmp_path, timeout_s=1)
    assert {a.gpu_uuid, b.gpu_uuid} == {"G0", "G1"}
    with pytest.raises(LeaseTimeout, match="no GPU free after 0.2 s"):
        acquire(["G0", "G1"], tmp_path, timeout_s=0.2)
    a.release()
    c = acquire(["G0", "G1"], tmp_path, timeout_s=1)
    assert c.gpu_uuid == a.gpu_uuid
    b.release(), c.release()


def test_prefer_orders_choice(tmp_path):
    lease = acquire(["G0", "G1"], tmp_path, timeout_s=1, prefer=lambda u: u == "G1")
    assert lease.gpu_uuid == "G1"
    lease.release()


def test_lease_held_by_other_process_then_freed_on_its_death(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from pytest_mig.gpu.leases import acquire
        l = acquire(["G0"], __import__('pathlib').Path({str(tmp_path)!r}), timeout_s=5)
        print("held", flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(LeaseTimeout):
            acquire(["G0"], tmp_path, timeout_s=0.3)
        p.kill()
        p.wait()
        lease = acquire(["G0"], tmp_path, timeout_s=2)  # the kernel dropped the dead holder's lock
        assert lease.gpu_uuid == "G0"
        lease.release()
    finally:
        p.kill()
        p.wait()
