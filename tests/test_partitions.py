"""Partitions without MIG: MPS shares sized from MIG profiles, the whole GPU shared."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import GpuError
from pytest_mig.gpu.mps import MpsDaemon, share_for
from pytest_mig.gpu.slots import SlotProblem, build_shared_slot, build_slot
from pytest_mig.gpu.topology import GpuInfo

H100 = GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-h100", "H100-SXM5-80GB", 0x233010DE,
               85520809984, mig_current=False, mig_pending=False)


def test_share_matches_profile():
    s = share_for(16 / 132, 9984 * 1024 * 1024)
    assert (s.thread_percentage, s.memory_mb) == (12, 9984)
    assert s.env(Path("/p")) == {"CUDA_MPS_ACTIVE_THREAD_PERCENTAGE": "12",
                                 "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT": "0=9984M",
                                 "CUDA_MPS_PIPE_DIRECTORY": "/p"}
    assert share_for(0.001, 1 << 20).thread_percentage == 1


def test_mps_slot_on_h100_emulates_seven_1g10gb():
    slot = build_shared_slot(H100, "mps", "1g.10gb", False, "H100-SXM5-80GB", Path("/pipe"))
    assert len(slot.background) == 6
    assert slot.main.device_id == "GPU-h100" and slot.main.kind == "mps"
    assert slot.main.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "12"
    assert all(p.env == slot.main.env for p in slot.background)


def test_mps_slot_3g_profile_has_two_partitions():
    slot = build_shared_slot(H100, "mps", "3g.40gb", False, "H100-SXM5-80GB", Path("/pipe"))
    assert len(slot.background) == 1
    assert slot.main.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "45"  # 60 of 132 SMs


def test_none_slot_has_no_limits():
    slot = build_shared_slot(H100, "none", "1g.10gb", False, "H100-SXM5-80GB")
    assert slot.main.env == {} and slot.main.kind == "none" and len(slot.background) == 6


def test_unknown_profile_is_a_problem():
    res = build_shared_slot(H100, "mps", "1g.5gb", False, "H100-SXM5-80GB")
    assert isinstance(res, SlotProblem) and "no MIG profile 1g.5gb" in res.reason


def test_mig_disabled_says_how_to_enable_and_offers_mps():
    res = build_slot(H100, [], "1g.10gb", simulated=False, gpu_model="H100-SXM5-80GB")
    assert isinstance(res, SlotProblem)
    assert "sudo nvidia-smi -i 0 -mig 1" in res.reason and "--partition=mps" in res.reason


def test_mps_daemon_without_binary_is_our_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    d = MpsDaemon(tmp_path, "GPU-x")
    with pytest.raises(GpuError, match="--partition=mps needs nvidia-cuda-mps-control"):
        d.start()
    assert d.stop() is False


def test_mps_daemon_start_stop_with_fake_control(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.txt"
    fake = bindir / "nvidia-cuda-mps-control"
    fake.write_text("#!/bin/sh\necho \"$@ pipe=$CUDA_MPS_PIPE_DIRECTORY\" >> " + str(log) +
                    "\nif [ \"$1\" = -d ]; then touch \"$CUDA_MPS_PIPE_DIRECTORY/control\"; "
                    "else cat >> " + str(log) + "; fi\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    d = MpsDaemon(tmp_path / "run", "GPU-x")
    d.start()
    assert d.stop() is True
    calls = log.read_text().splitlines()
    pipe = tmp_path / "run" / "mps" / "pipe"
    assert calls == [f"-d pipe={pipe}", f" pipe={pipe}", "quit"]
