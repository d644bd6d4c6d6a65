"""Apply and tear down MIG layouts on the simulated GPU: placements, reuse, ownership rules,
crashed-run cleanup, and the refusals (foreign instances, processes, MIG disabled, non-root)."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from pytest_mig.errors import GpuError, LayoutError
from pytest_mig.gpu.manage import (apply_layout, clean_stale, create_commands, destroy,
                                   destroy_owned, gpu_instances, layout_problem, live_model,
                                   mig_mode_notes, plan_apply, teardown)
from pytest_mig.gpu.nvml import Nvml
from pytest_mig.gpu.ownership import (Owner, OwnedInstance, OwnershipStore, boot_id,
                                      owner_alive, process_start, stale_reason, store_path)
from pytest_mig.gpu.planner import plan
from pytest_mig.gpu.profiles import get_model
from pytest_mig.gpu.sim.simulator import SimulatedNvml

A100 = "A100-SXM4-80GB"


def open_gpu(tmp_path, layout=None, mig_enabled=True, gpus=1, model=A100):
    api = SimulatedNvml(tmp_path / "gpu.json", model=model, gpu_count=gpus,
                        layout=layout or {}, mig_enabled=mig_enabled)
    return api, Nvml(api)


def placements(nvml, index=0):
    return [(g.profile, g.start) for g in gpu_instances(nvml.instances(index))]


def hand_made(nvml, profile, start, index=0):
    """An instance someone else created (no ownership record)."""
    gi = nvml.create_gpu_instance(index, profile, start)
    nvml.create_compute_instance(index, gi)
    return gi


@pytest.fixture
def store(tmp_path):
    return OwnershipStore(tmp_path / "state" / "mig-ownership.json")


@pytest.fixture
def owner():
    return Owner.current("run-A")


def test_apply_creates_planned_placements_and_records_ownership(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path)
    result = apply_layout(nvml, 0, {"3g.40gb": 1, "1g.10gb": 3}, store, owner)
    # Largest first, on its lowest allowed start; the 1g instances fill the slices after it.
    assert placements(nvml) == [("3g.40gb", 0), ("1g.10gb", 4), ("1g.10gb", 5),
                                ("1g.10gb", 6)]
    assert result.changed and result.reused == [] and result.destroyed == []
    gpu = nvml.gpu(0)
    live = {i.gi_id: i for i in nvml.instances(0)}
    records = sorted(store.records(), key=lambda r: r.start)
    assert [(r.profile, r.start, r.size) for r in records] == [
        ("3g.40gb", 0, 4), ("1g.10gb", 4, 1), ("1g.10gb", 5, 1), ("1g.10gb", 6, 1)]
    for r in records:
        assert r.gpu_uuid == gpu.uuid and r.gpu_index == 0
        assert r.ci_ids == (live[r.gi_id].ci_id,) and r.mig_uuids == (live[r.gi_id].uuid,)
        assert (r.run_id, r.pid, r.boot_id) == ("run-A", os.getpid(), boot_id())
        assert r.pid_start == process_start(os.getpid()) and r.created_at
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    data = json.loads(store.path.read_text())
    assert data["format"] == "pytest-mig MIG ownership v1" and len(data["instances"]) == 4


def test_apply_is_idempotent(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path)
    apply_layout(nvml, 0, {"1g.10gb": 4}, store, owner)
    before, records = nvml.instances(0), store.records()
    again = apply_layout(nvml, 0, {"1g.10gb": 4}, store, owner)
    assert not again.changed and len(again.reused) == 4
    assert nvml.instances(0) == before and store.records() == records


def test_existing_instances_are_reused_not_owned(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path, layout={"1g.10gb": 7})
    result = apply_layout(nvml, 0, {"1g.10gb": 4}, store, owner)
    assert not result.changed and [g.start for g in result.reused] == [0, 1, 2, 3]
    assert store.records() == [] and len(placements(nvml)) == 7


def test_partial_reuse_creates_only_the_missing(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path)
    foreign = hand_made(nvml, "1g.10gb", 6)
    result = apply_layout(nvml, 0, {"1g.10gb": 4}, store, owner)
    assert [g.gi_id for g in result.reused] == [foreign]
    assert [r.start for r in result.created] == [0, 1, 2]
    report = teardown(nvml, store, "run-A")
    assert len(report.destroyed) == 3 and report.refused == []
    assert placements(nvml) == [("1g.10gb", 6)] and store.records() == []


def test_reconfigure_destroys_only_own_instances_in_the_way(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path)
    apply_layout(nvml, 0, {"1g.10gb": 4}, store, owner)  # ours at 0..3
    foreign = hand_made(nvml, "1g.10gb", 6)
    result = apply_layout(nvml, 0, {"2g.20gb": 3}, store, owner)
    assert sorted(r.start for r in result.destroyed) == [0, 1, 2, 3]
    assert [r.start for r in result.created] == [0, 2, 4] and result.changed
    assert placements(nvml) == [("2g.20gb", 0), ("2g.20gb", 2), ("2g.20gb", 4),
                                ("1g.10gb", 6)]
    assert sorted((r.profile, r.start) for r in store.records()) == [
        ("2g.20gb", 0), ("2g.20gb", 2), ("2g.20gb", 4)]
    assert foreign in {g.gi_id for g in gpu_instances(nvml.instances(0))}


def test_own_instance_already_in_place_is_kept_while_others_move(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path)
    apply_layout(nvml, 0, {"2g.20gb": 1}, store, owner)  # ours: 2g at 0
    hand_made(nvml, "1g.10gb", 2)  # foreign, blocks 2g at 2
    result = apply_layout(nvml, 0, {"2g.20gb": 2, "1g.10gb": 1}, store, owner)
    assert [g.profile for g in result.reused] == ["2g.20gb", "1g.10gb"]
    assert [(r.profile, r.start) for r in result.created] == [("2g.20gb", 4)]
    assert result.destroyed == []


def test_foreign_instances_in_the_way_are_refused(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path, layout={"1g.10gb": 7})
    with pytest.raises(GpuError) as exc:
        apply_layout(nvml, 0, {"3g.40gb": 2}, store, owner)
    text = str(exc.value)
    assert "cannot reach 2 x 3g.40gb on GPU 0 (A100-SXM4-80GB): it has 7 x 1g.10gb" in text
    assert "GPU instance 7 (1g.10gb at memory slice 0): not created by this run" in text
    assert "sudo nvidia-smi mig -dci && sudo nvidia-smi mig -dgi" in text
    assert len(placements(nvml)) == 7 and store.records() == []


def test_own_busy_instance_in_the_way_is_refused_until_idle(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path)
    apply_layout(nvml, 0, {"1g.10gb": 1}, store, owner)
    (inst,) = nvml.instances(0)
    pid = api.register_process(inst.uuid, pid=4242)
    with pytest.raises(GpuError, match=r"GPU instance 7 \(1g.10gb at memory slice 0\): "
                                       r"processes \[4242\] run on it"):
        apply_layout(nvml, 0, {"7g.80gb": 1}, store, owner)
    assert placements(nvml) == [("1g.10gb", 0)]
    api.unregister_process(pid)
    result = apply_layout(nvml, 0, {"7g.80gb": 1}, store, owner)
    assert [r.profile for r in result.destroyed] == ["1g.10gb"]
    assert placements(nvml) == [("7g.80gb", 0)]


def test_destroy_refuses_instances_the_run_did_not_create(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path, layout={"1g.10gb": 1})
    with pytest.raises(GpuError, match=r"refusing to destroy GPU instance 7 on GPU 0: this run "
                                       r"\(run-A\) did not create it \(no pytest-mig run did\)"):
        destroy(nvml, 0, 7, store, "run-A")
    other = Owner.current("run-B")
    apply_layout(nvml, 0, {"1g.10gb": 2}, store, other)  # run-B creates GI 8 at slice 1
    with pytest.raises(GpuError, match=r"\(run run-B did\)"):
        destroy(nvml, 0, 8, store, "run-A")
    assert destroy(nvml, 0, 8, store, "run-B").gi_id == 8
    assert placements(nvml) == [("1g.10gb", 0)]


def test_destroy_refuses_while_processes_run(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path)
    (rec,) = apply_layout(nvml, 0, {"3g.40gb": 1}, store, owner).created
    api.register_process(rec.mig_uuids[0], pid=777)
    with pytest.raises(GpuError, match=r"refusing to destroy GPU instance 1 \(3g.40gb at memory "
                                       r"slice 0\) on GPU 0 .*processes \[777\] run on it"):
        destroy_owned(nvml, nvml.gpu(0), rec, store)
    report = teardown(nvml, store, "run-A")
    assert report.destroyed == [] and len(report.refused) == 1
    assert placements(nvml) == [("3g.40gb", 0)] and store.records() == [rec]


def test_teardown_leaves_other_runs_and_foreign_instances(tmp_path, store, owner):
    _, nvml = open_gpu(tmp_path, layout={"1g.10gb": 1})
    apply_layout(nvml, 0, {"1g.10gb": 3}, store, owner)  # reuses slice 0, creates 1, 2
    apply_layout(nvml, 0, {"1g.10gb": 4}, store, Owner.current("run-B"))  # creates 3
    report = teardown(nvml, store, "run-A")
    assert [d.split(" on GPU")[0] for d in report.destroyed] == [
        "GPU instance 8 (1g.10gb at memory slice 1)", "GPU instance 9 (1g.10gb at memory slice 2)"]
    assert placements(nvml) == [("1g.10gb", 0), ("1g.10gb", 3)]
    assert [(r.run_id, r.start) for r in store.records()] == [("run-B", 3)]


def test_crash_between_gpu_and_compute_instance_is_recorded_and_cleaned(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path)
    api.inject_failure("nvmlGpuInstanceCreateComputeInstance", "UNKNOWN")
    with pytest.raises(GpuError, match="nvmlGpuInstanceCreateComputeInstance failed"):
        apply_layout(nvml, 0, {"4g.40gb": 1}, store, owner)
    (rec,) = store.records()
    assert (rec.profile, rec.start, rec.ci_ids) == ("4g.40gb", 0, ())
    assert teardown(nvml, store, "run-A").destroyed == [rec.describe()]
    assert placements(nvml) == [] and store.records() == []


def test_crashed_run_leftovers_are_destroyed_by_the_next_run(tmp_path, store):
    _, nvml = open_gpu(tmp_path)
    # The same pid with another start time: the owner process is gone (its pid reused).
    dead = Owner("run-crashed", os.getpid(), -1, boot_id())
    apply_layout(nvml, 0, {"2g.20gb": 2}, store, dead)
    live = Owner.current("run-live")
    apply_layout(nvml, 0, {"2g.20gb": 2, "1g.10gb": 1}, store, live)  # 1g at 4, still owned
    why = stale_reason(store.records()[0])
    assert why == f"run run-crashed (pid {os.getpid()}) ended without removing it"
    report = clean_stale(nvml, store)
    assert report.destroyed == [
        f"GPU instance 3 (2g.20gb at memory slice 0) on GPU 0 ({nvml.gpu(0).uuid}), left "
        f"behind: {why}",
        f"GPU instance 4 (2g.20gb at memory slice 2) on GPU 0 ({nvml.gpu(0).uuid}), left "
        f"behind: {why}"]
    assert placements(nvml) == [("1g.10gb", 4)]
    assert [r.run_id for r in store.records()] == ["run-live"]


def test_records_from_before_a_reboot_are_forgotten_not_destroyed(tmp_path, store):
    _, nvml = open_gpu(tmp_path)
    apply_layout(nvml, 0, {"1g.10gb": 1}, store, Owner.current("run-old"))
    (rec,) = store.records()
    store.put(OwnedInstance(**{**rec.__dict__, "boot_id": "an-earlier-boot"}))
    report = clean_stale(nvml, store)
    assert report.forgotten == [f"forgot {rec.describe()}: the machine rebooted since run "
                                "run-old recorded it"]
    assert report.destroyed == [] and store.records() == []
    assert placements(nvml) == [("1g.10gb", 0)]  # the id may be someone else's now


def test_stale_record_for_a_replaced_instance_is_dropped(tmp_path, store):
    _, nvml = open_gpu(tmp_path)
    dead = Owner("run-crashed", os.getpid(), -1, boot_id())
    (rec,) = apply_layout(nvml, 0, {"2g.20gb": 1}, store, dead).created
    nvml.destroy_compute_instance(0, rec.gi_id, rec.ci_ids[0])
    nvml.destroy_gpu_instance(0, rec.gi_id)
    hand_made(nvml, "1g.10gb", 0)
    store.put(OwnedInstance(**{**rec.__dict__, "gi_id": 7}))  # GI 7 is now the foreign 1g
    store.remove(rec)
    report = clean_stale(nvml, store)
    assert report.destroyed == [] and store.records() == []
    assert "it is now 1g.10gb at memory slice 0, not the 2g.20gb at 0" in report.refused[0]
    assert placements(nvml) == [("1g.10gb", 0)]


def test_mig_disabled_is_never_changed(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path, mig_enabled=False)
    with pytest.raises(GpuError, match=r"GPU 0 \(A100-SXM4-80GB\) has MIG mode disabled; "
                                       r"pytest-mig never changes MIG mode. Enable it with: "
                                       r"sudo nvidia-smi -i 0 -mig 1"):
        apply_layout(nvml, 0, {"1g.10gb": 1}, store, owner)
    gpu = nvml.gpu(0)
    assert (gpu.mig_current, gpu.mig_pending) == (False, False) and store.records() == []
    model = live_model(nvml, 0)  # profiles and placements stay readable with MIG off
    assert model.profile("1g.10gb").placement_starts == (0, 1, 2, 3, 4, 5, 6)
    problem = layout_problem(gpu, model, [], {"1g.10gb": 1}, {"1g.10gb": 4}, "pytest suites")
    assert "sudo nvidia-smi -i 0 -mig 1" in problem


def test_non_root_gets_the_fix_and_leaves_no_record(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path)
    api.configure(caller="user")
    with pytest.raises(GpuError, match=r"cannot manage MIG instances on GPU 0 \(A100-SXM4-80GB\): "
                                       r"NVML refuses .* run as root or grant the mig-config "
                                       r"capability"):
        apply_layout(nvml, 0, {"1g.10gb": 1}, store, owner)
    api.configure(caller="root")
    assert store.records() == [] and placements(nvml) == []


def test_unreadable_ownership_file_names_it(tmp_path):
    path = tmp_path / "mig-ownership.json"
    path.write_text("{not json")
    with pytest.raises(GpuError, match=f"MIG ownership file {path} is unreadable"):
        OwnershipStore(path).records()
    path.write_text('{"format": "something else"}')
    with pytest.raises(GpuError, match="is not a pytest-mig MIG ownership file"):
        OwnershipStore(path).records()


def test_plan_apply_refuses_impossible_layouts_with_the_arithmetic():
    model = get_model(A100)
    with pytest.raises(LayoutError, match="3g.40gb \\+ 5 x 1g.10gb needs 8 of 7 compute slices "
                                          "on A100-SXM4-80GB"):
        plan_apply(model, [], {"3g.40gb": 1, "1g.10gb": 5})


def test_layout_problem_says_how_to_get_the_layout(tmp_path):
    _, nvml = open_gpu(tmp_path)
    gpu, model = nvml.gpu(0), live_model(nvml, 0)
    text = layout_problem(gpu, model, [], {"1g.10gb": 1}, {"1g.10gb": 4}, "pytest suites")
    assert text == (
        "GPU 0 (A100-SXM4-80GB) has no MIG instances; this case needs 4 x 1g.10gb. Let "
        "pytest-mig create it for the run (and remove it at the end): pytest suites "
        "--mig-manage; or create it by hand: sudo nvidia-smi mig -i 0 -cgi "
        "1g.10gb:0,1g.10gb:1,1g.10gb:2,1g.10gb:3 -C")
    _, full = open_gpu(tmp_path / "full", layout={"1g.10gb": 7})
    gis = gpu_instances(full.instances(0))
    assert layout_problem(gpu, model, gis, {"1g.10gb": 1}, {"1g.10gb": 4}, "pytest") is None
    text = layout_problem(gpu, model, gis, {"3g.40gb": 1}, {"3g.40gb": 2}, "pytest")
    assert text.endswith("or create it by hand: sudo nvidia-smi mig -i 0 -dci && sudo "
                         "nvidia-smi mig -i 0 -dgi && sudo nvidia-smi mig -i 0 -cgi "
                         "3g.40gb:0,3g.40gb:4 -C")
    assert "has 7 x 1g.10gb; this case needs 2 x 3g.40gb" in text


def test_create_commands_and_mig_mode_notes(tmp_path):
    assert create_commands(2, plan(get_model(A100), {"2g.20gb": 1}), clear_first=True) == (
        "sudo nvidia-smi mig -i 2 -dci && sudo nvidia-smi mig -i 2 -dgi && "
        "sudo nvidia-smi mig -i 2 -cgi 2g.20gb:0 -C")
    _, nvml = open_gpu(tmp_path, mig_enabled=False, gpus=2)
    assert mig_mode_notes(nvml.gpus()) == [
        "pytest-mig: MIG mode is disabled on all 2 GPUs; pytest-mig never changes MIG mode. "
        "Enable it with: sudo nvidia-smi -mig 1 (then reset the GPUs with sudo nvidia-smi -r, "
        "or reboot)"]
    _, one = open_gpu(tmp_path / "one", mig_enabled=False)
    assert mig_mode_notes(one.gpus()) == [
        "pytest-mig: GPU 0 (A100-SXM4-80GB) has MIG mode disabled; pytest-mig never changes "
        "MIG mode. Enable it with: sudo nvidia-smi -i 0 -mig 1 (then reset the GPU with sudo "
        "nvidia-smi -i 0 -r, or reboot)"]
    _, on = open_gpu(tmp_path / "on")
    assert mig_mode_notes(on.gpus()) == []


def test_owner_liveness_uses_pid_and_its_start_time(tmp_path, store):
    _, nvml = open_gpu(tmp_path)
    (rec,) = apply_layout(nvml, 0, {"1g.10gb": 1}, store, Owner.current("run-A")).created
    assert owner_alive(rec) and stale_reason(rec) is None
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    gone = OwnedInstance(**{**rec.__dict__, "pid": done.pid, "pid_start": None})
    assert not owner_alive(gone)
    reused = OwnedInstance(**{**rec.__dict__, "pid_start": rec.pid_start + 1})
    assert not owner_alive(reused)  # same pid, another process


def test_store_lives_beside_the_simulator_or_in_the_user_state_dir(tmp_path, monkeypatch):
    assert store_path(tmp_path / "run" / "simulated-gpu.json") == (
        tmp_path / "run" / "mig-ownership.json")
    monkeypatch.setenv("PYTEST_MIG_STATE_DIR", str(tmp_path / "state"))
    assert store_path(None) == tmp_path / "state" / "mig-ownership.json"
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
