"""The plugin launches the workload program and never imports it: the built-in adapter
(harness/loadgen.py) and the child (workload/cli.py) agree through workload_contract.py."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pytest_mig import workload_contract as contract

REPO = Path(__file__).resolve().parents[1]


def test_the_plugin_side_builds_and_checks_the_command_without_importing_the_workload(tmp_path):
    code = f"""
import json, sys
from pathlib import Path
import pytest_mig.plugin
from pytest_mig.harness import get_harness
from pytest_mig.harness.loadgen import check_options
from pytest_mig.types import Partition, WorkSpec
check_options({{"size": "small", "precision": "bf16", "device": "cpu"}})
work = WorkSpec(role="background", name="bg1-bert", benchmark="bert", scenario="Offline",
                mode="performance", min_duration_ms=1000, min_query_count=1,
                log_dir=Path({str(tmp_path)!r}))
part = Partition(kind="mig", gpu_index=0, gpu_uuid="GPU-x", device_id="MIG-x", profile="1g.10gb",
                 simulated=True)
spec = get_harness("loadgen").launch(work, part, {{}}, Path({str(tmp_path / "log")!r}))
loaded = [m for m in sys.modules if m.split(".")[:2] == ["pytest_mig", "workload"]
          or m.split(".")[0] in ("torch", "mlperf_loadgen")]
print(json.dumps({{"argv": list(spec.argv), "loaded": loaded}}))
"""
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["loaded"] == []
    argv = out["argv"]
    assert argv[1:3] == ["-m", contract.MODULE]
    assert argv[argv.index("--cpu-duty") + 1] == contract.BACKGROUND_CPU_DUTY


def test_the_child_accepts_what_the_contract_lists_and_names_itself_after_it():
    from pytest_mig.workload import cli

    actions = {a.dest: a for a in cli.parser()._actions}
    assert tuple(actions["size"].choices) == contract.SIZES
    assert tuple(actions["precision"].choices) == contract.PRECISIONS
    assert tuple(actions["device"].choices) == contract.DEVICES
    res = subprocess.run([sys.executable, "-m", contract.MODULE, "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith(f"usage: python -m {contract.MODULE} ")
