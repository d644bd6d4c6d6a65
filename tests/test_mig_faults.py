"""MIG management and discovery under every simulated caller privilege and hardware fault.

Each case drives the real wrapper (gpu/nvml.py) and apply/teardown (gpu/manage.py) on the
simulator with one behaviour of real MIG nodes switched on, and checks what the user sees.
GPU-instance ids are never assumed: they are read back from the GPU and the records.
"""
from __future__ import annotations

import pynvml
import pytest

from pytest_mig.errors import GpuError
from pytest_mig.gpu.manage import (apply_layout, gpu_instances, layout_problem, live_model,
                                   teardown)
from pytest_mig.gpu.nvml import Nvml, NvmlCallError
from pytest_mig.gpu.ownership import Owner, OwnershipStore
from pytest_mig.gpu.sim.simulator import SimulatedNvml

CALLERS = ["root", "mig-config", "user"]
# Fault settings that real nodes show; apply and teardown must come through each unchanged.
FAULTS = {
    "none": {},
    "index-gaps": {"index_gaps": True},
    "stale-listing": {"stale_listing": 3},
    "history-ids": {"history_ids": True},
    "stray-in-use-once": {"stray_in_use": 1},
}  # wrong_instance_count is an A30 fault: test_a30_instance_counts_come_from_the_table
LAYOUT = {"3g.40gb": 1, "1g.10gb": 2}


def open_gpu(tmp_path, model="A100-SXM4-80GB", layout=None, caller="root", **faults):
    api = SimulatedNvml(tmp_path / "gpu.json", model=model, layout=layout or {})
    api.set_faults(**faults)
    api.configure(caller=caller)
    return api, Nvml(api)


@pytest.fixture
def store(tmp_path):
    return OwnershipStore(tmp_path / "state" / "mig-ownership.json")


@pytest.fixture
def owner():
    return Owner.current("run-F")


def as_root(api, nvml):
    """What an admin sees afterwards (placements, ids) whatever the caller was."""
    api.configure(caller="root")
    return gpu_instances(nvml.instances(0))


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("caller", CALLERS)
def test_apply_and_teardown_under_every_caller_and_fault(tmp_path, store, owner, caller, fault):
    api, nvml = open_gpu(tmp_path, caller=caller, **FAULTS[fault])
    if caller == "user":
        with pytest.raises(GpuError) as err:
            apply_layout(nvml, 0, LAYOUT, store, owner)
        assert str(err.value).startswith("cannot manage MIG instances on GPU 0 (A100-SXM4-80GB): "
                                         "NVML refuses the GPU-instance queries")
        assert "run as root or grant the mig-config capability" in str(err.value)
        assert store.records() == [] and as_root(api, nvml) == []
        return
    result = apply_layout(nvml, 0, LAYOUT, store, owner)
    assert sorted(r.profile for r in result.created) == ["1g.10gb", "1g.10gb", "3g.40gb"]
    live = {g.gi_id: g for g in gpu_instances(nvml.instances(0))}
    records = store.records()
    # every record names a live instance with its id, profile, placement and MIG device
    assert {r.gi_id for r in records} == set(live) and len(live) == 3
    for r in records:
        g = live[r.gi_id]
        assert (r.profile, r.start, r.ci_ids, r.mig_uuids) == (g.profile, g.start, g.ci_ids,
                                                               g.uuids)
    report = teardown(nvml, store, owner.run_id)
    assert report.refused == [] and len(report.destroyed) == 3
    assert store.records() == [] and as_root(api, nvml) == []


