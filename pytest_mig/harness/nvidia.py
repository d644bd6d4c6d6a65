"""The `nvidia` backend: NVIDIA's closed-division MLPerf code, run as launch_heterogeneous_mig.py does.

Every workload is `make <action> RUN_ARGS="--benchmarks=.. --scenarios=.. --config_ver=..
--min_duration=.."` run in `--mlperf-root` (closed/NVIDIA) as an argv, pinned by
CUDA_VISIBLE_DEVICES, with LOG_DIR choosing where LoadGen's logs land. Backgrounds run
Offline with `--min_query_count=1` and log under `<test dir>/background_logs/`, each in a
folder of its own (NVIDIA's script shares one: two backgrounds of one benchmark, as a
layout fill makes, would then read one figure twice); LaunchSpec.result_dir says where.
"""
from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from pytest_mig.errors import HarnessError, did_you_mean
from pytest_mig.harness.base import READY_PATTERN, collect_loadgen_outputs
from pytest_mig.harness.nvidia_logs import (MTIME_SLACK_S, apply_audits, describe_missing,
                                            find_audit_files, find_run_logs)
from pytest_mig.mlperf_names import normalize_benchmark
from pytest_mig.types import (ACCURACY, BenchmarkResult, Finished, LaunchSpec, Partition,
                              WorkSpec)

ACTIONS = ("run_harness", "run_audit_test01", "run_audit_test04", "run_audit_test05")
AUDIT_TESTS = {"run_audit_test01": "TEST01", "run_audit_test04": "TEST04",
               "run_audit_test05": "TEST05"}
# Our benchmark name -> NVIDIA's --benchmarks value (the 99.9% variants come from config_ver).
V1_BENCHMARKS = ("resnet50", "ssd-resnet34", "ssd-mobilenet", "bert", "rnnt", "dlrm", "3d-unet")
# v5.x (closed/NVIDIA of v5.0/v5.1): the names `make run_harness RUN_ARGS=--benchmarks=...` takes.
# The LLMs of v5.1 also take --core_type=trtllm_endpoint after `make run_llm_server` (pass it
# with --mlperf-extra-run-args). llama3.1-8b-edge is NVIDIA's llama3.1-8b on the edge dataset.
V5_BENCHMARKS = {"retinanet": "retinanet", "dlrm-v2": "dlrm-v2", "gptj": "gptj",
                 "llama2-70b": "llama2-70b", "llama3.1-8b": "llama3.1-8b",
                 "llama3.1-8b-edge": "llama3.1-8b", "llama3.1-405b": "llama3.1-405b",
                 "mixtral-8x7b": "mixtral-8x7b", "stable-diffusion-xl": "stable-diffusion-xl",
                 "whisper": "whisper", "deepseek-r1": "deepseek-r1"}
# v6.0 (closed/NVIDIA of v6.0): the new benchmarks under the names its Benchmark enum takes
# (wan-2.2-t2v-a14b is an alias of its wan22-a14b); config_ver as in v5.x.
V6_BENCHMARKS = {"gpt-oss-120b": "gpt-oss-120b", "qwen3-vl-235b-a22b": "qwen3-vl-235b-a22b",
                 "wan-2.2-t2v-a14b": "wan22-a14b", "rgat": "rgat"}
BENCHMARKS = {**{name: name for name in V1_BENCHMARKS}, **V5_BENCHMARKS, **V6_BENCHMARKS}
# v1.1 hetero defaults: dlrm and 3d-unet run their high-accuracy (99.9%) configs.
HIGH_ACCURACY_DEFAULT = frozenset({"dlrm", "3d-unet"})
# v5.x config_ver: "default" for the 99% target, "high_accuracy" for -99.9 (NVIDIA has no
# hetero configs in v5.x; a v5 suite names its own, e.g. `config_ver: default`).
V5_DEFAULT, V5_HIGH_ACCURACY = "default", "high_accuracy"
# Variables NVIDIA's Makefile reads from the environment; child_env's allow-list drops them.
MAKEFILE_ENV = ("MLPERF_SCRATCH_PATH", "MLPERF_CPU_SCRATCH_PATH", "SYSTEM_NAME", "MIG_CONF",
                "DATA_DIR", "PREPROCESSED_DATA_DIR", "MODEL_DIR", "HOST_HOSTNAME",
                "SKIP_DRIVER_CHECK", "USE_CPU")
