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


def test_mps_layout_slot_sizes_each_share_from_its_own_profile():
    """A layout case without MIG: one MPS share per instance of the layout, each sized from
    its profile (H100: 2g.20gb = 32 of 132 SMs, 1g.10gb = 16), the main on the largest."""
    from pytest_mig.gpu.profiles import get_model, profile_fraction
    from pytest_mig.gpu.slots import build_layout_slot
    slot = build_layout_slot(H100, "mps", [], "3x2g+1g", "2g.20gb", False, "H100-SXM5-80GB",
                             Path("/pipe"))
    model = get_model("H100-SXM5-80GB")
    parts = [slot.main, *slot.background]
    assert [p.profile for p in parts] == ["2g.20gb", "2g.20gb", "2g.20gb", "1g.10gb"]
    for p in parts:
        want = share_for(*profile_fraction(model, p.profile))
        assert p.env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == str(want.thread_percentage)
        assert p.env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == f"0={want.memory_mb}M"
        assert p.kind == "mps" and p.device_id == "GPU-h100"
    assert parts[0].env != parts[3].env
    whole = build_layout_slot(H100, "none", [], "1x7g", "7g.80gb", False, "H100-SXM5-80GB")
    assert (whole.main.profile, whole.background, whole.main.env) == ("7g.80gb", (), {})


def test_layout_slot_problems_name_the_layout():
    from pytest_mig.gpu.slots import build_layout_slot
    a30 = GpuInfo(0, "NVIDIA A30", "GPU-a30", "A30-24GB", 0x20B710DE, 24 << 30,
                  mig_current=True, mig_pending=True)
    res = build_layout_slot(a30, "mps", [], "7x1g", "1g.6gb", False, "A30-24GB")
    assert isinstance(res, SlotProblem)
    assert res.reason.startswith("layout '7x1g' (") and "has no MIG devices for GPU 0 (A30-24GB" \
        in res.reason
    mig = GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-h100", "H100-SXM5-80GB", 0x233010DE,
                  85520809984, mig_current=True, mig_pending=True)
    res = build_layout_slot(mig, "mig", [], "1x7g", "7g.80gb", False, "H100-SXM5-80GB")
    assert isinstance(res, SlotProblem) and "lacks the instances of layout '1x7g'" in res.reason
    assert "--mig-manage" in res.reason
