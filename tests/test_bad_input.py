"""Bad command lines: any combination of options gives a run or our own usage error naming
the option and the fix, never an internal error or a traceback; unknown names get a
did-you-mean; options that contradict each other are refused at configure time."""
from __future__ import annotations

import argparse
import itertools
import os
import signal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_mig.surface import options
from pytest_mig.errors import ConfigError, MigError
from pytest_mig.run.settings import Settings


@pytest.fixture
def project(mini):
    """A suite project; the in-process runs' process-wide side effects are undone after."""
    handler = signal.getsignal(signal.SIGTERM)
    marker = os.environ.get("PYTEST_MIG_RUN_ID")
    yield mini.pytester
    signal.signal(signal.SIGTERM, handler)
    if marker is not None:
        os.environ["PYTEST_MIG_RUN_ID"] = marker


def usage_error(pytester, *args: str) -> str:
    """Run in process; assert a usage error and return its message (stderr)."""
    r = pytester.runpytest("suites", "-p", "no:cacheprovider", "--collect-only", *args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR, r.stdout.str()[-2000:]
    err = r.stderr.str()
    assert "Traceback" not in err and "INTERNALERROR" not in r.stdout.str()
    return err


# -- conflicts, refused when Settings are built (pytest_configure) -------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"harness": "command"},
     "--harness=command needs --mig-command, the program to run, e.g. --mig-command='prog "
     "--bench {benchmark} --out {log_dir}'"),
    ({"harness_options": {"command": "prog {benchmark}"}},
     "--mig-command is for --harness=command, but the harness is loadgen; add "
     "--harness=command or drop --mig-command"),
    ({"harness": "nvidia", "harness_options": {"mlperf_root": "/w", "command": "x"}},
     "--mig-command is for --harness=command, but the harness is nvidia"),
    ({"harness_options": {"mlperf_root": "/work"}},
     "--mlperf-root (harness option mlperf_root) is for --harness=nvidia, but the harness is "
     "loadgen; add --harness=nvidia or drop --mlperf-root"),
    ({"harness": "command", "harness_options": {"command": "p", "docker": "c"}},
     "--mlperf-docker (harness option docker) is for --harness=nvidia, but the harness is "
     "command"),
    ({"harness_options": {"verbose": "1"}}, "--mlperf-verbose (harness option verbose)"),
    ({"backend": "nvml", "sim_gpus": 2},
     "--mig-sim-gpus applies to the simulated GPU only, but --mig-backend=nvml uses the real "
     "driver; drop it, or use --mig-backend=simulated"),
    ({"backend": "nvml", "sim_gpu": "H100-SXM5-80GB"}, "--mig-sim-gpu applies to the simulated"),
    ({"main_startup_s": 30.0, "main_timeout_s": 20.0},
     "--mig-main-startup=30 is not below --mig-main-timeout=20: every main would be stopped "
     "before its timed phase; raise the timeout"),
    ({"sim_gpu": "A100-SXM4-80G"}, "--mig-sim-gpu=A100-SXM4-80G: unknown GPU model "
                                   "'A100-SXM4-80G' (did you mean 'A100-SXM4-80GB'?)"),
])
def test_settings_refuse(kwargs, message):
    with pytest.raises(ConfigError) as exc:
        Settings(**kwargs)
    assert message in str(exc.value)


# -- single values, refused when the command line is parsed (options.py) --------------------