@pytest.mark.parametrize("fault", FAULTS, ids=list(FAULTS))
@pytest.mark.parametrize("caller", CALLERS)
def test_read_only_discovery_under_every_caller_and_fault(tmp_path, caller, fault):
    api, nvml = open_gpu(tmp_path, layout=LAYOUT, caller=caller, **FAULTS[fault])
    topo = nvml.topology()
    insts = topo.instances[0]
    assert sorted(i.profile for i in insts) == ["1g.10gb", "1g.10gb", "3g.40gb"]
    assert all(i.uuid.startswith("MIG-") and i.ci_id is not None for i in insts)
    assert len({i.gi_id for i in insts}) == 3
    assert topo.gpus[0].memory_total == 85899345920  # from NVML, or the table for non-root
    metrics = nvml.sample_metrics(0)
    assert (metrics.mem_used, metrics.mem_total) == (0, 85899345920)
    head = topo.describe()
    assert "layout 3g.40gb + 2 x 1g.10gb" in head
    if caller == "root":
        assert topo.notes == [] and "could not read" not in head
    else:
        assert ("GPU 0: could not read total memory (nvmlDeviceGetMemoryInfo: "
                "NVML_ERROR_NO_PERMISSION; the A100-SXM4-80GB table's figure is used) - run as "
                "root or grant the mig-config capability to read it") in head
    if caller == "user":
        assert all(i.placement_start == -1 for i in insts)
        assert ("GPU 0: could not read GPU-instance placements (nvmlDeviceGetGpuInstances: "
                "NVML_ERROR_NO_PERMISSION; MIG devices listed without placements)") in head
        assert {p.remaining for p in nvml.gi_profiles(0)} == {None}
    else:
        assert sorted(i.placement_start for i in insts) == [0, 4, 5]
    # without --mig-manage: the case's need is met, or the user is told how to reach it
    gpu, model = nvml.gpu(0), live_model(nvml, 0)
    gis = gpu_instances(insts)
    assert layout_problem(gpu, model, gis, {"1g.10gb": 1}, LAYOUT, "pytest x") is None
    why = layout_problem(gpu, model, gis, {"2g.20gb": 1}, {"2g.20gb": 1}, "pytest x")
    assert why.startswith("GPU 0 (A100-SXM4-80GB) has 3g.40gb + 2 x 1g.10gb; this case needs "
                          "2g.20gb") and "-cgi 2g.20gb:" in why


def test_a_read_refused_is_never_called_a_create_or_destroy(tmp_path):
    api, nvml = open_gpu(tmp_path, layout=LAYOUT, caller="user")
    gi = nvml.instances(0)[0].gi_id
    with pytest.raises(NvmlCallError) as err:
        nvml.destroy_gpu_instance(0, gi)
    text = str(err.value)
    assert text == (f"cannot destroy GPU instance {gi} on GPU 0: nvmlDeviceGetGpuInstanceById "
                    "failed with NVML_ERROR_NO_PERMISSION (simulated NVML); NVML answers this "
                    "MIG query only to a privileged user: run as root or grant the mig-config "
                    "capability (MIG user guide, 'Device Nodes and Capabilities')")
    api.configure(caller="mig-config")
    with pytest.raises(NvmlCallError, match="NVML_ERROR_NO_PERMISSION.*with MIG enabled NVML "
                                            "answers whole-GPU memory and process queries only "
                                            "to root"):
        nvml._call("nvmlDeviceGetMemoryInfo", "read memory", nvml.handle(0))
    nvml.destroy_compute_instance(0, gi, nvml.instances(0)[0].ci_id)  # mig-config may change


def test_teardown_of_a_non_root_run_keeps_the_records(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path)
    apply_layout(nvml, 0, {"1g.10gb": 1}, store, owner)
    api.configure(caller="user")
    report = teardown(nvml, store, owner.run_id)
    assert report.destroyed == [] and len(report.refused) == 1
    assert "run as root or grant the mig-config capability" in report.refused[0]
    assert "its record is kept" in report.refused[0]
    assert len(store.records()) == 1  # not mistaken for "someone replaced it"
    api.configure(caller="root")
    assert teardown(nvml, store, owner.run_id).refused == [] and store.records() == []


