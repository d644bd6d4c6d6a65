"""Turn a leased GPU's MIG instances into a Slot: one main partition and the backgrounds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from pytest_mig.errors import GpuError, LayoutError
from pytest_mig.gpu.layouts import cached_layout, layout_on_gpu
from pytest_mig.gpu.mps import share_for
from pytest_mig.gpu.profiles import get_model, profile_fraction
from pytest_mig.types import Partition, Slot


@dataclass(frozen=True)
class SlotProblem:
    """Why a case cannot get a slot on a GPU, with the command that would fix it."""

    reason: str


def mig_partition(inst, gpu_uuid: str, simulated: bool) -> Partition:
    uuid = inst.uuid if str(inst.uuid).startswith("MIG-") else f"MIG-{inst.uuid}"
    return Partition(kind="mig", gpu_index=inst.gpu_index, gpu_uuid=gpu_uuid, device_id=uuid,
                     profile=inst.profile, simulated=simulated, gi_id=inst.gi_id, ci_id=inst.ci_id)


def build_slot(gpu, instances: Sequence, main_profile: str, simulated: bool,
               gpu_model: str) -> Slot | SlotProblem:
    """Main = the lowest-placed instance of `main_profile`; backgrounds = all the others."""
    if not gpu.mig_current:
        return SlotProblem(
            f"GPU {gpu.index} ({gpu.name}) has MIG mode disabled; pytest-mig never enables it. "
            f"Enable it with: sudo nvidia-smi -i {gpu.index} -mig 1 (then reset or reboot), "
            "or partition the GPU with CUDA MPS instead: --partition=mps")
    ordered = sorted(instances, key=lambda i: (i.placement_start, i.gi_id))
    mains = [i for i in ordered if i.profile == main_profile]
    if not mains:
        have = ", ".join(sorted({i.profile for i in ordered})) or "none"
        return SlotProblem(
            f"GPU {gpu.index} ({gpu.name}) has no MIG instance of profile {main_profile} "
            f"(it has: {have}). Create one with: sudo nvidia-smi mig -i {gpu.index} "
            f"-cgi {main_profile} -C")
    main = mains[0]
    rest = tuple(mig_partition(i, gpu.uuid, simulated) for i in ordered if i is not main)
    return Slot(gpu_index=gpu.index, gpu_uuid=gpu.uuid, gpu_model=gpu_model,
                main=mig_partition(main, gpu.uuid, simulated), background=rest,
                simulated=simulated)


def build_shared_slot(gpu, kind: str, main_profile: str, simulated: bool, gpu_model: str,
                      mps_pipe_dir=None) -> Slot | SlotProblem:
    """Partitions of a whole GPU without MIG: MPS client shares sized like `main_profile`
    (kind "mps"), or the whole GPU shared with no limits (kind "none").

    As many partitions as the GPU could hold MIG instances of that profile, so the
    neighbour load matches the MIG layout it stands in for.
    """
    if gpu.model_key is None:
        return SlotProblem(f"GPU {gpu.index} ({gpu.name}) has no profile table in fixtures/gpus/; "
                           f"--partition={kind} needs one to size its partitions")
    model = get_model(gpu.model_key)
    if not model.has_profile(main_profile):
        return SlotProblem(f"{gpu.model_key} has no MIG profile {main_profile} to emulate")
    profile = model.profile(main_profile)
    env: dict[str, str] = {}
    if kind == "mps":
        env = share_for(*profile_fraction(model, profile)).env(mps_pipe_dir)
    parts = tuple(
        Partition(kind=kind, gpu_index=gpu.index, gpu_uuid=gpu.uuid, device_id=gpu.uuid,
                  profile=main_profile, simulated=simulated, env=env)
        for _ in range(profile.instance_count))
    return Slot(gpu_index=gpu.index, gpu_uuid=gpu.uuid, gpu_model=gpu_model, main=parts[0],
                background=parts[1:], simulated=simulated)



def _layout_order(model, wanted: Mapping[str, int], main_profile: str) -> list[str]:
    """One profile name per instance of `wanted`: the main's first, then largest first."""
    names = [p for p, n in sorted(wanted.items(), key=lambda pn: (
        -model.profile(pn[0]).slice_count, -model.profile(pn[0]).memory_mb, pn[0]))
        for _ in range(n)]
    names.remove(main_profile)
    return [main_profile, *names]


def build_layout_slot(gpu, kind: str, instances: Sequence, layout_spec: str, main_profile: str,
                      simulated: bool, gpu_model: str, mps_pipe_dir=None) -> Slot | SlotProblem:
    """A layout case's slot: one partition per instance of its named layout on this GPU.

    kind "mig": the GPU's instances of the layout (lowest placement first per profile; other
    instances on the GPU are not used); "mps"/"none": one client share per instance of the
    layout, each sized from its own profile (MPS), or the whole GPU shared (none).
    """
    try:
        wanted = layout_on_gpu(cached_layout(layout_spec), gpu.index, gpu.pci_device_id,
                               gpu.label)
        if isinstance(wanted, str):
            return SlotProblem(wanted)
        model = get_model(gpu.model_key or gpu_model)
        order = _layout_order(model, wanted, main_profile)
    except (GpuError, LayoutError, ValueError) as exc:
        return SlotProblem(f"layout '{layout_spec}' on GPU {gpu.index} ({gpu.name}): {exc}")
    if kind == "mig":
        if not gpu.mig_current:
            return build_slot(gpu, instances, main_profile, simulated, gpu_model)  # the text
        free = sorted(instances, key=lambda i: (i.placement_start, i.gi_id))
        parts = []
        for name in order:
            inst = next((i for i in free if i.profile == name), None)
            if inst is None:
                have = ", ".join(i.profile for i in instances) or "none"
                return SlotProblem(
                    f"GPU {gpu.index} ({gpu.name}) lacks the instances of layout "
                    f"'{layout_spec}' ({', '.join(order)}; it has: {have}); let pytest-mig "
                    "create them with --mig-manage")
            free.remove(inst)
            parts.append(mig_partition(inst, gpu.uuid, simulated))
    else:
        parts = []
        for name in order:
            env = (share_for(*profile_fraction(model, name)).env(mps_pipe_dir)
                   if kind == "mps" else {})
            parts.append(Partition(kind=kind, gpu_index=gpu.index, gpu_uuid=gpu.uuid,
                                   device_id=gpu.uuid, profile=name, simulated=simulated,
                                   env=env))
    return Slot(gpu_index=gpu.index, gpu_uuid=gpu.uuid, gpu_model=gpu_model, main=parts[0],
                background=tuple(parts[1:]), simulated=simulated)