@pytest.mark.parametrize("parse, text, message", [
    (options.parse_seconds("--mig-main-timeout", "main_timeout_s"), "nan",
     "--mig-main-timeout=nan: must be a finite number of seconds > 0, e.g. "
     "--mig-main-timeout=900"),
    (options.parse_seconds("--mig-lease-timeout", "lease_timeout_s"), "inf",
     "--mig-lease-timeout=inf: must be a finite number"),
    (options.parse_seconds("--mig-main-startup", "main_startup_s"), "0.0",
     "--mig-main-startup=0.0: must be a finite number of seconds > 0"),
    (options.parse_sim_gpus, "0", "--mig-sim-gpus=0: needs at least 1 GPU and at most 16"),
    (options.parse_sim_gpus, "17", "--mig-sim-gpus=17: needs at least 1 GPU and at most 16"),
    (options.parse_harness, "Bad name", "--harness=Bad name: not a harness name; use lowercase "
                                        "letters, digits, '-' and '_' (built in: loadgen, "
                                        "nvidia, command)"),
    (options.parse_partition, "mgi", "--partition=mgi: unknown partition kind (did you mean "
                                     "'mig'?)"),
    (options.parse_backend, "simulatd", "--mig-backend=simulatd: unknown backend (did you mean "
                                        "'simulated'?)"),
])
def test_options_refuse_bad_values_at_parse_time(parse, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as exc:
        parse(text)
    assert message in str(exc.value)


@pytest.mark.parametrize("kwargs", [
    {}, {"harness": "command", "harness_options": {"command": "prog {benchmark}"}},
    {"harness": "nvidia", "harness_options": {"mlperf_root": "/w", "docker": "c", "verbose": "1"}},
    {"backend": "nvml"}, {"backend": "simulated", "sim_gpus": 8, "sim_gpu": "H100-SXM5-80GB"},
    {"harness_options": {"precision.rnnt": "fp32", "size": "small"}},
])
def test_settings_accept(kwargs):
    Settings(**kwargs)


@pytest.mark.parametrize("partition", ["mps", "none"])
@pytest.mark.parametrize("flag, manage, layout", [("--mig-manage", True, None),
                                                  ("--mig-layout", False, "hetero-1g")])
def test_manage_and_layout_need_mig_partitions(partition, flag, manage, layout):
    with pytest.raises(ConfigError, match=f"{flag} works on MIG instances, but --partition="
                                          f"{partition} runs without them; use --partition=mig"):
        Settings(partition=partition, manage=manage, layout=layout)
    Settings(partition="mig", manage=manage, layout=layout)
    Settings(partition="auto", manage=manage, layout=layout)


@pytest.mark.parametrize("args, message", [
    (["--mig-command=prog {benchmark}"], "--mig-command is for --harness=command"),
    (["--harness=command"], "--harness=command needs --mig-command"),
    (["--mlperf-root=/work"], "--mlperf-root (harness option mlperf_root) is for "
                              "--harness=nvidia"),
    (["--harness=command", "--mig-command=p", "--mlperf-verbose"], "--mlperf-verbose"),
    (["--mig-backend=nvml", "--mig-sim-gpus=2"], "--mig-sim-gpus applies to the simulated GPU"),
    (["--mig-main-timeout=nan"], "--mig-main-timeout=nan: must be a finite number"),
    (["--harness=loadgne"], "--harness=loadgne: unknown harness (did you mean 'loadgen'?)"),
    (["--harness=comand"], "--harness=comand: unknown harness (did you mean 'command'?); "
                           "choose one of loadgen, nvidia, command"),
])
def test_conflicts_are_usage_errors_at_configure_time(project, args, message):
    assert message in usage_error(project, *args)


@pytest.mark.parametrize("args", [["--partition=mps", "--mig-manage"],
                                  ["--partition=none", "--mig-layout=hetero-1g"]])
def test_manage_with_a_non_mig_partition_is_a_usage_error(project, args):
    assert "works on MIG instances, but --partition=" in usage_error(project, *args)


@pytest.mark.parametrize("arg", ["--mig-sample-interval=inf", "--mig-sample-interval=nan",
                                 "--mig-compare-fail=throughput:nan%"])
def test_non_finite_report_options_are_usage_errors(project, arg):
    usage_error(project, arg)


# -- unknown names ---------------------------------------------------------------------------

def test_unknown_names_get_did_you_mean(project):
    assert "unknown MIG layout 'hetero-1h' (did you mean 'hetero-1g'?)" in usage_error(
        project, "--mig-layout=hetero-1h")
    assert "unknown GPU model 'A100-SXM4-80G' (did you mean 'A100-SXM4-80GB'?)" in usage_error(
        project, "--mig-backend=simulated", "--mig-sim-gpu=A100-SXM4-80G")
    # Checked at configure time against the run's suites: a usage error, no run folder.
    assert "--mig-run-profile=smok: no suite of this run defines it (did you mean 'smoke'?)" in (
        usage_error(project, "--mig-backend=simulated", "--mig-run-profile=smok"))


# -- property: nothing the command line can say crashes the plugin -------------------------

TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=12)
SECONDS = st.sampled_from(["0", "-1", "nan", "inf", "1e309", "0.5", "abc", "20", "900"])
OPTIONS = {
    "--mig-backend": st.sampled_from(["auto", "nvml", "simulated", "simulatd", "SIMULATED", ""]),
    "--mig-sim-gpu": st.sampled_from(["A100-SXM4-80GB", "H100-SXM5-80GB", "A30-24GB", "A100",
                                      "a100-sxm4-80gb"]) | TEXT,
    "--mig-sim-gpus": st.integers(-2, 70).map(str) | TEXT,
    "--mig-run-profile": st.sampled_from(["smoke", "nightly", "submission", "smokee"]) | TEXT,
    "--harness": st.sampled_from(["loadgen", "command", "nvidia", "comand", "LoadGen"]) | TEXT,
    "--mig-harness-opt": st.sampled_from([
        "precision=bf16", "size=small", "command=prog {benchmark}", "badopt", "=x", "a.b.c=1",
        "config_ver.bert=hetero", "mlperf_root=/nonexistent", "ready=(unclosed"]) | TEXT,
    "--mig-command": st.sampled_from([
        "prog {benchmark} {log_dir}", "prog {nope}", "prog {", "'unclosed", "", "prog {0}",
        "prog {log_dir!x}", "prog {min_duration_ms:>>>}"]) | TEXT,
    "--mlperf-root": st.sampled_from(["/nonexistent", "."]),
    "--partition": st.sampled_from(["auto", "mig", "mps", "none", "mgi", "MPS"]) | TEXT,
    "--mig-lease-timeout": SECONDS, "--mig-main-startup": SECONDS, "--mig-main-timeout": SECONDS,
    "--mig-sample-interval": SECONDS,
    "--mig-layout": st.sampled_from(["hetero-1g", "hetero-1h", "nofile.yaml:x", "x:y:z"]) | TEXT,
    "--mig-compare": st.sampled_from(["last", "median:3", "median:x", "/nonexistent"]),
    "--mig-compare-fail": st.sampled_from(["throughput:5%", "p99:10%", "bogus:5",
                                           "throughput:-1%", ","]),
    "--mig-background": st.sampled_from(["per-test", "session", "sesion"]),
    "--mig-min-duration": st.sampled_from(["-1", "0", "100", "x"]),
    "--mig-reports": st.sampled_from(["reports", "out/deeper", ""]) | TEXT,
}
# What may stop collection: a suite-level name (run profile) or the GPU backend failing to open.
COLLECTION_ERRORS = ("unknown run profile", "the NVIDIA driver did not start", "unknown GPU model")
FLAGS = ["--mig-manage", "--mig-lenient", "--mig-isolated-baseline", "--mig-dry-run",
         "--mlperf-verbose", "--mlperf-start-from-device"]


