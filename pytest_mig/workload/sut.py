"""LoadGen glue: a batching SUT, the QSL, throughput calibration and per-scenario TestSettings.

Settings are derived from a short calibration so that short runs come out VALID:
Offline asks for more samples than the SUT can do in the min duration, Server
runs at a fraction of measured capacity, and every latency scenario processes
enough queries for LoadGen's early-stopping check.

With a compile mode chosen (`compiled.py`), a compile that fails while warming up falls back
to the uncompiled path; either way the path taken is printed before the ready line and written
to <log-dir>/harness_path.json (PATH_RECORD), which the plugin copies into results.json.
"""
from __future__ import annotations

import collections
import contextlib
import copy
import json
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import mlperf_loadgen as lg
import numpy as np
import torch

from pytest_mig.io import atomic_path, write_atomic
from pytest_mig.mlperf_names import DETAIL_FILE, SUMMARY_FILE
from pytest_mig.workload_contract import PATH_RECORD

from . import accel, compiled, duration, responses, scoring, slice_batch
from .batching import BatchWorker, Chunk, ChunkQueue
from .completions import CompletionLog
from .datasets import SampleLoader
from .models import (Built, Predictor, apply_precision, build, canonical_benchmark, decode_output, reduce_for,
                     resolve_device)
from .stopping import StopRequest

PREFIX = "[pytest-mig loadgen]"
READY_LINE = f"{PREFIX} Starting running actual test."
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")
MODES = {"performance": lg.TestMode.PerformanceOnly, "accuracy": lg.TestMode.AccuracyOnly}
# Queries LoadGen's early stopping needs when (almost) every query meets its bound: SingleStream's
# 90th percentile needs 64; Server and MultiStream at the 99th need 459 with none late, 662 with one.
EARLY_STOPPING_QUERIES = {"Offline": 1, "SingleStream": 64, "Server": 662, "MultiStream": 662}
MULTISTREAM_SAMPLES = 8
# Offline asks for 1.3x the best-case rate (CPU time when neighbours share the cores): with
# LoadGen's 1.1 slack on top the run stays past min duration when the CPU frees up after
# calibration (at 1.0x a tiny dlrm under CI's xdist load outran its calibration and ended
# INVALID, min duration not met), and the plan is computed from the samples asked for, so the run
# still lasts its plan (about 1.4x min duration at the best-case rate; 2x made it 2.2x).
OFFLINE_QPS_MARGIN = 1.3
# On CUDA Offline expects this much more than the calibrated best rate (pipelined batches, warm
# clocks): a test that outruns its expected rate by more than LoadGen's 1.1 slack ends INVALID.
GPU_OFFLINE_HEADROOM = 1.2
SERVER_LOAD = 0.5  # default Server target: this fraction of measured capacity
# (one-sample rate, or the batched rate when a crowded CPU makes that the lower one; on the
# CPU, where the main has a core while paced backgrounds share the rest, a model taking at
# least BATCHED_CAPACITY_MIN_LATENCY_S per sample has the batched rate as its capacity: the SUT
# batches what queues up, up to SERVER_MAX_BATCH, and per-query overheads are small beside
# its compute. Faster models keep the one-sample rule: there those overheads dominate.)
BATCHED_CAPACITY_MIN_LATENCY_S = 0.01
SERVER_LATENCY_MS = {"tiny": 100.0, "small": 400.0, "full": 1000.0}
# ... or this many times the calibrated one-sample latency, if more: on a CPU shared by
# many workloads the scheduler alone adds tens of ms to the tail.
SERVER_LATENCY_FACTOR = 50.0
BATCH_SIZES = {"tiny": 32, "small": 16, "full": 8}
SERVER_MAX_BATCH = 8
GPU_BATCH_DEFAULT = 16  # Offline batch on CUDA for models the slice table (slice_batch) does not list
SAMPLE_MEMORY_BYTES = 1 << 30  # performance sample set budget
CALIBRATION_BUDGET_S = 0.25
STOP_GRACE_S = 1.0
# --until-stopped: each back-to-back test's min duration is capped so Offline queries stay small,
# and a test cut short by a signal gets this long to answer what is pending and write its logs.
UNTIL_STOPPED_TEST_MS = 60_000
UNTIL_STOPPED_GRACE_S = 30.0


