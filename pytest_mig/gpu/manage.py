"""Reach a wanted MIG layout on one GPU, and undo it, touching only what this run created.

Rules: reuse matching instances first; destroy only instances recorded as this run's
(OwnershipStore) that have no processes and stand in the way; never change MIG mode.
Every created instance is recorded before anything else happens, so a crash leaves a record
the next run recognises (`clean_stale`). Instance ids are never assumed: an instance is ours
only when id, profile and placement all match the record. A caller NVML refuses the MIG
queries to (non-root without the mig-config capability) is told so before anything is
changed; a MIG mode change pending a GPU reset refuses any change too.
"""
from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, ContextManager, Iterable, Mapping, Sequence

import pynvml

from pytest_mig.errors import GpuError, LayoutError
from pytest_mig.gpu.ownership import OwnedInstance, Owner, OwnershipStore, boot_id, stale_reason
from pytest_mig.gpu.planner import Placement, check_fits, describe_request, plan
from pytest_mig.gpu.profiles import GpuModel, MigProfile, SimFigures
from pytest_mig.gpu.nvml import GRANT, NvmlCallError, pending_text
from pytest_mig.gpu.topology import GpuInfo, MigInstance, layout_text

Hold = Callable[[str], ContextManager[object]]  # GPU UUID -> a lease held while inside


@dataclass(frozen=True)
class GiView:
    """One GPU instance as found on the GPU, with its compute instances (MIG devices)."""

    gi_id: int
    profile: str
    start: int
    size: int
    ci_ids: tuple[int, ...]
    uuids: tuple[str, ...]

    @property
    def slices(self) -> range:
        return range(self.start, self.start + self.size)

    @property
    def usable(self) -> bool:
        """Has a MIG device a workload can be pinned to."""
        return bool(self.uuids)

    def describe(self) -> str:
        where = f"at memory slice {self.start}" if self.start >= 0 else "placement unreadable"
        return f"GPU instance {self.gi_id} ({self.profile} {where})"


def gpu_instances(instances: Iterable[MigInstance]) -> list[GiView]:
    """Group the wrapper's per-compute-instance rows into GPU instances, by placement."""
    rows: dict[int, list[MigInstance]] = {}
    for i in instances:
        rows.setdefault(i.gi_id, []).append(i)
    out = []
    for gi_id, items in rows.items():
        first = items[0]
        cis = sorted((i.ci_id, i.uuid) for i in items if i.ci_id is not None)
        out.append(GiView(gi_id, first.profile, first.placement_start, first.placement_size,
                          tuple(c for c, _ in cis), tuple(str(u) for _, u in cis if u)))
    return sorted(out, key=lambda g: (g.start, g.gi_id))


def mig_disabled_text(gpu: GpuInfo) -> str:
    pending = " (enabled after a GPU reset: sudo nvidia-smi -i {0} -r)".format(gpu.index) \
        if gpu.mig_pending else ""
    return (f"GPU {gpu.index} ({gpu.label}) has MIG mode disabled{pending}; pytest-mig never "
            f"changes MIG mode. Enable it with: sudo nvidia-smi -i {gpu.index} -mig 1 (then "
            f"reset the GPU with sudo nvidia-smi -i {gpu.index} -r, or reboot)")


def live_model(nvml, index: int) -> GpuModel:
    """GPU `index`'s geometry from NVML's own profile table (placements as the driver says)."""
    gpu = nvml.gpu(index)
    profiles = tuple(MigProfile(
        name=p.name, profile_const=p.profile_const, id=p.id, instance_count=p.instance_count,
        memory_mb=p.memory_mb, sm_count=p.sm_count, slice_count=p.slice_count, ce=p.ce,
        dec=p.dec, enc=p.enc, jpeg=p.jpeg, ofa=p.ofa,
        placement_starts=tuple(s for s, _ in p.placements), placement_size=p.placements[0][1])
        for p in nvml.gi_profiles(index) if p.placements)
    if not profiles:
        raise GpuError(f"GPU {index} ({gpu.name}) reports no MIG profiles: it does not support "
                       "MIG; run on a MIG GPU or with --mig-backend=simulated")
    return GpuModel(
        key=gpu.label, nvml_name=gpu.name, pci_device_id=gpu.pci_device_id,
        memory_total=gpu.memory_total, total_sms=max(p.sm_count for p in profiles),
        compute_slices=max(p.slice_count for p in profiles),
        memory_slices=max(s + p.placement_size for p in profiles for s in p.placement_starts),
        profiles=profiles, source=f"NVML profile table of GPU {index}", sim=SimFigures())


