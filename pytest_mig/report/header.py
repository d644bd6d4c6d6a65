"""The run header: which NVML (real or SIMULATED), which GPUs and layout, which harness."""
from __future__ import annotations

import platform
import time
from collections import Counter
from typing import Any

from pytest_mig.io import write_json_atomic
from pytest_mig.redact import mask_options
from pytest_mig.workload_contract import BACKGROUND_CPU_DUTY


SIMULATED_BANNER = ("pytest-mig: *** SIMULATED GPU: no hardware is used; timings are CPU "
                    "timings of the built-in harness, not GPU results ***")


def header_lines(session) -> list[str]:
    topo = session.topology()
    s = session.settings
    lines = [topo.describe() if hasattr(topo, "describe") else str(topo)]
    if topo.backend == "simulated":
        lines.append(SIMULATED_BANNER)
    duty = background_cpu_duty(session)
    if duty is not None:
        try:
            fraction = float(duty)
        except ValueError:  # the harness refuses it with its own message when a case runs
            fraction = 1.0
        if fraction < 1:
            lines.append(f"pytest-mig: backgrounds on the CPU are a paced load (each computes at "
                         f"most {fraction:.0%} of the time): on a CPU they can only contend for cores")
    lines.append(f"pytest-mig: run {session.run_id} -> {session.run_dir}; harness {s.harness}"
                 + (f" {mask_options(s.harness_options)}" if s.harness_options else "")
                 + (f"; run profile {s.run_profile}" if s.run_profile else ""))
    session.ensure_run_dir()
    try:
        write_json_atomic(session.run_dir / "run.json", run_header(session))
    except OSError:
        pass  # pytest_sessionstart writes it too and names the failure
    return lines


def background_cpu_duty(session) -> str | None:
    """The built-in harness's background busy fraction on the CPU.

    None where no pacing applies: another harness, or the built-in harness on a GPU (the
    workload paces only a CPU device; on a GPU its backgrounds run flat out)."""
    if session.settings.harness != "loadgen":
        return None
    on_cpu = (session.topology().backend == "simulated"
              or session.settings.harness_options.get("device") == "cpu")
    if not on_cpu:
        return None
    return session.settings.harness_options.get("background_cpu_duty") or BACKGROUND_CPU_DUTY


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
        "driver": topo.driver,
        "nvml_version": topo.nvml_version,
        "gpus": [{"index": g.index, "name": g.name, "model": g.model_key,
                  "mig": g.mig_current} for g in topo.gpus],
        "layout": layout,
        "harness": session.settings.harness,
        "harness_options": mask_options(session.settings.harness_options),
        "passed_env": list(session.settings.pass_env),  # names only, never values
        "background_cpu_duty": background_cpu_duty(session),
        "run_profile": session.settings.run_profile,
        "python": platform.python_version(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **({"shard": session.shard} if getattr(session, "shard", None) else {}),  # fleet/
    }
