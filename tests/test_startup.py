"""Start-up stays lazy: what the plugin's import and a collection must not load or open."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pytest_mig.run.settings import Settings
from pytest_mig.run.state import MigSession
from pytest_mig.yamlload import LOADER, safe_load

# Loaded only when a case runs, a comparison is asked for or --mig-manage/--mig-layout is
# given. A run that surely simulates prints its SIMULATED banner without opening the simulator;
# the backend opens (and run.json is written) at the first case or for the run header.
# The harness registry (harness/__init__.py, harness/registry.py: names, no adapter) is read at
# configure time; the adapters load with the first case.
LAZY_MODULES = ("pytest_mig.gpu.manage", "pytest_mig.gpu.leases", "pytest_mig.gpu.backend",
                "pytest_mig.gpu.sim", "pynvml", "pytest_mig.orchestration.hetero_run",
                "pytest_mig.harness.base", "pytest_mig.harness.loadgen",
                "pytest_mig.results", "pytest_mig.surface.case_runner", "pytest_mig.report.compare",
                "pytest_mig.report.html", "torch", "mlperf_loadgen")


def test_plugin_import_and_configure_load_no_gpu_management_or_report_modules(tmp_path):
    code = ("import sys, pytest\n"
            "pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', "
            f"'--mig-reports={tmp_path}', 'suites/datacenter'])\n"
            f"print(__import__('json').dumps([m for m in {LAZY_MODULES!r} if m in sys.modules]))\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent,
                         capture_output=True, text=True, timeout=120)
    assert "36 tests collected" in res.stdout, res.stdout + res.stderr
    assert "SIMULATED GPU: no hardware is used" in res.stdout  # said without opening it
    loaded = json.loads(res.stdout.strip().splitlines()[-1])
    assert loaded == [], f"collection loaded {loaded}"


def test_simulated_collection_knows_the_gpu_model_without_opening_the_simulator(tmp_path):
    session = MigSession(Settings(backend="simulated", sim_gpu="H100-SXM5-80GB"), "r1", tmp_path)
    assert session.gpu_model() == "H100-SXM5-80GB"
    assert session._nvml is None
    assert not (tmp_path / "reports").exists()  # no run dir, no simulator state yet
    # Opening it later gives the same model.
    assert session.topology().gpus[0].model_key == "H100-SXM5-80GB"


def test_yaml_loader_is_safe_and_fast_when_libyaml_is_there():
    assert safe_load("a: [1, 2]\n") == {"a": [1, 2]}
    if yaml.__with_libyaml__:
        assert LOADER is yaml.CSafeLoader
    with pytest.raises(yaml.YAMLError):
        safe_load("!!python/object/apply:os.system ['true']\n")