# -- planning (pure) ---------------------------------------------------------------------

@dataclass(frozen=True)
class ApplyPlan:
    """What reaching a layout takes: instances kept for it, destroyed, created."""

    reuse: tuple[GiView, ...]
    destroy: tuple[GiView, ...]
    create: tuple[Placement, ...]


def _pick(gis: Sequence[GiView], wanted: Mapping[str, int]) -> list[GiView]:
    """Up to wanted[p] usable instances of each wanted profile, lowest placement first."""
    left, out = Counter(wanted), []
    for g in sorted(gis, key=lambda g: (g.start, g.gi_id)):
        if g.usable and left[g.profile] > 0:
            left[g.profile] -= 1
            out.append(g)
    return out


def _missing(wanted: Mapping[str, int], have: Sequence[GiView]) -> dict[str, int]:
    got = Counter(g.profile for g in have)
    return {p: n - got[p] for p, n in wanted.items() if n > got[p]}


def _limits(model: GpuModel, keep: Sequence[GiView], new: Sequence[Placement]) -> str | None:
    """Why `keep` + `new` break the compute-slice or instance-count limits, else None."""
    compute = sum(model.profile(x.profile).slice_count for x in [*keep, *new])
    if compute > model.compute_slices:
        return f"needs {compute} of {model.compute_slices} compute slices"
    counts = Counter(x.profile for x in [*keep, *new])
    for name, n in sorted(counts.items()):
        if n > model.profile(name).instance_count:
            return f"needs {n} x {name}, at most {model.profile(name).instance_count} allowed"
    return None


def _fit(model: GpuModel, missing: Mapping[str, int], keep: Sequence[GiView]) -> list[Placement]:
    """Placements for `missing` around `keep`; LayoutError when they do not fit."""
    found = plan(model, missing, [Placement(g.profile, g.start, g.size) for g in keep])
    why = _limits(model, keep, found)
    if why:
        raise LayoutError(f"{describe_request(model, missing)} beside the kept instances {why}")
    return found


def plan_apply(model: GpuModel, gis: Sequence[GiView], wanted: Mapping[str, int],
               removable: Iterable[int] = (), reasons: Mapping[int, str] | None = None,
               gpu_text: str = "the GPU") -> ApplyPlan:
    """Reuse first; else destroy only `removable` GIs (this run's, idle) that are in the way.

    LayoutError when the layout cannot exist on this model at all; GpuError naming the
    instances in the way when only instances we may not destroy prevent it.
    """
    check_fits(model, wanted)
    wanted = {p: n for p, n in wanted.items() if n}
    reuse = _pick(gis, wanted)
    missing = _missing(wanted, reuse)
    if not missing:
        return ApplyPlan(tuple(reuse), (), ())
    with contextlib.suppress(LayoutError):
        return ApplyPlan(tuple(reuse), (), tuple(_fit(model, missing, gis)))
    movable_ids = set(removable)
    fixed = [g for g in gis if g.gi_id not in movable_ids]
    movable = [g for g in gis if g.gi_id in movable_ids]
    reuse = _pick(fixed, wanted)
    try:
        fresh = plan(model, _missing(wanted, reuse), [Placement(g.profile, g.start, g.size)
                                                      for g in fixed])
    except LayoutError as exc:
        raise _blocked(model, gis, fixed, wanted, reasons or {}, gpu_text, str(exc)) from None
    create, kept_movable = [], []
    for p in fresh:  # our own instance already where the plan wants one: keep it
        same = next((g for g in movable if g not in kept_movable and g.usable
                     and (g.profile, g.start) == (p.profile, p.start)), None)
        if same is not None:
            kept_movable.append(same)
        else:
            create.append(p)
    taken = {s for p in create for s in p.slices}
    destroy = [g for g in movable if g not in kept_movable and taken & set(g.slices)]
    spare = sorted((g for g in movable if g not in kept_movable and g not in destroy),
                   key=lambda g: (-model.profile(g.profile).slice_count, g.start))
    while _limits(model, [g for g in gis if g not in destroy], create) and spare:
        destroy.append(spare.pop(0))  # free compute slices / instance counts, biggest first
    why = _limits(model, [g for g in gis if g not in destroy], create)
    if why:
        raise _blocked(model, gis, fixed, wanted, reasons or {}, gpu_text, why)
    return ApplyPlan(tuple(reuse + kept_movable), tuple(destroy), tuple(create))