EXAMPLES = itertools.count()


@st.composite
def command_lines(draw) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(OPTIONS)), max_size=5, unique=True))
    args = [f"{name}={draw(OPTIONS[name])}" for name in names]
    return args + draw(st.lists(st.sampled_from(FLAGS), max_size=2, unique=True))


class HarnessProbe:
    """After collection, builds the run's harness and launches nothing: any exception that
    is not one of ours (MigError) is a crash the run would hit at its first case."""

    def __init__(self) -> None:
        self.crash: BaseException | None = None

    def pytest_collection_finish(self, session) -> None:
        from pytest_mig.surface.case_fixtures import SESSION_KEY
        from pytest_mig.harness import get_harness
        from pytest_mig.types import Partition, WorkSpec
        mig = session.config.stash[SESSION_KEY]
        try:
            harness = get_harness(mig.settings.harness, mig.settings.harness_options)
            work = WorkSpec(role="main", name="main", benchmark="resnet50", scenario="Offline",
                            mode="performance", min_duration_ms=400, min_query_count=1,
                            log_dir=mig.run_dir / "probe" / "main")
            part = Partition(kind="mig", gpu_index=0, gpu_uuid="GPU-x", device_id="MIG-x",
                             profile="1g.10gb", simulated=True)
            harness.launch(work, part, {}, mig.run_dir / "probe" / "main.log")
        except MigError:
            pass
        except Exception as exc:  # noqa: BLE001 - the property under test
            self.crash = exc


@given(args=command_lines())
@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_any_command_line_runs_or_is_our_usage_error(project, args):
    # Run ids are time+pid: in-process runs of one second would share a run folder (and its
    # simulated GPU), so each example reports under a folder of its own.
    unique = f"--mig-reports=ex{next(EXAMPLES)}"
    args = [f"{unique}/{a.partition('=')[2]}" if a.startswith("--mig-reports=") else a
            for a in args]
    probe = HarnessProbe()
    r = project.runpytest("suites", "-p", "no:cacheprovider", "--collect-only", unique, *args,
                          plugins=[probe])
    out, err = r.stdout.str(), r.stderr.str()
    assert r.ret in (pytest.ExitCode.OK, pytest.ExitCode.USAGE_ERROR,
                     pytest.ExitCode.INTERRUPTED), (args, r.ret, out[-3000:], err[-2000:])
    assert "INTERNALERROR" not in out + err and "Traceback" not in out + err, (args, out, err)
    if r.ret == pytest.ExitCode.USAGE_ERROR:
        # Ours name the option (--flag=value); pytest's own name the argument it could not parse.
        assert err.startswith("ERROR: ") and ("--" in err or "argument" in err), (args, err)
    if r.ret == pytest.ExitCode.INTERRUPTED:  # a collection error: ours, with its fix
        assert "ERROR collecting" in out and any(
            text in out for text in COLLECTION_ERRORS), (args, out)
    assert probe.crash is None, (args, repr(probe.crash))
