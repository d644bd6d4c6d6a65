"""pytest-mig as a user installs it: a wheel (not editable) in a fresh virtualenv, a suite
that lives outside this repository, run to a pass on the simulated GPU; and the sdist
carries the same files as the wheel (package data included). The data's one home is the
top-level fixtures/ folder; the wheel ships it as pytest_mig/data/."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT = Path(__file__).resolve().parent / "data" / "outside_project"
DATA = ["benchmarks.yaml", "compile_modes.yaml", "gpus/A100-SXM4-80GB.yaml",
        "gpus/H100-SXM5-80GB.yaml", "layouts/pytest-mig.yaml"]
DATA_FILES = {f"pytest_mig/data/{name}" for name in DATA}  # in the wheel
SOURCE_DATA = {f"fixtures/{name}" for name in DATA}  # in the checkout and the sdist

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git to copy the tree")


def _run(argv: list[str], cwd: Path, timeout: float = 600, env: dict | None = None) -> str:
    res = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert res.returncode == 0, f"{argv[:4]} exited {res.returncode}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """A wheel built from the committed tree, and an sdist plus the wheel built from it."""
    work = tmp_path_factory.mktemp("build")
    src = work / "src"
    # Only what git tracks, like a clean clone: no .venv, no reports, no caches.
    files = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                 cwd=REPO).split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    dist = work / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "-q", "-w", str(dist), str(src)], cwd=work)
    _run([sys.executable, "-c", "import sys, setuptools.build_meta as b; "
          "print(b.build_sdist(sys.argv[1]))", str(work / "sdist")], cwd=src)
    sdist = next((work / "sdist").glob("*.tar.gz"))
    from_sdist = work / "from-sdist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "-q", "-w", str(from_sdist), str(sdist)], cwd=work)
    return {"wheel": next(dist.glob("*.whl")), "sdist": sdist,
            "sdist_wheel": next(from_sdist.glob("*.whl"))}


def _wheel_files(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as zf:
        return {n for n in zf.namelist() if not n.startswith("pytest_mig-") or "dist-info" not in n}


def test_the_data_has_one_home():
    """fixtures/ holds the data; the package folder holds no second copy."""
    assert all((REPO / name).is_file() for name in SOURCE_DATA)
    assert not (REPO / "pytest_mig" / "data").exists()


def test_wheel_carries_the_package_data_and_every_module(built):
    files = _wheel_files(built["wheel"])
    assert DATA_FILES <= files
    data = {p.relative_to(REPO / "fixtures").as_posix()
            for p in (REPO / "fixtures").rglob("*.yaml")}
    assert {n.removeprefix("pytest_mig/data/") for n in files if n.startswith("pytest_mig/data/")} \
        == data
    # pyproject.toml lists the packages: every module of pytest_mig/ is in the wheel.
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "pytest_mig").rglob("*.py")}
    assert modules <= files, sorted(modules - files)
    assert not any(n.startswith(("tests/", "suites/", "fixtures/")) for n in files)


def test_sdist_builds_the_same_wheel(built):
    with tarfile.open(built["sdist"]) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert SOURCE_DATA <= names
    assert _wheel_files(built["sdist_wheel"]) == _wheel_files(built["wheel"])


def test_installed_wheel_runs_a_suite_outside_the_repo(built, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", str(built["wheel"])], cwd=tmp_path, timeout=900)
    project = tmp_path / "their-project"
    shutil.copytree(PROJECT, project)
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("PYTEST_MIG", "PYTEST_", "VIRTUAL_ENV", "PYTHONPATH"))}
    clean["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
    # The plugin imports from site-packages, not from this checkout.
    where = _run([str(py), "-c", "import pytest_mig, pytest_mig.datadir as d; "
                  "print(pytest_mig.__file__); print(d.data_path('benchmarks.yaml')); "
                  "print(d.data_path('gpus', 'A100-SXM4-80GB.yaml'))"],
                 cwd=project, env=clean).split()
    assert all("site-packages" in w and str(REPO) not in w for w in where), where
    assert where[1].endswith("pytest_mig/data/benchmarks.yaml"), where
    harness = (f"{py} {project / 'tiny_harness.py'} --scenario {{scenario}} --log-dir {{log_dir}} "
               "--min-duration-ms {min_duration_ms} --min-query-count {min_query_count} "
               "--sample-count {sample_count} --role {role}")
    res = subprocess.run(
        [str(py), "-m", "pytest", "-p", "no:cacheprovider", "-v", "--harness=command",
         f"--mig-command={harness}", "--mig-reports", str(tmp_path / "reports")],
        cwd=project, env=clean, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "1 passed" in out and "SIMULATED" in out
    run_dir = next(p for p in (tmp_path / "reports").iterdir() if p.is_dir())
    bgs = json.loads((run_dir / "session-backgrounds.json").read_text())
    assert bgs["healthy"] and len(bgs["workloads"]) == 2
    # Backgrounds that die of our SIGTERM are ours to stop: healthy, and said so.
    assert {w["ended_by"] for w in bgs["workloads"]} == {"stopped by pytest-mig"}
    assert {w["exit_code"] for w in bgs["workloads"]} == {-15}


@pytest.mark.parametrize("flags", [["-p", "pytest_mig.plugin"], ["-p", "mig"], []])
def test_the_plugin_loads_by_entry_point_and_by_module_name(pytester, flags):
    # `-p pytest_mig.plugin` beside the installed entry point `mig`: one registration.
    r = pytester.runpytest_subprocess(*flags, "--help")
    assert r.ret == 0, r.stderr.str()[-2000:]
    assert "--mig-backend" in r.stdout.str()


def test_p_no_mig_turns_the_plugin_off(pytester):
    r = pytester.runpytest_subprocess("-p", "no:mig", "--help")
    assert r.ret == 0 and "--mig-backend" not in r.stdout.str()