def _have(model: GpuModel, index: int, gis: Sequence[GiView]) -> str:
    return layout_text([MigInstance(index, g.gi_id, None, g.profile, g.start, g.size, None,
                                    model.profile(g.profile).memory_bytes) for g in gis])


def _blocked(model: GpuModel, gis: Sequence[GiView], fixed: Sequence[GiView],
             wanted: Mapping[str, int], reasons: Mapping[int, str], gpu_text: str,
             why: str) -> GpuError:
    held = "; ".join(f"{g.describe()}: {reasons.get(g.gi_id, 'not created by this run')}"
                     for g in fixed) or "none"
    have = _have(model, 0, gis)
    return GpuError(
        f"cannot reach {describe_request(model, wanted)} on {gpu_text}: it has {have}, and "
        f"pytest-mig may not destroy these instances in the way: {held} ({why}). Free the GPU "
        "(sudo nvidia-smi mig -dci && sudo nvidia-smi mig -dgi, with -i for one GPU) or "
        "choose a layout that fits beside them")


def create_commands(index: int, placements: Sequence[Placement], clear_first: bool) -> str:
    """nvidia-smi commands that create `placements` (GPU instances with their compute ones)."""
    cgi = ",".join(f"{p.profile}:{p.start}" for p in placements)
    steps = [f"sudo nvidia-smi mig -i {index} -dci", f"sudo nvidia-smi mig -i {index} -dgi"] \
        if clear_first else []
    steps.append(f"sudo nvidia-smi mig -i {index} -cgi {cgi} -C")
    return " && ".join(steps)


def layout_problem(gpu: GpuInfo, model: GpuModel, gis: Sequence[GiView],
                   need: Mapping[str, int], target: Mapping[str, int],
                   run_hint: str) -> str | None:
    """None when the GPU has the instances a case `need`s; else how to reach `target`."""
    if not gpu.mig_current:
        return mig_disabled_text(gpu)
    check_fits(model, target)
    if not _missing(need, _pick(gis, need)):
        return None
    missing = _missing(target, _pick(gis, target))
    try:
        if any(g.start < 0 for g in gis):  # placements unreadable to this user
            raise LayoutError("placements unknown")
        how = create_commands(gpu.index, _fit(model, missing, gis), clear_first=False)
    except LayoutError:
        how = create_commands(gpu.index, plan(model, target), clear_first=True)
    return (f"GPU {gpu.index} ({gpu.label}) has {_have(model, gpu.index, gis)}; this case needs "
            f"{describe_request(model, target)}. Let pytest-mig create it for the run (and "
            f"remove it at the end): {run_hint} --mig-manage; or create it by hand: {how}")


def mig_mode_notes(gpus: Sequence[GpuInfo]) -> list[str]:
    """Run-header lines for GPUs with MIG disabled, with the command that enables it."""
    off = [g for g in gpus if not g.mig_current]
    if not off:
        return []
    if len(off) == len(gpus) > 1:
        return [f"pytest-mig: MIG mode is disabled on all {len(gpus)} GPUs; pytest-mig never "
                "changes MIG mode. Enable it with: sudo nvidia-smi -mig 1 (then reset the GPUs "
                "with sudo nvidia-smi -r, or reboot)"]
    return [f"pytest-mig: {mig_disabled_text(g)}" for g in off]


# -- acting on the GPU -------------------------------------------------------------------

@dataclass
class ApplyResult:
    """What apply_layout did on one GPU."""

    gpu_index: int
    wanted: dict[str, int]
    reused: list[GiView] = field(default_factory=list)
    created: list[OwnedInstance] = field(default_factory=list)
    destroyed: list[OwnedInstance] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """True when the GPU was reconfigured (anything created or destroyed)."""
        return bool(self.created or self.destroyed)


def _live(nvml, index: int) -> dict[int, GiView]:
    return {g.gi_id: g for g in gpu_instances(nvml.instances(index))}


def _pids(nvml, index: int, gi_id: int) -> list[int]:
    return sorted({p.pid for p in nvml.processes_on(index, gi_id)})