# Ours, not the workload's: left out of the dry-run's "env that differs" listing.
INTERNAL_ENV_PREFIXES = ("PYTEST_MIG_", "PYTHONUNBUFFERED")
TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class NvidiaOptions:
    """The harness options, validated once: CLI (--mlperf-*) and --mig-harness-opt values."""

    root: str
    docker: str | None = None
    action: str = "run_harness"
    extra_run_args: tuple[str, ...] = ()
    main_prefix: tuple[str, ...] = ()
    start_from_device: bool = False
    verbose: bool = False
    docker_mount: tuple[str, str] | None = None  # host path prefix -> container path prefix
    compliance_dir: Path | None = None
    pass_env: tuple[str, ...] = MAKEFILE_ENV


def parse_options(options: Mapping[str, str]) -> NvidiaOptions:
    """Validate the options; every mistake is a HarnessError naming the option and the fix."""
    root = (options.get("mlperf_root") or "").strip()
    docker = (options.get("docker") or "").strip() or None
    if not root:
        raise HarnessError(
            "--harness=nvidia needs --mlperf-root DIR: the closed/NVIDIA working directory of an "
            "MLPerf Inference results checkout (where `make run_harness RUN_ARGS=...` works), "
            "e.g. --mlperf-root /work inside NVIDIA's container")
    if docker is None:
        path = Path(root)
        if not path.is_dir():
            raise HarnessError(f"--mlperf-root {root}: no such directory; pass the closed/NVIDIA "
                               "directory (or its path inside the container with --mlperf-docker)")
        if not (path / "Makefile").is_file():
            raise HarnessError(f"--mlperf-root {root}: no Makefile there; point --mlperf-root at "
                               "closed/NVIDIA, the directory holding NVIDIA's Makefile and code/")
    action = (options.get("action") or "run_harness").strip()
    if action not in ACTIONS:
        raise HarnessError(f"--mlperf-action={action}: unknown action{did_you_mean(action, ACTIONS)}; "
                           f"choose one of {', '.join(ACTIONS)}")
    mount = None
    if options.get("docker_mount"):
        host, sep, inside = options["docker_mount"].partition(":")
        if not sep or not host.startswith("/") or not inside.startswith("/"):
            raise HarnessError(f"harness option docker_mount={options['docker_mount']!r}: expected "
                               "HOST_DIR:CONTAINER_DIR, e.g. docker_mount=/home/me:/mnt/home/me")
        mount = (host.rstrip("/") or "/", inside.rstrip("/") or "/")
    extra_env = tuple(v.strip() for v in (options.get("pass_env") or "").split(",") if v.strip())
    compliance = options.get("compliance_dir")
    return NvidiaOptions(
        root=root, docker=docker, action=action,
        extra_run_args=_split("--mlperf-extra-run-args", options.get("extra_run_args")),
        main_prefix=_split("--mlperf-main-prefix", options.get("main_prefix")),
        start_from_device=_flag(options.get("start_from_device")),
        verbose=_flag(options.get("verbose")), docker_mount=mount,
        compliance_dir=Path(compliance) if compliance else None,
        pass_env=MAKEFILE_ENV + extra_env)


def _split(option: str, value: str | None) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(value or ""))
    except ValueError as exc:
        raise HarnessError(f"{option}={value!r}: {exc}; quote it as a shell would") from None


def _flag(value: str | None) -> bool:
    return str(value or "").strip().lower() in TRUE


