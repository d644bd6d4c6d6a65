"""Safety: no shell anywhere, YAML loaded safely, workloads get an explicit environment and
reports hold no environment values, per-user 0700 state, MIG instances of others untouched."""
from __future__ import annotations

import ast
import io
import json
import os
import stat
import textwrap
import tokenize
from pathlib import Path

import pytest

from faults.helpers import FAULTY, FAULTY_DIR, HEALTHY, assert_clean, fault_project

REPO = Path(__file__).resolve().parent.parent
SOURCES = sorted([*(REPO / "pytest_mig").rglob("*.py"), *(REPO / "benchmarks").glob("*.py"),
                  *(REPO / "tests" / "programs").glob("*.py")])
SECRET = "sk-live-4f7Qz9XbT2mK8vRj1Lw6Hc3Ns5Yd0Pa"


def dotted(node: ast.AST) -> str:
    """'os.system' for the expression os.system; '' for anything not a plain name chain."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text(), str(path))) if isinstance(n, ast.Call)]


def code_text(path: Path) -> str:
    """The source without comments and string literals (docstrings may mention shell=True)."""
    keep = [tok.string for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
            if tok.type not in (tokenize.COMMENT, tokenize.STRING)]
    return " ".join(keep)


def test_sources_were_found():
    assert len(SOURCES) > 40 and REPO / "pytest_mig" / "orchestration" / "process.py" in SOURCES


def shell_findings(paths: list[Path]) -> list[str]:
    shells = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput",
              "commands.getoutput", "pty.spawn"}
    found = []
    for path in paths:
        text = code_text(path)
        if "shell = True" in text or "os . system" in text or "os . popen" in text:
            found.append(f"{path}: shell=True / os.system / os.popen in code")
        for call in calls(path):
            if dotted(call.func) in shells:
                found.append(f"{path}:{call.lineno}: {dotted(call.func)}(...)")
            for kw in call.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant)
                                              and kw.value.value is False):
                    found.append(f"{path}:{call.lineno}: shell={ast.unparse(kw.value)}")
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                    a.name in ("system", "popen") for a in node.names):
                found.append(f"{path}:{node.lineno}: from os import system/popen")
    return found


def test_no_shell_anywhere():
    assert shell_findings(SOURCES) == []


SAFE_LOADERS = {"SafeLoader", "CSafeLoader", "yaml.SafeLoader", "yaml.CSafeLoader", "BaseLoader",
                "yaml.BaseLoader", "CBaseLoader", "yaml.CBaseLoader"}


def safe_loader(node: ast.AST, assigns: dict[str, ast.AST]) -> bool:
    """yaml.SafeLoader & co, a module-level alias of one, or getattr(yaml, "CSafeLoader", safe)."""
    if dotted(node) in SAFE_LOADERS:
        return True
    if isinstance(node, ast.Name) and node.id in assigns:
        return safe_loader(assigns[node.id], assigns)
    if isinstance(node, ast.Call) and dotted(node.func) == "getattr" and len(node.args) == 3:
        name = node.args[1]
        return (isinstance(name, ast.Constant) and name.value in SAFE_LOADERS
                and safe_loader(node.args[2], assigns))
    return False


def yaml_findings(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        module = ast.parse(path.read_text())
        assigns = {target.id: stmt.value for stmt in module.body if isinstance(stmt, ast.Assign)
                   for target in stmt.targets if isinstance(target, ast.Name)}
        for call in calls(path):
            name = dotted(call.func)
            if name in ("yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load",
                        "yaml.full_load_all"):
                found.append(f"{path}:{call.lineno}: {name}")
            if name in ("yaml.load", "yaml.load_all", "yaml.compose", "yaml.compose_all",
                        "yaml.parse"):
                loader = [kw.value for kw in call.keywords if kw.arg == "Loader"] + call.args[1:]
                if not loader or not safe_loader(loader[0], assigns):
                    found.append(f"{path}:{call.lineno}: {name} without a safe Loader")
        for node in ast.walk(ast.parse(path.read_text())):
            if dotted(node) in ("yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader",
                                "yaml.CLoader", "yaml.CUnsafeLoader", "yaml.CFullLoader"):
                found.append(f"{path}: {dotted(node)}")
    return found


def test_yaml_is_loaded_safely():
    assert yaml_findings(SOURCES) == []


def test_the_scanners_find_what_they_look_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(textwrap.dedent('''
        """Mentions shell=True in a docstring only."""
        import os, subprocess, yaml
        from os import system
        subprocess.run("ls", shell=True)
        subprocess.Popen(["ls"], shell=flag)
        os.system("ls")
        yaml.load(text)
        yaml.load(text, Loader=yaml.Loader)
        yaml.unsafe_load(text)
        ok = yaml.load(text, Loader=yaml.SafeLoader)
    '''))
    assert len(shell_findings([bad])) == 5  # code text, shell=True, shell=flag, os.system, import
    # yaml.load without a Loader, with yaml.Loader, yaml.unsafe_load, the yaml.Loader name
    assert len(yaml_findings([bad])) == 4


def test_yaml_tags_never_run_code(tmp_path):
    from pytest_mig.errors import LayoutError, SuiteError
    from pytest_mig.gpu.layouts import resolve_layout
    from pytest_mig.plan.suite import load_suite

    canary = tmp_path / "pwned"
    payload = f'!!python/object/apply:os.system ["touch {canary}"]'
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"suite: {payload}\n")
    with pytest.raises(SuiteError):
        load_suite(suite)
    layout = tmp_path / "layouts.yaml"
    layout.write_text(f"version: v1\nmig-configs:\n  evil: {payload}\n")
    with pytest.raises(LayoutError):
        resolve_layout(f"{layout}:evil")
    assert not canary.exists()


# -- the environment: explicit for workloads, absent from every report ----------------------

def test_a_planted_secret_reaches_no_workload_and_no_report(mini_project, monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", SECRET)
    project = fault_project(mini_project)
    alluredir = project.path / "allure-results"
    junit = project.path / "junit.xml"
    # Every workload prints its whole environment into its log (under reports/); the faulty
    # case's main then crashes, so the failure message quotes the tail of that log too.
    r = project.run({"print_env": True, "cases": {"resnet50": {"main": "crash_after_ready"}}},
                    f"--alluredir={alluredir}", f"--junitxml={junit}")
    r.assert_outcomes(failed=1, passed=1)
    main_log = (project.run_dir() / FAULTY_DIR / "main.log").read_text()
    assert "[fake] env PYTEST_MIG_RUN_ID=" in main_log  # the environment was printed
    assert "[fake] env CUDA_VISIBLE_DEVICES=MIG-" in main_log
    files = [p for root in (project.reports, alluredir) for p in root.rglob("*") if p.is_file()]
    files.append(junit)
    assert len(files) > 30 and any(p.suffix == ".json" and "result" in p.name
                                   for p in alluredir.iterdir())
    leaks = [str(p) for p in files if SECRET.encode() in p.read_bytes()
             or b"MY_API_TOKEN" in p.read_bytes()]
    assert leaks == []
    assert SECRET not in r.stdout.str()  # nor on the terminal
    assert project.records()[FAULTY]["outcome"] == "failed"
    assert project.records()[HEALTHY]["outcome"] == "passed"
    # The run's lock directory is private to the user, like the shared state directory.
    assert stat.S_IMODE((project.run_dir() / "locks").stat().st_mode) == 0o700
    assert_clean(project)


# -- per-user state directory -----------------------------------------------------------------

def test_state_dir_is_created_0700_and_tightened(tmp_path, monkeypatch):
    from pytest_mig.gpu import leases
    from pytest_mig.gpu.ownership import OwnedInstance, Owner, OwnershipStore, store_path

    monkeypatch.setenv("PYTEST_MIG_STATE_DIR", str(tmp_path / "a" / "state"))
    d = leases.state_dir()
    assert d == tmp_path / "a" / "state" and stat.S_IMODE(d.stat().st_mode) == 0o700
    lease = leases.acquire(["GPU-x"], d / "locks", timeout_s=1)
    try:
        assert stat.S_IMODE((d / "locks").stat().st_mode) == 0o700
        assert lease.path.parent == d / "locks"
    finally:
        lease.release()
    store = OwnershipStore(store_path())  # a real (not simulated) GPU's ownership records
    assert store.path.parent == d
    store.put(OwnedInstance.new(Owner.current("run-1"), "GPU-x", 0, 7, "1g.10gb", 0, 1))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    os.chmod(d, 0o755)  # loosened by someone: put back
    leases.state_dir()
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


def test_state_dir_default_is_per_user(monkeypatch, tmp_path):
    from pytest_mig.gpu import leases

    monkeypatch.delenv("PYTEST_MIG_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert leases.state_dir() == tmp_path / f"pytest-mig-{os.getuid()}"


def test_state_dir_that_is_a_symlink_is_refused(tmp_path, monkeypatch):
    from pytest_mig.errors import ConfigError
    from pytest_mig.gpu import leases

    elsewhere = tmp_path / "attacker"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o777)
    (tmp_path / "state").symlink_to(elsewhere)
    monkeypatch.setenv("PYTEST_MIG_STATE_DIR", str(tmp_path / "state"))
    with pytest.raises(ConfigError, match=r"state directory .*/state is a symlink or not a "
                                          r"directory; remove it \(or set PYTEST_MIG_STATE_DIR"):
        leases.state_dir()
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o777  # not touched


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to create a directory owned by another")
def test_state_dir_owned_by_someone_else_is_refused(tmp_path, monkeypatch):
    from pytest_mig.errors import ConfigError
    from pytest_mig.gpu import leases

    d = tmp_path / "state"
    d.mkdir()
    os.chown(d, 65534, 65534)
    monkeypatch.setenv("PYTEST_MIG_STATE_DIR", str(d))
    with pytest.raises(ConfigError, match="belongs to uid 65534, not to you"):
        leases.state_dir()


# -- MIG instances: never someone else's, never busy ones -------------------------------------
# Unit level: tests/test_mig_manage.py (test_foreign_instances_in_the_way_are_refused,
# test_destroy_refuses_instances_the_run_did_not_create, test_destroy_refuses_while_processes_run,
# test_teardown_leaves_other_runs_and_foreign_instances); end to end for instances this run did
# not create: tests/test_mig_manage_plugin.py::
# test_manage_refuses_to_destroy_instances_it_did_not_create.

EMPTY_GPU = textwrap.dedent("""
    from pytest_mig.surface.case_fixtures import SESSION_KEY
    from pytest_mig.gpu.sim.simulator import SimulatedNvml

    def pytest_configure(config):
        s = config.stash[SESSION_KEY]
        s.ensure_run_dir()
        SimulatedNvml(s.run_dir / "simulated-gpu.json", layout={})