def apply_layout(nvml, index: int, wanted: Mapping[str, int], store: OwnershipStore,
                 owner: Owner) -> ApplyResult:
    """Make GPU `index` hold `wanted`, recording what is created; never changes MIG mode."""
    gpu = nvml.gpu(index)
    if not gpu.mig_current:
        raise GpuError(mig_disabled_text(gpu))
    if not gpu.mig_pending:
        raise GpuError(pending_text(gpu))
    if any(p.remaining is None for p in nvml.gi_profiles(index)):
        raise GpuError(no_privilege_text(gpu))
    model = live_model(nvml, index)
    gis = gpu_instances(nvml.instances(index))
    mine = {r.gi_id: r for r in store.records()
            if r.gpu_uuid == gpu.uuid and r.run_id == owner.run_id}
    removable, reasons = set(), {}
    for g in gis:
        rec = mine.get(g.gi_id)
        if rec is None or (rec.profile, rec.start) != (g.profile, g.start):
            reasons[g.gi_id] = "not created by this run"
        elif pids := _pids(nvml, index, g.gi_id):
            reasons[g.gi_id] = f"processes {pids} run on it"
        else:
            removable.add(g.gi_id)
    todo = plan_apply(model, gis, wanted, removable, reasons, f"GPU {index} ({gpu.label})")
    result = ApplyResult(index, dict(wanted), reused=list(todo.reuse))
    for g in todo.destroy:
        result.destroyed.append(destroy_owned(nvml, gpu, mine[g.gi_id], store))
    for p in todo.create:
        result.created.append(create_owned(nvml, gpu, p, store, owner))
    return result


def no_privilege_text(gpu: GpuInfo) -> str:
    return (f"cannot manage MIG instances on GPU {gpu.index} ({gpu.label}): NVML refuses the "
            f"GPU-instance queries and changes to this user (NVML_ERROR_NO_PERMISSION); {GRANT}, "
            "or have an admin create the layout (sudo nvidia-smi mig -cgi ... -C) and run "
            "without --mig-manage")


def _live_one(nvml, index: int, gi_id: int) -> GiView | None:
    """GPU instance `gi_id` as listed; a listing that lags a change is read again."""
    for attempt in range(3):
        live = _live(nvml, index).get(gi_id)
        if live is not None or not nvml.gpu_instance_exists(index, gi_id):
            return live
        time.sleep(0.05 * (attempt + 1))
    raise GpuError(f"GPU instance {gi_id} on GPU {index} exists but NVML's instance listing "
                   "does not show it; its record is kept: check it with nvidia-smi mig -lgi "
                   f"-i {index} and rerun (pytest-mig cleans up a run's leftovers)")


def create_owned(nvml, gpu: GpuInfo, p: Placement, store: OwnershipStore,
                 owner: Owner) -> OwnedInstance:
    """Create one GPU instance at its placement and its compute instance, recording both."""
    gi_id = nvml.create_gpu_instance(gpu.index, p.profile, p.start)
    record = OwnedInstance.new(owner, gpu.uuid, gpu.index, gi_id, p.profile, p.start, p.size)
    store.put(record)  # before the compute instance: a crash in between is still recorded
    ci_id, uuid = nvml.create_compute_instance(gpu.index, gi_id)
    record = replace(record, ci_ids=(ci_id,), mig_uuids=(uuid,))
    store.put(record)
    return record


def destroy_owned(nvml, gpu: GpuInfo, record: OwnedInstance,
                  store: OwnershipStore) -> OwnedInstance:
    """Destroy what `record` says was created; refuse with GpuError while processes run."""
    live = _live_one(nvml, gpu.index, record.gi_id)
    if live is None:
        store.remove(record)  # already gone (destroyed by hand): nothing to do
        return record
    if live.start < 0:
        raise GpuError(f"cannot destroy {record.describe()}: {no_privilege_text(gpu)}; its "
                       "record is kept for a privileged run to clean up")
    if (live.profile, live.start) != (record.profile, record.start):
        store.remove(record)
        raise GpuError(f"refusing to destroy GPU instance {record.gi_id} on GPU {gpu.index}: it "
                       f"is now {live.profile} at memory slice {live.start}, not the "
                       f"{record.profile} at {record.start} that run {record.run_id} created "
                       "(someone replaced it); the stale record was dropped")
    pids = _pids(nvml, gpu.index, record.gi_id)
    if pids:
        raise GpuError(f"refusing to destroy {record.describe()}: processes {pids} run on it; "
                       "stop them first (pytest-mig never kills processes it did not start)")
    foreign = [c for c in live.ci_ids if c not in record.ci_ids]
    if foreign:
        raise GpuError(f"refusing to destroy {record.describe()}: its compute instances "
                       f"{foreign} were not created by run {record.run_id}; remove them first "
                       f"(sudo nvidia-smi mig -i {gpu.index} -gi {record.gi_id} -dci)")
    for ci in record.ci_ids:  # by id: the listing may not show them yet
        try:
            nvml.destroy_compute_instance(gpu.index, record.gi_id, ci)
        except NvmlCallError as exc:
            if exc.code != pynvml.NVML_ERROR_NOT_FOUND:
                raise  # NOT_FOUND: already gone
    nvml.destroy_gpu_instance(gpu.index, record.gi_id)
    store.remove(record)
    return record