@dataclass(frozen=True)
class RunConfig:
    """One harness invocation, as the CLI parsed it."""

    benchmark: str
    scenario: str
    mode: str
    log_dir: Path
    min_duration_ms: int
    min_query_count: int | None = None
    target_qps: float | None = None
    target_latency_ms: float | None = None
    sample_count: int = 256
    size: str = "tiny"
    precision: str = "fp32"  # resolved: never "auto" here (cli.py resolves it, cpu_native.py)
    precision_reason: str = ""  # why this precision (auto's choice, or named)
    device: str = "auto"
    threads: int = 1
    seed: int = 0
    batch_size: int | None = None
    cuda_graphs: bool | None = None  # None: on for CUDA (where the model allows)
    channels_last: bool | None = None  # None: on for the conv nets on CUDA
    start_from_device: bool | None = None  # QSL samples held in GPU memory (None: on for CUDA)
    compile: str = "auto"  # off | auto | a torch.compile mode (compiled.SETTINGS)
    compile_cache: Path | None = None  # base folder of the compile cache (None: compiled.default_cache_base)
    started: float | None = None  # time.monotonic() when the process started, for ready_s
    cpu_duty: float = 1.0  # on the CPU: busy fraction of the SUT worker (paced background load)


@dataclass(frozen=True)
class Calibration:
    latency_s: float  # median time of a one-sample batch
    batch_size: int
    batch_s: float  # median time of a full batch
    best_batch_s: float = 0.0  # best-case full batch, wall or CPU time (0: same as the median)

    @property
    def single_qps(self) -> float:
        return 1.0 / self.latency_s

    @property
    def batch_qps(self) -> float:
        return self.batch_size / self.batch_s

    @property
    def peak_qps(self) -> float:
        """Optimistic rate: a run going faster than this would end before its min duration."""
        return self.batch_size / (self.best_batch_s or self.batch_s)

    def paced(self, duty: float) -> "Calibration":
        """The rates of a SUT that works only `duty` of the time (each batch then a pause)."""
        return Calibration(latency_s=self.latency_s / duty, batch_size=self.batch_size,
                           batch_s=self.batch_s / duty, best_batch_s=self.best_batch_s / duty)


@dataclass
class RunOutcome:
    log_dir: Path
    settings: dict[str, float | int | str]
    test_s: float
    accuracy: scoring.AccuracyResult | None = None
    files: dict[str, Path] = field(default_factory=dict)


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def batch_size_for(cfg: RunConfig, device: torch.device | None = None) -> int:
    return batch_choice(cfg, device)[0]


def batch_choice(cfg: RunConfig, device: torch.device | None = None) -> tuple[int, str]:
    """(batch, how it was chosen): an explicit batch size; on CUDA Offline the slice's batch
    (`slice_batch`: the table scaled to the slice's SMs and memory); else the scenario's."""
    if cfg.batch_size:
        return cfg.batch_size, "batch_size given (override)"
    if device is not None and device.type == "cuda" and cfg.scenario == "Offline":
        choice = slice_batch.choose(canonical_benchmark(cfg.benchmark), slice_batch.measure(device),
                                    slice_batch.load_table())
        if choice is not None:
            return choice.batch, f"slice rule: {choice.rule}"
        return GPU_BATCH_DEFAULT, f"default {GPU_BATCH_DEFAULT} (no row in {slice_batch.TABLE})"
    batch = {"Offline": BATCH_SIZES[cfg.size], "Server": min(SERVER_MAX_BATCH, BATCH_SIZES[cfg.size]),
             "SingleStream": 1, "MultiStream": MULTISTREAM_SAMPLES}[cfg.scenario]
    return batch, f"{cfg.scenario} default for --size {cfg.size}"


def _time_calls(fn: Callable[[], object], device: torch.device, threads: int, min_runs: int = 3,
                max_runs: int = 50) -> tuple[float, float]:
    """(median wall seconds, best-case seconds) per call after a warm-up.

    On the CPU the best case also counts process CPU time over the threads used: when
    neighbours time-slice the cores, wall time inflates but CPU time does not.
    """
    for _ in range(2):  # warm-up: allocator, oneDNN primitive caches, CUDA kernels
        fn()
    walls: list[float] = []
    cpus: list[float] = []
    start = time.perf_counter()
    while len(walls) < min_runs or (time.perf_counter() - start < CALIBRATION_BUDGET_S and len(walls) < max_runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - t0)
        cpus.append((time.process_time() - c0) / threads)
    best = min(walls) if device.type == "cuda" else min(min(walls), max(min(cpus), 1e-6))
    return statistics.median(walls), best