def nvidia_benchmark(benchmark: str) -> str:
    """NVIDIA's --benchmarks name for one of ours ('bert-99' is accepted as 'bert')."""
    name = normalize_benchmark(benchmark)
    if name not in BENCHMARKS:
        raise HarnessError(f"benchmark '{benchmark}': NVIDIA's harness has no such benchmark"
                           f"{did_you_mean(name, BENCHMARKS)}; it runs {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def config_ver(work: WorkSpec, options: Mapping[str, str]) -> str:
    """`config_ver.<benchmark>`, then `config_ver`, then NVIDIA's default for the benchmark's
    round: v1.1 hetero (high accuracy for dlrm/3d-unet), v5.x default/high_accuracy (-99.9)."""
    bench = nvidia_benchmark(work.benchmark)
    for key in (f"config_ver.{bench}", f"config_ver.{work.benchmark}", "config_ver"):
        if options.get(key):
            return str(options[key]).strip()
    if normalize_benchmark(work.benchmark) in V5_BENCHMARKS | V6_BENCHMARKS:
        return V5_HIGH_ACCURACY if work.benchmark.endswith("-99.9") else V5_DEFAULT
    return "hetero_high_accuracy" if bench in HIGH_ACCURACY_DEFAULT else "hetero"


class NvidiaHarness:
    name = "nvidia"
    stop_exit_zero = False  # `make run_harness` dies of SIGTERM or exits 2 (make: *** Terminated)

    def __init__(self, options: dict[str, str]) -> None:
        self.options = dict(options)
        self.opts = parse_options(self.options)

    # -- command lines -------------------------------------------------------------------
    def merged(self, work: WorkSpec) -> dict[str, str]:
        """Suite harness options, overridden by the command line's."""
        return {**work.options, **{k: v for k, v in self.options.items() if v not in (None, "")}}

    def action(self, work: WorkSpec) -> str:
        if work.role == "background":
            return "run_harness"
        if self.opts.action != "run_harness" and work.mode == ACCURACY:
            raise HarnessError(f"--mlperf-action={self.opts.action} runs a compliance audit, which is a "
                               "performance run; select performance cases with -m performance")
        return self.opts.action

    def run_args(self, work: WorkSpec) -> list[str]:
        """The flags inside RUN_ARGS, in launch_heterogeneous_mig.py's order."""
        background = work.role == "background"
        scenario = "Offline" if background else work.scenario
        args = [f"--benchmarks={nvidia_benchmark(work.benchmark)}", f"--scenarios={scenario}",
                f"--config_ver={config_ver(work, self.merged(work))}",
                f"--min_duration={work.min_duration_ms}"]
        if background:
            # Duration alone decides how long a background runs.
            args.append("--min_query_count=1")
        else:
            if work.mode == ACCURACY:
                args.append("--test_mode=AccuracyOnly")
            if work.target_qps and scenario == "Server":
                args.append(f"--server_target_qps={round(work.target_qps)}")  # NVIDIA parses an int
            if self.opts.start_from_device:
                args.append("--start_from_device=true")  # a value flag in NVIDIA's arguments.py
        if self.opts.verbose:
            args.append("--verbose")
        if not background:
            args.extend(self.opts.extra_run_args)
        return args

    def log_dir(self, work: WorkSpec) -> Path:
        """LOG_DIR: the main's own log dir; a background's <test dir>/background_logs/<name>."""
        if work.role == "background":
            return work.log_dir.parent / "background_logs" / work.name
        return work.log_dir

    def launch(self, work: WorkSpec, partition: Partition, env: dict[str, str],
               log_path: Path) -> LaunchSpec:
        log_dir = self.log_dir(work)
        make = ["make", self.action(work), "RUN_ARGS=" + shlex.join(self.run_args(work))]
        prefix = list(self.opts.main_prefix) if work.role == "main" else []
        child = dict(env)
        child.setdefault("CUDA_VISIBLE_DEVICES", partition.device_id)
        if self.opts.docker:
            exported = {"CUDA_VISIBLE_DEVICES": child["CUDA_VISIBLE_DEVICES"],
                        "LOG_DIR": self._container_path(log_dir), **partition.env}
            argv = ["docker", "exec"]
            for key, value in exported.items():
                argv += ["-e", f"{key}={value}"]
            argv += ["-w", self.opts.root, self.opts.docker, *prefix, *make]
            cwd = Path.cwd()
        else:
            for key in self.opts.pass_env:
                if key in os.environ and key not in child:
                    child[key] = os.environ[key]
            child["LOG_DIR"] = str(log_dir)
            argv = [*prefix, *make]
            cwd = Path(self.opts.root)
        return LaunchSpec(argv=tuple(argv), env=child, cwd=cwd, ready_pattern=READY_PATTERN,
                          log_path=log_path, result_dir=log_dir)

    def _container_path(self, path: Path) -> str:
        """A host path as the container sees it (option docker_mount=HOST:CONTAINER)."""
        if self.opts.docker_mount:
            host, inside = self.opts.docker_mount
            try:
                return str(Path(inside) / path.relative_to(host))
            except ValueError:
                pass
        return str(path)

    def describe_plan(self, work: WorkSpec, partition: Partition, env: dict[str, str]) -> str:
        """What would run for `work`, like NVIDIA's --dryrun: cwd, env that differs, argv."""
        spec = self.launch(work, partition, env, work.log_dir.parent / f"{work.name}.log")
        changed = {k: v for k, v in sorted(spec.env.items())
                   if os.environ.get(k) != v and not k.startswith(INTERNAL_ENV_PREFIXES)}
        target = f"{partition.device_id} ({partition.profile})"
        lines = [f"{work.name}: {work.benchmark} {work.scenario if work.role == 'main' else 'Offline'} "
                 f"{work.mode} on {target}",
                 f"  cwd: {spec.cwd}",
                 "  env: " + (" ".join(f"{k}={shlex.quote(v)}" for k, v in changed.items()) or "(none)"),
                 f"  cmd: {shlex.join(spec.argv)}"]
        return "\n".join(lines)

    # -- results -------------------------------------------------------------------------
    def collect(self, work: WorkSpec, finished: Finished, result_dir: Path) -> BenchmarkResult:
        bench = nvidia_benchmark(work.benchmark)
        test = AUDIT_TESTS.get(self.opts.action) if work.role == "main" else None
        # bert-99 and bert-99.9 may both hold logs: take the one this config_ver ran.
        variant = f"{bench}-99.9" if "high_accuracy" in config_ver(work, self.options) else f"{bench}-99"
        runs = find_run_logs(result_dir, bench, work.scenario, variant)
        fresh = [r for r in runs if r.newest_mtime >= finished.started_at - MTIME_SLACK_S]
        if fresh:
            res = collect_loadgen_outputs(work, fresh[0].directory)
        else:
            res = BenchmarkResult(benchmark=work.benchmark, scenario=work.scenario, mode=work.mode,
                                  result_dir=result_dir)
            if runs:
                res.errors.append(f"only logs older than this run under {result_dir} "
                                  f"(newest: {runs[0].directory}); this run wrote none")
            elif test is None:
                res.errors.append(describe_missing(result_dir, bench, work.scenario))
        if test is not None:
            roots = [result_dir, self._compliance_dir()]
            roots = [r for i, r in enumerate(roots) if r is not None and r not in roots[:i]]
            files = find_audit_files(roots, bench, work.scenario, test, finished.started_at)
            apply_audits(res, files, test, roots)
        return res

    def _compliance_dir(self) -> Path | None:
        """Where NVIDIA's audit targets write (build/compliance_logs), when visible from here."""
        if self.opts.compliance_dir is not None:
            return self.opts.compliance_dir
        if self.opts.docker:
            return None  # the root is a container path
        return Path(self.opts.root) / "build" / "compliance_logs"