def destroy(nvml, index: int, gi_id: int, store: OwnershipStore, run_id: str) -> OwnedInstance:
    """Destroy GPU instance `gi_id` only if run `run_id` created it (GpuError otherwise)."""
    gpu = nvml.gpu(index)
    record = next((r for r in store.records() if r.gpu_uuid == gpu.uuid and r.gi_id == gi_id),
                  None)
    if record is None or record.run_id != run_id:
        who = "no pytest-mig run" if record is None else f"run {record.run_id}"
        raise GpuError(f"refusing to destroy GPU instance {gi_id} on GPU {index}: this run "
                       f"({run_id}) did not create it ({who} did); pytest-mig destroys only its "
                       "own instances")
    return destroy_owned(nvml, gpu, record, store)


@dataclass
class CleanupReport:
    """Lines for the terminal and mig-manage.json: what was destroyed, forgotten or kept."""

    destroyed: list[str] = field(default_factory=list)
    forgotten: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def extend(self, other: CleanupReport) -> None:
        self.destroyed += other.destroyed
        self.forgotten += other.forgotten
        self.refused += other.refused

    def lines(self) -> list[str]:
        return ([f"destroyed {x}" for x in self.destroyed] + self.forgotten
                + [f"kept: {x}" for x in self.refused])


def _no_hold(_uuid: str) -> ContextManager[object]:
    return contextlib.nullcontext()


def _by_gpu(nvml, records: Sequence[OwnedInstance], report: CleanupReport,
            store: OwnershipStore) -> dict[str, tuple[GpuInfo, list[OwnedInstance]]]:
    gpus = {g.uuid: g for g in nvml.gpus()}
    out: dict[str, tuple[GpuInfo, list[OwnedInstance]]] = {}
    for r in records:
        if r.gpu_uuid not in gpus:
            store.remove(r)
            report.forgotten.append(f"forgot {r.describe()}: that GPU is no longer present")
            continue
        out.setdefault(r.gpu_uuid, (gpus[r.gpu_uuid], []))[1].append(r)
    return out


def teardown(nvml, store: OwnershipStore, run_id: str, hold: Hold = _no_hold) -> CleanupReport:
    """Destroy everything run `run_id` created (each GPU under `hold`); refusals are kept."""
    report = CleanupReport()
    mine = [r for r in store.records() if r.run_id == run_id]
    for uuid, (gpu, records) in _by_gpu(nvml, mine, report, store).items():
        with hold(uuid):
            for r in records:
                try:
                    report.destroyed.append(destroy_owned(nvml, gpu, r, store).describe())
                except GpuError as exc:
                    report.refused.append(str(exc))
    return report


def clean_stale(nvml, store: OwnershipStore, gpu_uuids: Iterable[str] | None = None,
                hold: Hold = _no_hold, current_boot: str | None = None) -> CleanupReport:
    """Remove crashed runs' leftovers: destroy them (same boot), or forget them (rebooted)."""
    report, boot = CleanupReport(), current_boot or boot_id()
    only = None if gpu_uuids is None else set(gpu_uuids)
    stale = [(r, why) for r in store.records() if (only is None or r.gpu_uuid in only)
             for why in [stale_reason(r, boot)] if why]
    for r, why in stale:
        if r.boot_id != boot:
            store.remove(r)  # instances never survive a reboot; the ids may be someone else's
            report.forgotten.append(f"forgot {r.describe()}: {why}")
    same_boot = [r for r, _ in stale if r.boot_id == boot]
    reason = {r.key: why for r, why in stale}
    for uuid, (gpu, records) in _by_gpu(nvml, same_boot, report, store).items():
        with hold(uuid):
            for r in records:
                try:
                    destroy_owned(nvml, gpu, r, store)
                    report.destroyed.append(f"{r.describe()}, left behind: {reason[r.key]}")
                except GpuError as exc:
                    report.refused.append(str(exc))
    return report