def calibrate(predictor: Predictor | accel.AccelPredictor, sample_count: int, batch: int, device: torch.device,
              threads: int = 1) -> Calibration:
    """Time one-sample and full batches on QSL samples held in memory."""
    indices = [i % sample_count for i in range(batch)]
    loader = predictor.make_inputs
    loader.load(indices)
    cursor = iter(range(1 << 30))
    latency, best_latency = _time_calls(lambda: predictor([indices[next(cursor) % batch]]), device, threads)
    batch_s, best_s = ((latency, best_latency) if batch == 1
                       else _time_calls(lambda: predictor(indices), device, threads))
    if isinstance(predictor, accel.AccelPredictor) and predictor.describe_io()["in_flight"] > 1 and batch > 1:
        # The SUT keeps batches in flight: its rate is the pipelined one, which a test asking for
        # the synchronous rate would outrun (and end before its min duration).
        best_s = min(best_s, _pipelined_batch_s(predictor, indices))
    loader.unload(indices)
    return Calibration(latency_s=latency, batch_size=batch, batch_s=batch_s, best_batch_s=best_s)


def _pipelined_batch_s(predictor: accel.AccelPredictor, indices: Sequence[int], min_batches: int = 4) -> float:
    """Seconds per batch with `predictor.in_flight` batches queued at once, as the SUT runs them."""
    pending: collections.deque = collections.deque()
    count, start = 0, time.perf_counter()
    while count < min_batches or time.perf_counter() - start < CALIBRATION_BUDGET_S:
        pending.append(predictor.launch(indices))
        count += 1
        if len(pending) >= predictor.in_flight:
            pending.popleft()()
    while pending:
        pending.popleft()()
    return (time.perf_counter() - start) / count


def common_settings(cfg) -> tuple[lg.TestSettings, dict[str, float | int | str]]:
    """The settings every scenario shares (this SUT's and the LLM's): scenario, mode, min
    duration, and a min query count raised to what LoadGen's early stopping needs."""
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, cfg.scenario)
    ts.mode = MODES[cfg.mode]
    ts.min_duration_ms = cfg.min_duration_ms
    queries = max(cfg.min_query_count or 0, EARLY_STOPPING_QUERIES[cfg.scenario])
    ts.min_query_count = queries
    shown: dict[str, float | int | str] = {"scenario": cfg.scenario, "mode": cfg.mode,
                                           "min_duration_ms": cfg.min_duration_ms, "min_query_count": queries}
    return ts, shown


def test_settings(cfg: RunConfig, cal: Calibration, batched_capacity: bool = False,
                  paced: bool = False) -> tuple[lg.TestSettings, dict[str, float | int | str]]:
    """LoadGen settings for the scenario and mode, and a readable summary of the derived values.

    `batched_capacity` (the CPU path): for a model of at least BATCHED_CAPACITY_MIN_LATENCY_S
    per sample the Server default target is half the batched rate instead of half the lower
    of the one-sample and batched rates. Offline expects the best-case rate, so with LoadGen's
    1.1 slack the test lasts about 1.1x min duration where the SUT runs at that rate; a `paced`
    background expects duration.PACED_PLAN_LOAD of its paced median rate and holds that plan
    with duration.PlanPacer (1.1x its min duration, which the plugin sized).
    """
    ts, shown = common_settings(cfg)
    if cfg.scenario == "Offline":
        qps = cfg.target_qps or (duration.PACED_PLAN_LOAD * cal.batch_qps if paced
                                 else OFFLINE_QPS_MARGIN * cal.peak_qps)
        ts.offline_expected_qps = qps
        shown["offline_expected_qps"] = round(qps, 2)
    elif cfg.scenario == "Server":
        batched = batched_capacity and cal.latency_s >= BATCHED_CAPACITY_MIN_LATENCY_S
        capacity = (max(cal.single_qps, cal.batch_qps) if batched
                    else min(cal.single_qps, cal.batch_qps))
        qps = cfg.target_qps or SERVER_LOAD * capacity
        latency_ms = cfg.target_latency_ms or max(SERVER_LATENCY_MS[cfg.size],
                                                  SERVER_LATENCY_FACTOR * cal.latency_s * 1e3)
        ts.server_target_qps = qps
        ts.server_target_latency_ns = int(latency_ms * 1e6)
        shown.update(server_target_qps=round(qps, 2), server_target_latency_ms=round(latency_ms, 3))
    elif cfg.scenario == "SingleStream":
        latency_ms = cfg.target_latency_ms or cal.latency_s * 1e3
        ts.single_stream_expected_latency_ns = max(1, int(latency_ms * 1e6))
        shown["single_stream_expected_latency_ms"] = round(latency_ms, 3)
    else:
        latency_ms = cfg.target_latency_ms or cal.batch_s * 1e3
        ts.multi_stream_samples_per_query = MULTISTREAM_SAMPLES
        ts.multi_stream_expected_latency_ns = max(1, int(latency_ms * 1e6))
        shown["multi_stream_expected_latency_ms"] = round(latency_ms, 3)
    return ts, shown


