"""The run header: which NVML (real or SIMULATED), which GPUs and layout, which harness."""
from __future__ import annotations

import platform
import time
from collections import Counter
from typing import Any

from pytest_mig import cpu_native
from pytest_mig.io import write_json_atomic
from pytest_mig.redact import mask_options
from pytest_mig.workload_contract import BACKGROUND_CPU_DUTY


def simulated_banner(settings) -> str:
    """The SIMULATED banner, naming the harness in use as its registry entry calls it."""
    called = settings.harnesses.entry(settings.harness).called
    return ("pytest-mig: *** SIMULATED GPU: no hardware is used; timings are CPU timings of "
            f"{called}, not GPU results ***")


def header_lines(session) -> list[str]:
    topo = session.topology()
    s = session.settings
    lines = [topo.describe() if hasattr(topo, "describe") else str(topo)]
    if topo.backend == "simulated":
        lines.append(simulated_banner(s))
    duty = background_cpu_duty(session)
    if duty is not None:
        try:
            fraction = float(duty)
        except ValueError:  # the harness refuses it with its own message when a case runs
            fraction = 1.0
        if fraction < 1:
            lines.append(f"pytest-mig: backgrounds on the CPU are a paced load (each computes at "
                         f"most {fraction:.0%} of the time): on a CPU they can only contend for cores")
    chosen = cpu_precision(session)
    if chosen is not None:
        named = s.harness_options.get("precision")
        lines.append(f"pytest-mig: CPU precision: {chosen['precision']} ({chosen['reason']})"
                     + (f"; --mig-harness-opt precision={named} overrides it" if named and named != "auto"
                        else "; a suite's `precision` overrides it"))
    lines.append(f"pytest-mig: run {session.run_id} -> {session.run_dir}; harness {s.harness}"
                 + (f" {mask_options(s.harness_options)}" if s.harness_options else "")
                 + (f"; run profile {s.run_profile}" if s.run_profile else ""))
    session.ensure_run_dir()
    try:
        write_json_atomic(session.run_dir / "run.json", run_header(session))
    except OSError:
        pass  # pytest_sessionstart writes it too and names the failure
    return lines


def _builtin_on_cpu(session) -> bool:
    """The built-in harness runs its workloads on the CPU (simulated GPU, or device=cpu)."""
    if session.settings.harness != "loadgen":
        return False
    return (session.topology().backend == "simulated"
            or session.settings.harness_options.get("device") == "cpu")


def background_cpu_duty(session) -> str | None:
    """The built-in harness's background busy fraction on the CPU.

    None where no pacing applies: another harness, or the built-in harness on a GPU (the
    workload paces only a CPU device; on a GPU its backgrounds run flat out)."""
    if not _builtin_on_cpu(session):
        return None
    return session.settings.harness_options.get("background_cpu_duty") or BACKGROUND_CPU_DUTY


def cpu_precision(session) -> dict[str, Any] | None:
    """What `precision=auto` runs on this CPU and why (cpu_native.py: the workload child makes
    the same choice); None where the built-in harness does not run on the CPU."""
    if not _builtin_on_cpu(session):
        return None
    return cpu_native.probe().as_record()


def run_header(session) -> dict[str, Any]:
    topo = session.topology()
    layout = {}
    for gpu in topo.gpus:
        counts = Counter(i.profile for i in topo.instances.get(gpu.index, []))
        layout[str(gpu.index)] = dict(counts)
    return {
        "run_id": session.run_id,
        "backend": topo.backend,
        "simulated": topo.backend == "simulated",
        # A simulator's driver/NVML versions are made up: a simulated run shows none.
        "driver": None if topo.backend == "simulated" else topo.driver,
        "nvml_version": None if topo.backend == "simulated" else topo.nvml_version,
        "gpus": [{"index": g.index, "name": g.name, "model": g.model_key,
                  "mig": g.mig_current} for g in topo.gpus],
        "layout": layout,
        "harness": session.settings.harness,
        "harness_options": mask_options(session.settings.harness_options),
        "passed_env": list(session.settings.pass_env),  # names only, never values
        "background_cpu_duty": background_cpu_duty(session),
        "cpu_precision": cpu_precision(session),
        "run_profile": session.settings.run_profile,
        "python": platform.python_version(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"shard": session.shard} if session.shard else {}),  # --mig-shard
    }
