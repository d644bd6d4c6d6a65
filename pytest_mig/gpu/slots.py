"""Turn a leased GPU's MIG instances into a Slot: one main partition and the backgrounds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

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
    from pytest_mig.gpu.mps import share_for
    from pytest_mig.gpu.profiles import get_model, profile_fraction

    if gpu.model_key is None:
        return SlotProblem(f"GPU {gpu.index} ({gpu.name}) has no profile table in data/gpus/; "
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