class BatchingSUT(BatchWorker):
    """Queues issued samples; one worker runs them in batches of up to `max_batch` and completes them.

    LoadGen's fast issue callback (`lg.ConstructFastSUT(sut.issue, sut.flush)`) queues response
    ids and sample indices as lists (`batching.ChunkQueue`): no Python object per sample. A
    predictor with `launch(indices)` (the GPU path) starts a batch and returns a `finish()`
    that waits for it: up to `in_flight` batches are started before the oldest is finished, so
    the host answers one batch while the GPU computes the next. Any other predictor is a plain
    call. Each batch is answered to LoadGen in one call (`responses.Responder`).

    With `duty` < 1 (a paced background on the CPU) the worker rests after each batch so that
    it computes at most that fraction of the time: a steady, real, smaller load; with a `pacer`
    (a per-test background's Offline test) it rests longer where that ends the test as planned. Draining
    (SIGTERM) answers everything queued or still to come at once, without inference.
    """

    def __init__(self, predictor: Callable[[Sequence[int]], Any], max_batch: int,
                 completions: CompletionLog | None = None, duty: float = 1.0,
                 pacer: duration.PlanPacer | None = None, in_flight: int = 1) -> None:
        self.predictor, self.duty, self.pacer = predictor, duty, pacer
        self.completions = completions  # completions.tsv: what the plugin counts per window
        launch = getattr(predictor, "launch", None)
        self._launch: Callable[[Sequence[int]], Callable[[], Any]] = (
            launch if launch is not None else (lambda indices: _done(predictor(indices))))
        self.in_flight = max(1, in_flight)
        self._pending: collections.deque = collections.deque()  # (chunk, finish, started)
        self._responder = responses.Responder()
        super().__init__(max_batch, "sut-worker", ChunkQueue())

    def stop(self) -> None:
        super().stop()
        if self.completions is not None:
            self.completions.close()

    def _run(self, batch: Chunk, draining: bool) -> None:
        if draining:
            self._responder.complete(batch.ids, None)
            return
        started = time.perf_counter()  # before launch: on the CPU the launch is the compute
        self._pending.append((batch, self._launch(batch.indices), started))
        if len(self._pending) >= self.in_flight:
            self._settle()

    def _settle(self) -> bool:
        if not self._pending:
            return False
        batch, finish, t0 = self._pending.popleft()
        self._responder.complete(batch.ids, finish())  # LoadGen copies the bytes: the outputs may go now
        if self.completions is not None:
            self.completions.add(len(batch))
        if self.duty < 1.0:
            compute, now = time.perf_counter() - t0, time.perf_counter()
            self.rest(self.pacer.rest_after(len(batch), compute, now) if self.pacer is not None
                      else compute * (1.0 / self.duty - 1.0))
        return True


def _done(outputs: Any) -> Callable[[], Any]:
    return lambda: outputs


