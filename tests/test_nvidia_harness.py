"""The `nvidia` backend's command lines: exact argv, env and cwd for every kind of workload,
option validation, and the dry-run plan."""
from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from pytest_mig.errors import HarnessError
from pytest_mig.harness import get_harness
from pytest_mig.harness.base import READY_PATTERN
from pytest_mig.harness.nvidia import NvidiaHarness, config_ver, nvidia_benchmark
from pytest_mig.types import ACCURACY, PERFORMANCE, Partition, WorkSpec

MAIN_DEV = "MIG-11111111-2222-3333-4444-555555555555"
BG_DEV = "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"


@pytest.fixture
def root(tmp_path) -> Path:
    d = tmp_path / "closed" / "NVIDIA"
    d.mkdir(parents=True)
    (d / "Makefile").write_text("run_harness:\n\t@true\n")
    return d


@pytest.fixture
def test_dir(tmp_path) -> Path:
    return tmp_path / "reports" / "run" / "test_hetero_resnet50"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("CUDA_VISIBLE_DEVICES", "LOG_DIR", "MLPERF_SCRATCH_PATH", "SYSTEM_NAME"):
        monkeypatch.delenv(key, raising=False)


def part(device: str = MAIN_DEV, **env: str) -> Partition:
    return Partition(kind="mig", gpu_index=0, gpu_uuid="GPU-0", device_id=device,
                     profile="1g.10gb", simulated=True, env=env)


def main_work(test_dir: Path, benchmark="resnet50", scenario="Offline", mode=PERFORMANCE,
              **kw) -> WorkSpec:
    return WorkSpec(role="main", name="main", benchmark=benchmark, scenario=scenario, mode=mode,
                    min_duration_ms=400, min_query_count=64, log_dir=test_dir / "main", **kw)


def bg_work(test_dir: Path, benchmark="dlrm", n=2, **kw) -> WorkSpec:
    name = f"bg{n}-{benchmark}"
    return WorkSpec(role="background", name=name, benchmark=benchmark, scenario="Offline",
                    mode=PERFORMANCE, min_duration_ms=2300, min_query_count=1,
                    log_dir=test_dir / name, **kw)


def launch(h: NvidiaHarness, work: WorkSpec, partition: Partition | None = None):
    partition = partition or part(MAIN_DEV if work.role == "main" else BG_DEV)
    env = {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": partition.device_id,
           "PYTEST_MIG_RUN_ID": "r1"}
    return h.launch(work, partition, env, work.log_dir.parent / f"{work.name}.log")


def test_get_harness_maps_nvidia(root):
    h = get_harness("nvidia", {"mlperf_root": str(root)})
    assert isinstance(h, NvidiaHarness) and h.name == "nvidia"


def test_main_performance(root, test_dir):
    spec = launch(NvidiaHarness({"mlperf_root": str(root)}), main_work(test_dir))
    assert spec.argv == ("make", "run_harness", "RUN_ARGS=--benchmarks=resnet50 --scenarios=Offline "
                         "--config_ver=hetero --min_duration=400")
    assert spec.env == {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": MAIN_DEV, "PYTEST_MIG_RUN_ID": "r1",
                        "LOG_DIR": str(test_dir / "main")}
    assert spec.cwd == root
    assert spec.ready_pattern == READY_PATTERN
    assert spec.result_dir == test_dir / "main"
    assert spec.log_path == test_dir / "main.log"


def test_background_runs_offline_min_query_count_1_into_its_own_background_logs(root, test_dir):
    spec = launch(NvidiaHarness({"mlperf_root": str(root)}), bg_work(test_dir))
    assert spec.argv == ("make", "run_harness", "RUN_ARGS=--benchmarks=dlrm --scenarios=Offline "
                         "--config_ver=hetero_high_accuracy --min_duration=2300 --min_query_count=1")
    assert spec.env["LOG_DIR"] == str(test_dir / "background_logs" / "bg2-dlrm")
    assert spec.env["CUDA_VISIBLE_DEVICES"] == BG_DEV
    assert spec.result_dir == test_dir / "background_logs" / "bg2-dlrm"  # where it is read


def test_background_is_offline_even_when_asked_otherwise(root, test_dir):
    work = WorkSpec(role="background", name="bg1-bert", benchmark="bert", scenario="Server",
                    mode=PERFORMANCE, min_duration_ms=1000, min_query_count=1,
                    log_dir=test_dir / "bg1-bert")
    spec = launch(NvidiaHarness({"mlperf_root": str(root), "action": "run_audit_test04",
                                 "extra_run_args": "--gpu_batch_size=8"}), work)
    assert spec.argv == ("make", "run_harness", "RUN_ARGS=--benchmarks=bert --scenarios=Offline "
                         "--config_ver=hetero --min_duration=1000 --min_query_count=1")