def test_stray_in_use_names_the_other_client_and_is_kept(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path)
    apply_layout(nvml, 0, {"1g.10gb": 1}, store, owner)
    api.set_faults(stray_in_use=10)  # DCGM keeps its handle for longer than the retries
    report = teardown(nvml, store, owner.run_id)
    (refused,) = report.refused
    assert "NVML_ERROR_IN_USE (simulated NVML); no process runs on it, so another NVML client " \
           "holds it (e.g. DCGM, dcgm-exporter or a monitoring agent): stop that client" in refused
    assert "processes []" not in refused and len(store.records()) == 1
    api.set_faults(stray_in_use=0)
    assert teardown(nvml, store, owner.run_id).refused == [] and store.records() == []


def test_pending_mig_mode_refuses_changes_and_says_reset(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path, layout={"1g.10gb": 1})
    api.set_mig_mode(0, True, pending=False)
    with pytest.raises(GpuError) as err:
        apply_layout(nvml, 0, LAYOUT, store, owner)
    assert str(err.value).startswith("MIG mode change pending: reset the GPU. GPU 0 "
                                     "(A100-SXM4-80GB) has MIG enabled now but disabled after "
                                     "its next reset")
    with pytest.raises(GpuError, match="MIG mode change pending: reset the GPU"):
        nvml.create_gpu_instance(0, "1g.10gb")
    assert "MIG enabled (disabled after GPU reset)" in nvml.topology().describe()
    assert store.records() == [] and len(nvml.instances(0)) == 1
    api.set_mig_mode(0, True)  # the reset cancelled: back to normal
    apply_layout(nvml, 0, LAYOUT, store, owner)


def test_teardown_refuses_an_instance_someone_replaced(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path, history_ids=True)
    (rec,) = apply_layout(nvml, 0, {"1g.10gb": 1}, store, owner).created
    # someone destroyed ours and made a 1g.10gb+me that the driver gave the same id
    api.replace_gpu_instance(0, rec.gi_id, "1g.10gb+me", rec.start + 1)
    report = teardown(nvml, store, owner.run_id)
    (refused,) = report.refused
    assert refused == (f"refusing to destroy GPU instance {rec.gi_id} on GPU 0: it is now "
                       f"1g.10gb+me at memory slice {rec.start + 1}, not the 1g.10gb at "
                       f"{rec.start} that run run-F created (someone replaced it); the stale "
                       "record was dropped")
    assert store.records() == []
    assert [(g.gi_id, g.profile) for g in gpu_instances(nvml.instances(0))] == [
        (rec.gi_id, "1g.10gb+me")]


def test_history_ids_differ_between_gpus_for_one_layout(tmp_path, store, owner):
    api = SimulatedNvml(tmp_path / "gpu.json", gpu_count=2, layout={})
    api.set_faults(history_ids=True)
    nvml = Nvml(api)
    for index in (0, 1):
        apply_layout(nvml, index, LAYOUT, store, owner)
    ids = [sorted(g.gi_id for g in gpu_instances(nvml.instances(i))) for i in (0, 1)]
    place = [sorted((g.profile, g.start) for g in gpu_instances(nvml.instances(i)))
             for i in (0, 1)]
    assert place[0] == place[1] and ids[0] != ids[1]
    teardown(nvml, store, owner.run_id)
    assert store.records() == [] and nvml.instances(0) == nvml.instances(1) == []


def test_listing_that_lags_does_not_forget_an_instance(tmp_path, store, owner):
    api, nvml = open_gpu(tmp_path)
    (rec,) = apply_layout(nvml, 0, {"3g.40gb": 1}, store, owner).created
    api.set_faults(stale_listing=20)  # more than one listing pass
    gi = nvml.create_gpu_instance(0, "1g.10gb", 6)  # someone's; the listing lags it
    assert gi not in {i.gi_id for i in nvml.instances(0)}
    assert nvml.gpu_instance_exists(0, gi)
    assert teardown(nvml, store, owner.run_id).destroyed == [rec.describe()]
    assert [g.gi_id for g in gpu_instances(nvml.instances(0))] == [gi]