def _start_test(sut: object, qsl: object, ts: lg.TestSettings, log_dir: Path) -> threading.Thread:
    output = lg.LogOutputSettings()
    output.outdir = str(log_dir)
    output.copy_summary_to_stdout = True
    log_settings = lg.LogSettings()
    log_settings.log_output = output
    log_settings.enable_trace = False  # traces reach hundreds of MB on long runs
    thread = threading.Thread(target=lg.StartTestWithLogSettings, args=(sut, qsl, ts, log_settings),
                              name="loadgen", daemon=True)
    thread.start()
    return thread


@dataclass
class Prepared:
    """A built, calibrated model with its LoadGen settings, ready for one or more tests."""

    name: str
    device: torch.device
    loader: SampleLoader
    predictor: Callable[[Sequence[int]], list[np.ndarray]]
    reference: Callable[[Sequence[int]], list[np.ndarray]] | None
    batch: int
    settings: lg.TestSettings
    shown: dict[str, float | int | str]
    perf_count: int
    path: dict[str, Any] = field(default_factory=dict)  # the PATH_RECORD fields known before ready
    seconds: dict[str, float] = field(default_factory=dict)  # phase -> seconds (build, calibration)
    duty: float = 1.0  # the SUT worker's busy fraction (paced background on the CPU)
    plan: duration.Plan | None = None  # the LoadGen test as planned (duration.plan_test)


def _compiled_copy(model: torch.nn.Module, reference: torch.nn.Module | None, mode: str | None) -> torch.nn.Module:
    """`model` with its compile methods compiled (on a copy when it is the FP32 reference itself)."""
    if mode is None:
        return model
    return compiled.compile_model(copy.deepcopy(model) if model is reference else model, mode)


def _predictors(cfg: RunConfig, name: str, built: Built, device: torch.device, batch: int,
                mode: str | None = None):
    """(predictor, FP32 reference or None, description): the GPU path on CUDA, autocast on the CPU;
    `mode`: torch.compile mode of the predictor's model (the reference stays uncompiled)."""
    model, loader, postprocess = built
    accuracy = cfg.mode == "accuracy"
    runnable, reference = apply_precision(model, cfg.precision, keep_reference=accuracy)
    if device.type != "cuda":
        ref = Predictor(reference, loader, postprocess, "fp32", device) if reference is not None else None
        runnable = _compiled_copy(runnable, reference, mode)
        return (Predictor(runnable, loader, postprocess, cfg.precision, device), ref,
                f"autocast compile={mode or 'off'}")
    accel.setup_cuda()
    opts = accel.options_for(name, cfg.precision, cfg.cuda_graphs, cfg.channels_last,
                             cfg.start_from_device is not False, compile_mode=mode)
    fast = _compiled_copy(accel.prepare_model(runnable, name, opts, copy_first=runnable is reference),
                          reference, mode)
    buckets = accel.run_buckets(batch, cfg.scenario)
    predictor = accel.AccelPredictor(fast, loader, postprocess, opts, device, batch, buckets,
                                     reduce_for(name, cfg.size))
    ref = None
    if reference is not None:  # the same weights, fp32, as built: no graphs, no layout change
        plain = accel.options_for(name, "fp32", cuda_graphs=False, channels_last=False)
        ref = accel.AccelPredictor(reference, loader, postprocess, plain, device, BATCH_SIZES[cfg.size])
    return predictor, ref, opts.describe()


def _warm(predictor: Predictor | accel.AccelPredictor, cfg: RunConfig, batch: int,
          device: torch.device) -> tuple[Calibration, float]:
    """Capture graphs / compile every shape, then calibrate; (calibration, seconds to warm)."""
    started = time.perf_counter()
    if isinstance(predictor, accel.AccelPredictor) and predictor.fixed_shapes:
        indices = [i % cfg.sample_count for i in range(batch)]
        predictor.make_inputs.load(indices)
        took = predictor.capture(indices)
        predictor.make_inputs.unload(indices)
        what = "compiled and captured" if predictor.runner is not None and predictor.opts.compile_mode else (
            "captured CUDA graphs" if predictor.runner is not None else "compiled")
        say(f"{what} for batch sizes {', '.join(map(str, predictor.buckets))} in {took:.2f}s")
    cal = calibrate(predictor, cfg.sample_count, batch, device, cfg.threads)
    return cal, time.perf_counter() - started