def test_main_accuracy(root, test_dir):
    spec = launch(NvidiaHarness({"mlperf_root": str(root)}),
                  main_work(test_dir, benchmark="3d-unet", mode=ACCURACY))
    assert spec.argv == ("make", "run_harness", "RUN_ARGS=--benchmarks=3d-unet --scenarios=Offline "
                         "--config_ver=hetero_high_accuracy --min_duration=400 --test_mode=AccuracyOnly")


@pytest.mark.parametrize("action", ["run_audit_test01", "run_audit_test04", "run_audit_test05"])
def test_main_audit_actions(root, test_dir, action):
    spec = launch(NvidiaHarness({"mlperf_root": str(root), "action": action}), main_work(test_dir))
    assert spec.argv == ("make", action, "RUN_ARGS=--benchmarks=resnet50 --scenarios=Offline "
                         "--config_ver=hetero --min_duration=400")


def test_audit_action_refuses_accuracy_cases(root, test_dir):
    h = NvidiaHarness({"mlperf_root": str(root), "action": "run_audit_test01"})
    with pytest.raises(HarnessError, match=r"run_audit_test01 runs a compliance audit.*-m performance"):
        launch(h, main_work(test_dir, mode=ACCURACY))


def test_server_target_qps_is_an_integer_flag(root, test_dir):
    spec = launch(NvidiaHarness({"mlperf_root": str(root)}),
                  main_work(test_dir, benchmark="bert", scenario="Server", target_qps=1234.6))
    assert spec.argv[2] == ("RUN_ARGS=--benchmarks=bert --scenarios=Server --config_ver=hetero "
                            "--min_duration=400 --server_target_qps=1235")


def test_extra_args_prefix_start_from_device_verbose(root, test_dir):
    h = NvidiaHarness({"mlperf_root": str(root), "extra_run_args": "--gpu_batch_size=64 --note='a b'",
                       "main_prefix": "nsys profile -o 'main report'", "start_from_device": "1",
                       "verbose": "1"})
    main = launch(h, main_work(test_dir))
    assert main.argv == (
        "nsys", "profile", "-o", "main report", "make", "run_harness",
        "RUN_ARGS=--benchmarks=resnet50 --scenarios=Offline --config_ver=hetero --min_duration=400 "
        "--start_from_device=true --verbose --gpu_batch_size=64 '--note=a b'")
    # The recipe's shell splits $(RUN_ARGS): the quoting keeps 'a b' one argument.
    assert shlex.split(main.argv[-1].removeprefix("RUN_ARGS="))[-1] == "--note=a b"
    bg = launch(h, bg_work(test_dir, benchmark="rnnt", n=3))
    assert bg.argv == ("make", "run_harness", "RUN_ARGS=--benchmarks=rnnt --scenarios=Offline "
                       "--config_ver=hetero --min_duration=2300 --min_query_count=1 --verbose")


def test_config_ver_overrides(root, test_dir):
    h = NvidiaHarness({"mlperf_root": str(root), "config_ver": "hetero_cli",
                       "config_ver.rnnt": "hetero_rnnt"})
    suite_opts = {"config_ver.dlrm": "hetero_suite_dlrm", "config_ver": "hetero_suite"}
    assert config_ver(bg_work(test_dir, options=suite_opts), h.merged(bg_work(test_dir, options=suite_opts))) \
        == "hetero_suite_dlrm"
    got = {b: launch(h, bg_work(test_dir, benchmark=b, options=suite_opts)).argv[2].split()[2]
           for b in ("dlrm", "rnnt", "bert")}
    # Per-benchmark keys beat the general one; for the same key the command line beats the suite.
    assert got == {"dlrm": "--config_ver=hetero_suite_dlrm", "rnnt": "--config_ver=hetero_rnnt",
                   "bert": "--config_ver=hetero_cli"}


def test_suite_config_ver_alone(root, test_dir):
    h = NvidiaHarness({"mlperf_root": str(root)})
    work = main_work(test_dir, benchmark="bert", options={"config_ver": "hetero_high_accuracy"})
    assert launch(h, work).argv[2].split()[2] == "--config_ver=hetero_high_accuracy"


def test_docker_exec(root, test_dir):
    h = NvidiaHarness({"mlperf_root": "/work", "docker": "mlperf-inference-me",
                       "docker_mount": f"{test_dir.parent.parent}:/mnt/reports",
                       "main_prefix": "nsys profile"})
    main = launch(h, main_work(test_dir))
    assert main.argv == (
        "docker", "exec", "-e", f"CUDA_VISIBLE_DEVICES={MAIN_DEV}",
        "-e", "LOG_DIR=/mnt/reports/run/test_hetero_resnet50/main", "-w", "/work",
        "mlperf-inference-me", "nsys", "profile", "make", "run_harness",
        "RUN_ARGS=--benchmarks=resnet50 --scenarios=Offline --config_ver=hetero --min_duration=400")
    assert main.cwd == Path.cwd()
    assert main.result_dir == test_dir / "main"  # read back on the host
    bg = launch(h, bg_work(test_dir), part(BG_DEV, CUDA_MPS_ACTIVE_THREAD_PERCENTAGE="14"))
    assert bg.argv[:10] == (
        "docker", "exec", "-e", f"CUDA_VISIBLE_DEVICES={BG_DEV}",
        "-e", "LOG_DIR=/mnt/reports/run/test_hetero_resnet50/background_logs/bg2-dlrm",
        "-e", "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE=14", "-w", "/work")
    assert bg.argv[10:12] == ("mlperf-inference-me", "make")


