"""Run-level Allure files: environment.properties, categories.json, executor.json, history.

Trends: Allure draws its trend charts from `history/` inside a *generated* report. To carry
history over, copy the previous report's `history/` folder into the new results folder
before `allure generate`; `--mig-allure-history=DIR` does that copy (DIR: the previous
report, e.g. allure-report/, or its history/ folder). Cases keep their Allure historyId
across runs because every parameter pytest-mig adds is stable for a case (no run id, no time).
"""
from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from pytest_mig.errors import ConfigError
from pytest_mig.io import UnsafeFile, is_regular, read_bytes, write_atomic, write_json_atomic

PACKAGES = ("pytest-mig", "pytest", "pytest-xdist", "allure-pytest", "nvidia-ml-py",
            "mlcommons-loadgen", "torch", "numpy")

# First match wins in Allure: the most specific categories come first.
CATEGORIES: list[dict[str, Any]] = [
    {"name": "Performance regression (--mig-compare-fail)",
     "messageRegex": "(?s).*performance regression against.*",
     "matchedStatuses": ["failed"]},
    {"name": "INVALID LoadGen result", "messageRegex": "(?s).*result is INVALID.*",
     "matchedStatuses": ["failed"]},
    {"name": "Accuracy below target", "messageRegex": "(?s).*below target.*",
     "matchedStatuses": ["failed"]},
    {"name": "Background workload unhealthy", "messageRegex": "(?s).*background unhealthy.*",
     "matchedStatuses": ["failed"]},
    {"name": "Timeout",
     "messageRegex": "(?s).*(Timeout|did not finish within|not ready within).*",
     "matchedStatuses": ["failed", "broken"]},
    {"name": "Infrastructure error",
     "messageRegex": "(?s).*(WorkloadFailure|HarnessError|GpuError|LayoutError|NvmlCallError).*",
     "matchedStatuses": ["failed", "broken"]},
]


def _escape(text: str, key: bool = False) -> str:
    """Java .properties escaping (Allure reads the file with java.util.Properties)."""
    out = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    for ch in ("=", ":", "#", "!") + ((" ",) if key else ()):
        out = out.replace(ch, "\\" + ch)
    return out


def package_versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def environment(header: Mapping[str, Any]) -> dict[str, str]:
    """What environment.properties shows, from the run header (report/header.run_header)."""
    gpus = header.get("gpus") or []
    models = sorted({str(g.get("model") or g.get("name")) for g in gpus})
    layout = header.get("layout") or {}
    env = {
        "GPU backend": ("SIMULATED (no hardware)" if header.get("simulated")
                        else str(header.get("backend", ""))),
        # A simulated run's driver/NVML versions are the simulator's made-up ones: never shown
        # as if a real driver had answered.
        "Driver": ("n/a (simulated GPU)" if header.get("simulated")
                   else str(header.get("driver", ""))),
        "NVML version": ("n/a (simulated GPU)" if header.get("simulated")
                         else str(header.get("nvml_version", ""))),
        "GPU model": ", ".join(models) or "none",
        "GPU count": str(len(gpus)),
        "MIG layout": "; ".join(
            f"GPU {idx}: " + (" + ".join(f"{n} x {p}" for p, n in sorted(counts.items()))
                              or "no MIG instances")
            for idx, counts in sorted(layout.items())) or "none",
        "Harness": str(header.get("harness", "")),
        "Run profile": str(header.get("run_profile") or "suite default"),
        "Python": str(header.get("python", "")),
        "Run id": str(header.get("run_id", "")),
    }
    env.update({f"package {k}": v for k, v in package_versions().items()})
    return env


def write_environment(alluredir: Path, header: Mapping[str, Any]) -> Path:
    lines = [f"{_escape(k, key=True)}={_escape(v)}" for k, v in environment(header).items()]
    path = alluredir / "environment.properties"
    write_atomic(path, "\n".join(lines) + "\n")
    return path


def write_categories(alluredir: Path) -> Path:
    path = alluredir / "categories.json"
    write_json_atomic(path, CATEGORIES)
    return path


def executor(env: Mapping[str, str]) -> dict[str, Any] | None:
    """Allure's executor.json for the CI system in `env` (only its build coordinates)."""
    if env.get("GITHUB_ACTIONS") == "true":
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo, run = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_RUN_ID", "")
        url = f"{server}/{repo}/actions/runs/{run}" if repo and run else ""
        return {"name": "GitHub Actions", "type": "github", "url": f"{server}/{repo}",
                "buildOrder": env.get("GITHUB_RUN_NUMBER", ""),
                "buildName": f"{env.get('GITHUB_WORKFLOW', 'workflow')} #"
                             f"{env.get('GITHUB_RUN_NUMBER', '')}", "buildUrl": url}
    if env.get("JENKINS_URL"):
        return {"name": "Jenkins", "type": "jenkins", "url": env["JENKINS_URL"],
                "buildOrder": env.get("BUILD_NUMBER", ""),
                "buildName": f"{env.get('JOB_NAME', 'job')} #{env.get('BUILD_NUMBER', '')}",
                "buildUrl": env.get("BUILD_URL", "")}
    if env.get("GITLAB_CI"):
        return {"name": "GitLab CI", "type": "gitlab", "url": env.get("CI_PROJECT_URL", ""),
                "buildOrder": env.get("CI_PIPELINE_IID", ""),
                "buildName": f"{env.get('CI_JOB_NAME', 'job')} #{env.get('CI_PIPELINE_IID', '')}",
                "buildUrl": env.get("CI_PIPELINE_URL", "")}
    if env.get("BUILDKITE"):
        return {"name": "Buildkite", "type": "buildkite", "url": env.get("BUILDKITE_BUILD_URL", ""),
                "buildOrder": env.get("BUILDKITE_BUILD_NUMBER", ""),
                "buildName": f"{env.get('BUILDKITE_PIPELINE_SLUG', 'pipeline')} "
                             f"#{env.get('BUILDKITE_BUILD_NUMBER', '')}",
                "buildUrl": env.get("BUILDKITE_BUILD_URL", "")}
    if env.get("CI", "").lower() in ("true", "1", "yes"):
        return {"name": "CI", "type": "ci", "buildName": "CI run"}
    return None


def write_executor(alluredir: Path, env: Mapping[str, str] | None = None) -> Path | None:
    data = executor(os.environ if env is None else env)
    if data is None:
        return None
    path = alluredir / "executor.json"
    write_json_atomic(path, data)
    return path


def history_source(previous: Path) -> Path:
    """The history/ folder of a previous report; ConfigError naming the fix if there is none."""
    for candidate in (previous / "history", previous):
        if (candidate / "history.json").exists() or (candidate / "history-trend.json").exists():
            return candidate
    raise ConfigError(f"--mig-allure-history={previous}: no history/history.json there; point "
                      "it at the previous generated report (e.g. allure-report/) or its "
                      "history/ folder")


def copy_history(previous: Path, alluredir: Path) -> Path:
    """Copy the previous report's history/ into <alluredir>/history for `allure generate`."""
    src = history_source(previous)
    dest = alluredir / "history"
    if dest.is_symlink():
        raise UnsafeFile(f"{dest}: refused to copy Allure history into it: it is a symlink")
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        # Plain files only: a symlink in the old report would copy its *target* (any file).
        if is_regular(item):
            write_atomic(dest / item.name, read_bytes(item), mode=0o666, fsync=False)
    return dest
