"""--mig-dry-run: what a case would run, command by command, with the environment it sets."""
from __future__ import annotations

import os
import shlex

from pytest_mig.orchestration.hetero_run import env_for, plan_workspecs
from pytest_mig.orchestration.process import RUN_MARKER


def plan_text(case, slot, harness, test_dir, settings) -> str:
    """One block per workload: name, partition, env it sets, cwd, argv (shell-quoted for display)."""
    main_work, bg_plan = plan_workspecs(case, slot, test_dir, settings)
    lines = [f"# {case.id} on GPU {slot.gpu_index} ({slot.gpu_model})"]
    for work, part in [*bg_plan, (main_work, slot.main)]:
        env = env_for(part, settings.run_id)
        describe = getattr(harness, "describe_plan", None)
        if describe is not None:
            lines.append(describe(work, part, env))
            continue
        spec = harness.launch(work, part, env, test_dir / f"{work.name}.log")
        changed = {k: v for k, v in spec.env.items()
                   if os.environ.get(k) != v and k not in (RUN_MARKER, "PYTHONUNBUFFERED")}
        lines.append(f"{work.name}: {work.benchmark} {work.scenario} {work.mode} on "
                     f"{part.device_id} ({part.profile})")
        lines.append(f"  cwd: {spec.cwd}")
        lines.append("  env: " + " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(changed.items())))
        lines.append(f"  cmd: {shlex.join(spec.argv)}")
    return "\n".join(lines)