def test_docker_without_mount_passes_host_path(test_dir):
    h = NvidiaHarness({"mlperf_root": "/work", "docker": "c1"})
    assert launch(h, main_work(test_dir)).argv[5] == f"LOG_DIR={test_dir / 'main'}"


def test_makefile_env_passes_through_but_log_dir_is_ours(root, test_dir, monkeypatch):
    monkeypatch.setenv("MLPERF_SCRATCH_PATH", "/scratch")
    monkeypatch.setenv("LOG_DIR", "/somewhere/else")
    monkeypatch.setenv("MY_VAR", "x")
    h = NvidiaHarness({"mlperf_root": str(root), "pass_env": "MY_VAR"})
    env = launch(h, main_work(test_dir)).env
    assert env["MLPERF_SCRATCH_PATH"] == "/scratch"
    assert env["MY_VAR"] == "x"
    assert env["LOG_DIR"] == str(test_dir / "main")


def test_benchmark_names():
    assert [nvidia_benchmark(b) for b in ("bert", "bert-99", "dlrm-99.9", "3d-unet", "ssd-mobilenet")] \
        == ["bert", "bert", "dlrm", "3d-unet", "ssd-mobilenet"]
    assert nvidia_benchmark("resnet") == "resnet50"  # v0.5 submitters' folder name
    with pytest.raises(HarnessError, match=r"benchmark 'resnet-5': .*did you mean 'resnet50'"):
        nvidia_benchmark("resnet-5")


@pytest.mark.parametrize("options, message", [
    ({}, r"--harness=nvidia needs --mlperf-root DIR: the closed/NVIDIA working directory"),
    ({"mlperf_root": "/no/such/dir"}, r"--mlperf-root /no/such/dir: no such directory"),
    ({"mlperf_root": "ROOT", "action": "run_audit_test4"},
     r"--mlperf-action=run_audit_test4: unknown action \(did you mean 'run_audit_test04'\?\); choose one of "
     r"run_harness, run_audit_test01, run_audit_test04, run_audit_test05"),
    ({"mlperf_root": "ROOT", "extra_run_args": "--x='open"}, r"--mlperf-extra-run-args=.*No closing quotation"),
    ({"mlperf_root": "/work", "docker": "c", "docker_mount": "relative:/x"},
     r"docker_mount='relative:/x': expected HOST_DIR:CONTAINER_DIR"),
])
def test_bad_options(root, options, message):
    options = {k: str(root) if v == "ROOT" else v for k, v in options.items()}
    with pytest.raises(HarnessError, match=message):
        NvidiaHarness(options)


def test_root_without_makefile(tmp_path):
    with pytest.raises(HarnessError, match=r"no Makefile there; point --mlperf-root at closed/NVIDIA"):
        NvidiaHarness({"mlperf_root": str(tmp_path)})


def test_docker_root_is_not_checked_on_the_host():
    assert NvidiaHarness({"mlperf_root": "/work", "docker": "c1"}).opts.root == "/work"


def test_describe_plan(root, test_dir, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin")
    h = NvidiaHarness({"mlperf_root": str(root)})
    env = {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": MAIN_DEV, "PYTEST_MIG_RUN_ID": "r1",
           "PYTHONUNBUFFERED": "1"}
    assert h.describe_plan(main_work(test_dir), part(), env) == (
        f"main: resnet50 Offline performance on {MAIN_DEV} (1g.10gb)\n"
        f"  cwd: {root}\n"
        f"  env: CUDA_VISIBLE_DEVICES={MAIN_DEV} LOG_DIR={test_dir / 'main'}\n"
        "  cmd: make run_harness 'RUN_ARGS=--benchmarks=resnet50 --scenarios=Offline "
        "--config_ver=hetero --min_duration=400'")
    env["CUDA_VISIBLE_DEVICES"] = BG_DEV
    plan = h.describe_plan(bg_work(test_dir), part(BG_DEV), env)
    assert plan.splitlines()[0] == f"bg2-dlrm: dlrm Offline performance on {BG_DEV} (1g.10gb)"
    assert plan.splitlines()[2] == (f"  env: CUDA_VISIBLE_DEVICES={BG_DEV} "
                                    f"LOG_DIR={test_dir / 'background_logs' / 'bg2-dlrm'}")
    assert not test_dir.exists()  # planning creates nothing