""")

# Runs after the cases: a process (not ours) appears on one of the instances the run made.
BUSY = textwrap.dedent("""
    def test_someone_starts_a_process(mig_session):
        topo = mig_session.topology(refresh=True)
        (inst, *_) = [i for found in topo.instances.values() for i in found]
        mig_session.nvml.api.register_process(inst.uuid, pid=424242)
""")


def test_teardown_keeps_a_busy_instance_and_records_it(mini_project):
    project = fault_project(mini_project)
    project.pytester.makeconftest(EMPTY_GPU)
    (project.path / "suites" / "test_zz_busy.py").write_text(BUSY)
    r = project.run({}, "--mig-manage")
    r.assert_outcomes(passed=3)
    r.stdout.fnmatch_lines([
        "pytest-mig: destroyed the 3 MIG instance(s) this run created",
        "pytest-mig: teardown kept an instance: refusing to destroy GPU instance * (1g.10gb at "
        "memory slice *) on GPU 0 (GPU-*): processes [[]424242[]] run on it; stop them first "
        "(pytest-mig never kills processes it did not start)"])
    run_dir = project.run_dir()
    (gpu,) = json.loads((run_dir / "simulated-gpu.json").read_text())["gpus"]
    assert len(gpu["gpu_instances"]) == 1 and gpu["processes"][0]["pid"] == 424242
    # Recorded for the next run, which destroys it once the process is gone.
    own = json.loads((run_dir / "mig-ownership.json").read_text())["instances"]
    assert [(o["gi_id"], o["run_id"]) for o in own] == [(gpu["gpu_instances"][0]["id"],
                                                         run_dir.name)]
