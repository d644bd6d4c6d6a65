"""One pytest surface: every option is declared in surface/options.py, its default is Settings', its
value is checked when the command line is parsed; plugin.py registers every hook object."""
from __future__ import annotations

import argparse
import ast
from pathlib import Path

import pytest

from pytest_mig.run.layout_manager import LayoutManager
from pytest_mig.run.settings import Settings
from pytest_mig.run.state import LayoutPreparer
from pytest_mig.surface import options

PACKAGE = Path(options.__file__).resolve().parents[1]


class Recorder:
    """Stands in for pytest's parser and its groups: records each addoption call."""

    def __init__(self) -> None:
        self.options: dict[str, dict] = {}

    def getgroup(self, name: str, description: str = "") -> Recorder:
        return self

    def addoption(self, *names: str, **kwargs) -> None:
        for name in names:
            assert name not in self.options, f"{name} declared twice"
            self.options[name] = kwargs


@pytest.fixture(scope="module")
def declared() -> dict[str, dict]:
    rec = Recorder()
    options.add_options(rec)
    return rec.options


def calls(name: str, owner: str | None = None) -> list[tuple[str, int]]:
    """(file, line) of every call of a method `name` (of an attribute `owner`, when given,
    as in config.pluginmanager.register) in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == name):
                continue
            if owner is None or (isinstance(node.func.value, ast.Attribute)
                                 and node.func.value.attr == owner):
                found.append((str(path.relative_to(PACKAGE)), node.lineno))
    return found


def test_only_the_entry_point_reads_pytest_migs_options():
    """One way in: plugin.py builds Settings from the parsed options; everything else reads
    Settings (pytest's own options, such as verbose, are pytest's)."""
    readers = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("getoption", "getvalue") and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and str(node.args[0].value).startswith(("mig", "mlperf", "--mig", "--mlperf"))):
                readers.add(str(path.relative_to(PACKAGE)))
    assert readers == {"plugin.py"}


def test_options_and_hook_objects_have_one_home():
    assert {f for f, _ in calls("addoption")} == {"surface/options.py"}
    assert {f for f, _ in calls("addini")} <= {"surface/options.py"}
    assert {f for f, _ in calls("register", "pluginmanager")} == {"plugin.py"}


@pytest.mark.parametrize("flag, field", [
    ("--mig-sim-gpu", "sim_gpu"), ("--mig-sim-gpus", "sim_gpus"), ("--harness", "harness"),
    ("--mig-reports", "reports"), ("--mig-lease-timeout", "lease_timeout_s"),
    ("--mig-main-startup", "main_startup_s"), ("--mig-main-timeout", "main_timeout_s"),
    ("--partition", "partition"), ("--mig-background", "background"),
    ("--mig-min-duration", "min_duration_ms"), ("--mig-run-profile", "run_profile"),
    ("--mig-min-busy", "min_busy_pct"),
    ("--mig-cpu-pinning", "cpu_pinning"), ("--mig-sample-interval", "sample_interval_s"),
    ("--mig-manage", "manage"), ("--mig-layout", "layout"), ("--mig-compare", "compare"),
    ("--mig-shard", "shard"), ("--mig-shard-durations", "shard_durations"),
])
def test_defaults_are_the_settings_defaults(declared, flag, field):
    assert declared[flag]["default"] == getattr(Settings(), field)


def test_every_option_with_a_checkable_value_parses_it(declared):
    free_text = {"--mig-sim-gpu", "--mig-command", "--mig-run-profile", "--mig-layout",
                 "--mig-allure-history", "--mlperf-root", "--mlperf-docker", "--mlperf-action",
                 "--mlperf-extra-run-args", "--mlperf-main-prefix"}
    unchecked = [flag for flag, kw in declared.items()
                 if kw.get("action") not in ("store_true",) and "type" not in kw
                 and flag not in free_text]
    assert unchecked == []


@pytest.mark.parametrize("flag, bad", [
    ("--mig-backend", "simulatd"), ("--mig-sim-gpus", "x"), ("--mig-sim-gpus", "17"),
    ("--partition", "MPS"), ("--mig-cpu-pinning", "on"), ("--mig-lease-timeout", "1e309"),
    ("--mig-main-startup", "-1"), ("--mig-main-timeout", "abc"), ("--harness", "LoadGen"),
    ("--mig-harness-opt", "=x"), ("--mig-harness-opt", "a.b.c=1"), ("--mig-background", "sesion"),
    ("--mig-min-duration", "-1"), ("--mig-env", "A=B"), ("--mig-reports", ""),
    ("--mig-reports", "./"), ("--mig-sample-interval", "nan"), ("--mig-compare", "median:0"),
    ("--mig-compare-fail", "bogus:5"), ("--mig-shard", "4/3"), ("--mig-data", "/nonexistent"),
    ("--mig-shard-durations", "/nonexistent/history.jsonl"), ("--mig-min-busy", "101"),
    ("--mig-min-busy", "-1"), ("--mig-min-busy", "sixty"), ("--mig-min-busy", "nan%"),
])
def test_bad_values_are_refused_at_parse_time_naming_the_option(declared, flag, bad):
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        declared[flag]["type"](bad)
    text = str(exc.value)
    assert "\n" not in text
    assert flag in text or "folder" in text  # --mig-data names the value and the fix


@pytest.mark.parametrize("flag, text, value", [
    ("--mig-main-timeout", "30", 30.0), ("--mig-sim-gpus", "8", 8), ("--mig-min-duration", "0", 0),
    ("--mig-harness-opt", " precision.rnnt = fp32 ", ("precision.rnnt", "fp32")),
    ("--mig-harness-opt", "precision.llama3.1-8b=fp8", ("precision.llama3.1-8b", "fp8")),
    ("--mig-reports", "out/deeper", Path("out/deeper")), ("--mig-sample-interval", "0", 0.0),
    ("--mig-compare-fail", "throughput:5%,p99:10%", {"throughput": 5.0, "p99": 10.0}),
    ("--mig-backend", "", ""), ("--mig-compare", " ", None), ("--mig-min-busy", "80", 80.0),
    ("--mig-min-busy", "72.5%", 72.5), ("--mig-min-busy", "0", 0.0),
])
def test_good_values_become_typed(declared, flag, text, value):
    assert declared[flag]["type"](text) == value


def test_shard_spec_names_its_run():
    spec = options.parse_shard("2/3")
    assert (spec.index, spec.count, spec.run_suffix) == (2, 3, "-shard-2-of-3")


def test_the_layout_manager_fills_the_sessions_typed_slot():
    assert isinstance(LayoutManager.__new__(LayoutManager), LayoutPreparer)
    assert not isinstance(object(), LayoutPreparer)