@pytest.mark.parametrize("caller", CALLERS)
def test_a30_instance_counts_come_from_the_table(tmp_path, store, owner, caller):
    api, nvml = open_gpu(tmp_path, model="A30-24GB", caller=caller, wrong_instance_count=True)
    raw = api.nvmlDeviceGetGpuInstanceProfileInfo(api.nvmlDeviceGetHandleByIndex(0), 0)
    assert raw.instanceCount == 1  # what NVML says on an A30
    counts = {p.name: p.instance_count for p in nvml.gi_profiles(0)}
    assert counts == {"1g.6gb": 4, "1g.6gb+me": 1, "2g.12gb": 2, "2g.12gb+me": 1, "4g.24gb": 1}
    dec = {p.name: p.dec for p in nvml.gi_profiles(0)}
    assert dec["1g.6gb"] == 0 and dec["1g.6gb+me"] == 1  # MIG user guide, A30 table
    if caller == "user":
        with pytest.raises(GpuError, match="run as root or grant the mig-config capability"):
            apply_layout(nvml, 0, {"1g.6gb": 4}, store, owner)
        api.configure(caller="root")
    apply_layout(nvml, 0, {"1g.6gb": 4}, store, owner)
    api.configure(caller=caller)
    assert [i.profile for i in nvml.instances(0)] == ["1g.6gb"] * 4
    api.configure(caller="root")
    assert teardown(nvml, store, owner.run_id).refused == [] and store.records() == []


def test_mig_device_index_gaps_are_skipped(tmp_path):
    api, nvml = open_gpu(tmp_path, layout={"1g.10gb": 3}, index_gaps=True)
    h = api.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        api.nvmlDeviceGetMigDeviceHandleByIndex(h, 0)
    assert len(nvml.instances(0)) == 3 and all(i.uuid for i in nvml.instances(0))
    gi = nvml.create_gpu_instance(0, "2g.20gb")
    ci, uuid = nvml.create_compute_instance(0, gi)
    assert uuid in {i.uuid for i in nvml.instances(0)}


def test_compute_instance_profiles_are_realistic(tmp_path):
    api, nvml = open_gpu(tmp_path, layout={"4g.40gb": 1, "1g.20gb": 1})
    h = api.nvmlDeviceGetHandleByIndex(0)
    four = api.nvmlDeviceGetGpuInstanceById(h, nvml.instances(0)[0].gi_id)

    def offered(gi):
        out = []
        for const in range(pynvml.NVML_COMPUTE_INSTANCE_PROFILE_COUNT):
            try:
                info = api.nvmlGpuInstanceGetComputeInstanceProfileInfo(gi, const, 0)
            except pynvml.NVMLError_NotSupported:
                continue
            out.append((const, info.sliceCount, info.multiprocessorCount, info.name))
        return out

    assert offered(four) == [(0, 1, 14, "MIG 1c.4g.40gb"), (1, 2, 28, "MIG 2c.4g.40gb"),
                             (3, 4, 56, "MIG 4g.40gb")]  # no 3c in a 4g
    one = api.nvmlDeviceGetGpuInstanceById(h, nvml.instances(0)[1].gi_id)
    assert offered(one) == [(0, 1, 14, "MIG 1g.20gb")]  # A100: no profile 7
    # H100's 1g.20gb has 26 SMs: profile 7 (1_SLICE_REV1) fills it, profile 0 gets 16
    h100 = tmp_path / "h100"
    api, nvml = open_gpu(h100, model="H100-SXM5-80GB")
    gi = nvml.create_gpu_instance(0, "1g.20gb")
    rev = api.nvmlDeviceGetGpuInstanceById(api.nvmlDeviceGetHandleByIndex(0), gi)
    assert offered(rev) == [(0, 1, 16, "MIG 1c.1g.20gb"), (7, 1, 26, "MIG 1g.20gb")]
    ci, uuid = nvml.create_compute_instance(0, gi)
    mig = api.nvmlDeviceGetHandleByUUID(uuid)
    assert api.nvmlDeviceGetName(mig) == "NVIDIA H100 80GB HBM3 MIG 1g.20gb"
    assert [i.profile for i in nvml.instances(0)] == ["1g.20gb"]