def _uncompiled(predictor: Predictor | accel.AccelPredictor) -> Predictor | accel.AccelPredictor:
    """The same predictor on the uncompiled model (fresh graphs): the fallback when compile fails."""
    torch._dynamo.reset()
    model = compiled.uncompile(predictor.model)
    if isinstance(predictor, accel.AccelPredictor):
        return accel.AccelPredictor(model, predictor.make_inputs, predictor.postprocess,
                                    replace(predictor.opts, compile_mode=None), predictor.device,
                                    predictor.buckets[-1], predictor.buckets, predictor.reduce)
    return Predictor(model, predictor.make_inputs, predictor.postprocess, predictor.precision, predictor.device)


def prepare(cfg: RunConfig) -> Prepared:
    """Build the model on its device, compile and capture graphs, calibrate and derive the test settings."""
    torch.set_num_threads(cfg.threads)
    name = canonical_benchmark(cfg.benchmark)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    # On CUDA a fitted model is kept beside the compile cache: a warm start loads it instead of
    # fitting again (the full-size fits are most of the time before the model first runs).
    models_cache = (cfg.compile_cache or compiled.default_cache_base()) / "models" if device.type == "cuda" else None
    built = build(name, cfg.size, cfg.seed, device, cache_dir=models_cache)
    batch, batch_rule = batch_choice(cfg, device)
    choice = compiled.choose(cfg.compile, name, device)
    path: dict[str, Any] = {"benchmark": name, "precision": cfg.precision,
                            "precision_reason": cfg.precision_reason, "compile": choice.mode or "off", "compile_requested": choice.requested,
                            "compile_reason": choice.reason, "compile_cache": None,
                            "batch_size": batch, "batch_rule": batch_rule}
    if choice.mode:
        cache = compiled.cache_dir(name, cfg.size, cfg.precision, batch, device, cfg.compile_cache)
        compiled.use_cache(cache)
        path["compile_cache"] = str(cache)
    predictor, reference, how = _predictors(cfg, name, built, device, batch, choice.mode)
    params = sum(p.numel() for p in built.model.parameters())
    say(f"model {name} size={cfg.size} precision={cfg.precision} device={device} threads={cfg.threads} "
        f"params={params} built in {time.perf_counter() - t0:.2f}s ({how})")
    say(choice.describe() + (f", cache {path['compile_cache']}" if choice.mode else ""))
    if device.type != "cuda" and cfg.start_from_device:
        say("--start-from-device: the device is the CPU, where QSL samples already live (no-op)")
    built_s = time.perf_counter() - t0
    try:
        cal, warm_s = _warm(predictor, cfg, batch, device)
    except Exception as exc:  # noqa: BLE001  (only a compiled path falls back; the rest re-raises)
        if choice.mode is None:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        say(f"compile={choice.mode} failed ({type(exc).__name__}: {first}); falling back to the uncompiled path")
        path.update(compile="off", compile_reason=f"{choice.mode} failed: {type(exc).__name__}: {first}")
        predictor = _uncompiled(predictor)
        cal, warm_s = _warm(predictor, cfg, batch, device)
    path["path"] = predictor.opts.describe() if isinstance(predictor, accel.AccelPredictor) else (
        f"autocast compile={path['compile']}")
    if isinstance(predictor, accel.AccelPredictor):
        path.update(predictor.describe_io())
    path["warm_s"] = round(warm_s, 2)
    say(f"calibration: 1 sample {cal.latency_s * 1e3:.3f} ms ({cal.single_qps:.1f}/s), "
        f"batch {cal.batch_size} {cal.batch_s * 1e3:.3f} ms ({cal.batch_qps:.1f} samples/s, "
        f"peak {cal.peak_qps:.1f})")
    duty = cfg.cpu_duty if device.type == "cpu" else 1.0
    unpaced = cal
    if duty < 1.0:
        cal = cal.paced(duty)
        say(f"paced load: the SUT computes at most {duty:.0%} of the time (a background on the "
            f"CPU can only contend for cores); settings from the paced rate {cal.peak_qps:.1f}/s")
    if device.type == "cuda":  # a warm GPU may outrun a 0.25 s calibration: the test must not end early
        cal = replace(cal, best_batch_s=cal.best_batch_s / GPU_OFFLINE_HEADROOM)
    ts, shown = test_settings(cfg, cal, batched_capacity=device.type == "cpu", paced=duty < 1.0)
    loader = built.make_inputs
    perf_count = max(1, min(cfg.sample_count, SAMPLE_MEMORY_BYTES // max(1, loader.bytes_per_sample())))
    shown.update(sample_count=cfg.sample_count, performance_sample_count=perf_count, batch_size=batch)
    say("settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    # A paced background is planned below its calibrated rate and paced to the plan (test_settings).
    batch_s = cal.batch_s / duration.PACED_PLAN_LOAD if duty < 1.0 else cal.batch_s
    planned = duration.plan_test(cfg.scenario, cfg.mode, shown, duration.Rates(cal.latency_s, cal.batch_size, batch_s),
                                 cfg.sample_count)
    path["planned_test_s"] = round(planned.test_s, 2)
    path["planned_accuracy_s"] = (round(duration.plan_accuracy(cfg.sample_count, duration.Rates(
        unpaced.latency_s, unpaced.batch_size, unpaced.batch_s)), 2) if cfg.mode == "accuracy" else None)
    say("plan: " + planned.describe() + (", paced to it" if duty < 1.0 and cfg.scenario == "Offline" else ""))
    seconds = {"build": round(built_s, 3), "calibration": round(warm_s, 3)}
    return Prepared(name, device, loader, predictor, reference, batch, ts, shown, perf_count, path,
                    seconds, duty, planned)


def _in_flight(prep: Prepared) -> int:
    """Batches the SUT keeps queued on the device (1 on the CPU: each is computed when launched)."""
    return int(prep.path.get("in_flight", 1))


def _ready(prep: Prepared, cfg: RunConfig, log_dir: Path) -> None:
    """Record the path taken (PATH_RECORD, and one line), then print the ready line."""
    record = dict(prep.path)
    record["ready_s"] = round(time.monotonic() - cfg.started, 2) if cfg.started is not None else None
    write_atomic(log_dir / PATH_RECORD, json.dumps(record, indent=2) + "\n", mode=0o666, fsync=False)
    say("path: " + ", ".join(f"{k}={v}" for k, v in record.items() if k != "benchmark"))
    print(READY_LINE, flush=True)


def _await_test(thread: threading.Thread, batching: BatchingSUT, stop: threading.Event | None) -> bool:
    """Wait for LoadGen; True when `stop` cut the test short (pending samples answered at once)."""
    try:
        while thread.is_alive():
            thread.join(0.1)  # short waits keep the main thread able to take signals
            if stop is not None and stop.is_set():
                batching.drain()
                thread.join(UNTIL_STOPPED_GRACE_S)  # LoadGen still writes its logs
                return True
    except BaseException:
        batching.drain()
        thread.join(STOP_GRACE_S)
        raise
    return False


def run(cfg: RunConfig) -> RunOutcome:
    """Build, calibrate, run LoadGen to completion and, in accuracy mode, score against FP32."""
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg)
    pacer = (duration.PlanPacer(prep.duty, prep.plan.test_s, prep.plan.samples)
             if prep.duty < 1.0 and cfg.scenario == "Offline" and prep.plan is not None else None)
    batching = BatchingSUT(prep.predictor, prep.batch, CompletionLog(log_dir), prep.duty, pacer, in_flight=_in_flight(prep))
    sut = lg.ConstructFastSUT(batching.issue, batching.flush)
    qsl = lg.ConstructQSL(cfg.sample_count, prep.perf_count, prep.loader.load, prep.loader.unload)
    _ready(prep, cfg, log_dir)
    started = time.perf_counter()
    _await_test(_start_test(sut, qsl, prep.settings, log_dir), batching, None)
    test_s = time.perf_counter() - started
    batching.stop()
    lg.DestroyQSL(qsl)
    lg.DestroyFastSUT(sut)
    say(f"test finished in {test_s:.2f}s; logs in {log_dir}")
    outcome = RunOutcome(log_dir=log_dir, settings=prep.shown, test_s=test_s,
                         files={"summary": log_dir / SUMMARY_FILE, "detail": log_dir / DETAIL_FILE,
                                "accuracy_log": log_dir / scoring.ACCURACY_LOG})
    phases = {**prep.seconds, "test": round(test_s, 3)}
    if cfg.mode == "accuracy":
        assert prep.reference is not None
        t0 = time.perf_counter()
        outcome.accuracy = evaluate(prep.name, log_dir, prep.reference, prep.loader, BATCH_SIZES[cfg.size])
        text, data = scoring.write_accuracy(log_dir, outcome.accuracy)
        outcome.files.update(accuracy_txt=text, accuracy_json=data)
        phases["accuracy"] = round(time.perf_counter() - t0, 3)
        say(f"accuracy vs fp32 reference: {scoring.format_accuracy_line(prep.name, outcome.accuracy.fields)}")
    say("phases: " + ", ".join(f"{k} {v:.2f}s" for k, v in phases.items()))
    _record_actual(log_dir, prep.path, phases)
    return outcome


def _record_actual(log_dir: Path, path: dict[str, Any], phases: dict[str, float]) -> None:
    """PATH_RECORD again, with what the test and scoring really took beside their plan."""
    try:
        record = json.loads((log_dir / PATH_RECORD).read_text())
    except (OSError, ValueError):
        record = dict(path)
    record.update(test_s=phases.get("test"), accuracy_s=phases.get("accuracy"))
    write_atomic(log_dir / PATH_RECORD, json.dumps(record, indent=2) + "\n", mode=0o666, fsync=False)


def _publish(run_dir: Path, log_dir: Path) -> None:
    """Copy a finished test's summary and detail log to the top of the log dir (atomically)."""
    for name in (SUMMARY_FILE, DETAIL_FILE):
        src = run_dir / name
        if src.exists():
            with atomic_path(log_dir / name, mode=0o666, fsync=False) as tmp:
                shutil.copyfile(src, tmp)


def run_until_stopped(cfg: RunConfig, stop: StopRequest) -> int:
    """Back-to-back performance tests (logs in run-<k>/) until `stop` is set; returns the tests run.

    Each test's min duration is capped so LoadGen's queries stay small; the last test that
    completed on its own has its summary copied to the log dir (the cut-short one if none did).
    """
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    capped = replace(cfg, min_duration_ms=min(cfg.min_duration_ms, UNTIL_STOPPED_TEST_MS))
    prep = prepare(capped)
    prep.loader.retain = True  # LoadGen loads the same performance set before every test
    batching = BatchingSUT(prep.predictor, prep.batch, CompletionLog(log_dir), prep.duty, in_flight=_in_flight(prep))
    sut = lg.ConstructFastSUT(batching.issue, batching.flush)
    qsl = lg.ConstructQSL(cfg.sample_count, prep.perf_count, prep.loader.load, prep.loader.unload)
    stop.armed = True  # from here a signal ends the current test instead of the process
    _ready(prep, cfg, log_dir)
    completed: Path | None = None
    tests = 0
    while True:
        run_dir = log_dir / f"run-{tests}"
        run_dir.mkdir(parents=True, exist_ok=True)
        cut_short = _await_test(_start_test(sut, qsl, prep.settings, run_dir), batching, stop.event)
        tests += 1
        if not cut_short:
            completed = run_dir
            _publish(run_dir, log_dir)
        if cut_short or stop.event.is_set():
            break
    if completed is None:
        _publish(run_dir, log_dir)
    if batching.completions is not None:
        batching.completions.close()
    say(f"stopped after {tests} test(s); last completed: {completed.name if completed else 'none'}")
    return tests


def evaluate(benchmark: str, log_dir: Path, reference: Callable[[Sequence[int]], list[np.ndarray]],
             loader: SampleLoader, batch: int) -> scoring.AccuracyResult:
    """Score the samples LoadGen logged against the FP32 reference on the same samples."""
    produced = scoring.read_accuracy_log(log_dir / scoring.ACCURACY_LOG, benchmark)
    indices = sorted(produced)
    expected: dict[int, np.ndarray] = {}
    with _strict_fp32():
        for start in range(0, len(indices), batch):
            chunk = indices[start:start + batch]
            # Through the same byte codec as the logged outputs, so both sides have one shape.
            expected.update((i, decode_output(benchmark, out.tobytes())) for i, out in zip(chunk, reference(chunk)))
    return scoring.score(benchmark, produced, expected, loader.sample)


@contextlib.contextmanager
def _strict_fp32():
    """cuDNN convolutions default to TF32 on the GPU; the reference computes in true FP32."""
    saved = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = saved
