"""Which cases a test module gets: its suite.yaml expanded for the GPU model of this run."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pytest_mig.errors import SuiteError
from pytest_mig.run.settings import Settings
from pytest_mig.run.state import MigSession


def uses_suites(config, settings: Settings) -> bool:
    """A run is a pytest-mig run when it points at suites (or names a backend explicitly)."""
    if settings.backend_named:
        return True
    for arg in config.args:
        p = Path(str(arg).split("::")[0])
        if not p.exists():
            continue
        p = p.resolve()
        if any((d / "suite.yaml").exists() for d in [p if p.is_dir() else p.parent, *p.parents]):
            return True
        if p.is_dir() and any(p.glob("*/suite.yaml")):
            return True
    return False


def suite_path_for(module: Path) -> Path:
    """The suite.yaml beside the test module, or in its nearest parent directory."""
    for d in [module.parent, *module.parent.parents]:
        candidate = d / "suite.yaml"
        if candidate.exists():
            return candidate
    raise SuiteError(f"no suite.yaml beside {module} or in its parents",
                     fix="put the test module in a suite folder such as suites/datacenter/")


def cases_for_module(session: MigSession, module: Path) -> list:
    suite = session.suite(suite_path_for(module))
    model = session.gpu_model()
    cases = suite.expand(model, run_profile=session.settings.run_profile)
    if cases:
        return cases
    # The suite has nothing for this GPU model: still show its cases, skipped with the reason.
    reason = suite.unsupported_reason(model) or f"suite {suite.name} has no cases for {model}"
    any_model = next(iter(suite.gpus))
    return [replace(c, skip_reason=reason, gpu_model=model)
            for c in suite.expand(any_model, run_profile=session.settings.run_profile)]
