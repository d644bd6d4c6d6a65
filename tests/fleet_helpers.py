"""Shared by the fleet tests: the smoke suite copied into a project, the shard command line."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SMOKE = REPO / "deploy" / "smoke"
FAKE = REPO / "tests" / "programs" / "fake_workload.py"
SMOKE_CASES = 6  # deploy/smoke/suite.yaml: resnet50 x2, bert x2, dlrm, ssd-mobilenet


def smoke_project(root: Path) -> Path:
    """root/suites/ holding the fleet smoke suite, and root/script.json for the fake workload."""
    suites = root / "suites"
    suites.mkdir(parents=True, exist_ok=True)
    for name in ("suite.yaml", "test_smoke.py"):
        shutil.copy(SMOKE / name, suites / name)
    (root / "script.json").write_text(json.dumps({}))  # every workload: valid
    return root


def smoke_args(root: Path) -> list[str]:
    """pytest options for the smoke suite on the simulated GPU with the fake workload."""
    command = (f"{sys.executable} {FAKE} --script {root / 'script.json'} --role {{role}} "
               f"--name {{name}} --log-dir {{log_dir}} --min-duration-ms {{min_duration_ms}}")
    return ["--mig-backend=simulated", "--harness=command", f"--mig-command={command}",
            "--mig-main-startup=1.5", "--mig-sample-interval=0", "-p", "no:cacheprovider", "-q",
            f"--rootdir={root}"]


def shard_args(root: Path, index: int, count: int, reports: Path, *extra: str) -> list[str]:
    """The pytest command line of one shard of the smoke suite."""
    return [sys.executable, "-m", "pytest", str(root / "suites"), f"--mig-shard={index}/{count}",
            f"--mig-reports={reports}", f"--alluredir={reports / 'allure-results'}",
            *smoke_args(root), *extra]
