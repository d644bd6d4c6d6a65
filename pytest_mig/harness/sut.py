"""LoadGen glue: a batching SUT, the QSL, throughput calibration and per-scenario TestSettings.

Settings are derived from a short calibration so that short runs come out VALID:
Offline asks for more samples than the SUT can do in the min duration, Server
runs at a fraction of measured capacity, and every latency scenario processes
enough queries for LoadGen's early-stopping check.
"""
from __future__ import annotations

import collections
import os
import statistics
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import mlperf_loadgen as lg
import numpy as np
import torch

from . import scoring
from .models import Predictor, apply_precision, build, canonical_benchmark, decode_output, resolve_device

PREFIX = "[pytest-mig loadgen]"
READY_LINE = f"{PREFIX} Starting running actual test."
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")
MODES = {"performance": lg.TestMode.PerformanceOnly, "accuracy": lg.TestMode.AccuracyOnly}
# Queries LoadGen's early stopping needs when (almost) every query meets its bound: SingleStream's
# 90th percentile needs 64; Server and MultiStream at the 99th need 459 with none late, 662 with one.
EARLY_STOPPING_QUERIES = {"Offline": 1, "SingleStream": 64, "Server": 662, "MultiStream": 662}
MULTISTREAM_SAMPLES = 8
# Offline asks for 2x the best-case rate (CPU time when neighbours share the cores) so the run
# outlasts min duration even when the CPU frees up after calibration.
OFFLINE_QPS_MARGIN = 2.0
SERVER_LOAD = 0.5  # default Server target: this fraction of measured capacity
# (one-sample rate, or the batched rate when a crowded CPU makes that the lower one)
SERVER_LATENCY_MS = {"tiny": 100.0, "small": 400.0, "full": 1000.0}
# ... or this many times the calibrated one-sample latency, if more: on a CPU shared by
# many workloads the scheduler alone adds tens of ms to the tail.
SERVER_LATENCY_FACTOR = 50.0
BATCH_SIZES = {"tiny": 32, "small": 16, "full": 8}
SERVER_MAX_BATCH = 8
SAMPLE_MEMORY_BYTES = 1 << 30  # performance sample set budget
CALIBRATION_BUDGET_S = 0.25
STOP_GRACE_S = 1.0


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
    precision: str = "fp32"
    device: str = "auto"
    threads: int = 1
    seed: int = 0
    batch_size: int | None = None


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


@dataclass
class RunOutcome:
    log_dir: Path
    settings: dict[str, float | int | str]
    test_s: float
    accuracy: scoring.AccuracyResult | None = None
    files: dict[str, Path] = field(default_factory=dict)


def say(message: str) -> None:
    print(f"{PREFIX} {message}", flush=True)


def batch_size_for(cfg: RunConfig) -> int:
    if cfg.batch_size:
        return cfg.batch_size
    return {"Offline": BATCH_SIZES[cfg.size], "Server": min(SERVER_MAX_BATCH, BATCH_SIZES[cfg.size]),
            "SingleStream": 1, "MultiStream": MULTISTREAM_SAMPLES}[cfg.scenario]


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


def calibrate(predictor: Predictor, sample_count: int, batch: int, device: torch.device,
              threads: int = 1) -> Calibration:
    """Time one-sample and full batches on QSL samples held in memory."""
    indices = [i % sample_count for i in range(batch)]
    loader = predictor.make_inputs
    loader.load(indices)
    cursor = iter(range(1 << 30))
    latency, best_latency = _time_calls(lambda: predictor([indices[next(cursor) % batch]]), device, threads)
    batch_s, best_s = ((latency, best_latency) if batch == 1
                       else _time_calls(lambda: predictor(indices), device, threads))
    loader.unload(indices)
    return Calibration(latency_s=latency, batch_size=batch, batch_s=batch_s, best_batch_s=best_s)


def test_settings(cfg: RunConfig, cal: Calibration) -> tuple[lg.TestSettings, dict[str, float | int | str]]:
    """LoadGen settings for the scenario and mode, and a readable summary of the derived values."""
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, cfg.scenario)
    ts.mode = MODES[cfg.mode]
    ts.min_duration_ms = cfg.min_duration_ms
    queries = max(cfg.min_query_count or 0, EARLY_STOPPING_QUERIES[cfg.scenario])
    ts.min_query_count = queries
    shown: dict[str, float | int | str] = {"scenario": cfg.scenario, "mode": cfg.mode,
                                           "min_duration_ms": cfg.min_duration_ms, "min_query_count": queries}
    if cfg.scenario == "Offline":
        qps = cfg.target_qps or OFFLINE_QPS_MARGIN * cal.peak_qps
        ts.offline_expected_qps = qps
        shown["offline_expected_qps"] = round(qps, 2)
    elif cfg.scenario == "Server":
        qps = cfg.target_qps or SERVER_LOAD * min(cal.single_qps, cal.batch_qps)
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


class BatchingSUT:
    """Queues issued samples; one worker runs them in batches of up to `max_batch` and completes them."""

    def __init__(self, predictor: Predictor, max_batch: int) -> None:
        self.predictor, self.max_batch = predictor, max_batch
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stopping = self._draining = False
        self._worker = threading.Thread(target=self._loop, name="sut-worker", daemon=True)
        self._worker.start()

    def issue(self, samples: Sequence) -> None:
        with self._cond:
            self._queue.extend(samples)
            self._cond.notify()

    def flush(self) -> None:
        """LoadGen's end-of-issue hint; the worker already runs whatever is queued."""

    def drain(self) -> None:
        """Answer everything queued or still to come at once, without inference (used on SIGTERM)."""
        with self._cond:
            self._draining = True
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._worker.join()

    def _loop(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if not self._queue:
                        return
                    take = len(self._queue) if self._draining else min(self.max_batch, len(self._queue))
                    batch = [self._queue.popleft() for _ in range(take)]
                    draining = self._draining
                empty = np.zeros(0, dtype=np.uint8)
                outputs = [empty] * len(batch) if draining else self.predictor([s.index for s in batch])
                responses = [lg.QuerySampleResponse(s.id, out.ctypes.data if out.nbytes else 0, out.nbytes)
                             for s, out in zip(batch, outputs)]
                lg.QuerySamplesComplete(responses)  # copies the bytes: `outputs` may go now
        except BaseException:  # LoadGen would wait forever for these samples: fail the process loudly
            traceback.print_exc()
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(1)


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


def run(cfg: RunConfig) -> RunOutcome:
    """Build, calibrate, run LoadGen to completion and, in accuracy mode, score against FP32."""
    torch.set_num_threads(cfg.threads)
    name = canonical_benchmark(cfg.benchmark)
    device = resolve_device(cfg.device)
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    model, loader, postprocess = build(name, cfg.size, cfg.seed, device)
    accuracy = cfg.mode == "accuracy"
    runnable, reference = apply_precision(model, cfg.precision, keep_reference=accuracy)
    predictor = Predictor(runnable, loader, postprocess, cfg.precision, device)
    params = sum(p.numel() for p in model.parameters())
    say(f"model {name} size={cfg.size} precision={cfg.precision} device={device} threads={cfg.threads} "
        f"params={params} built in {time.perf_counter() - t0:.2f}s")

    batch = batch_size_for(cfg)
    cal = calibrate(predictor, cfg.sample_count, batch, device, cfg.threads)
    say(f"calibration: 1 sample {cal.latency_s * 1e3:.3f} ms ({cal.single_qps:.1f}/s), "
        f"batch {cal.batch_size} {cal.batch_s * 1e3:.3f} ms ({cal.batch_qps:.1f} samples/s, "
        f"peak {cal.peak_qps:.1f})")
    ts, shown = test_settings(cfg, cal)
    perf_count = max(1, min(cfg.sample_count, SAMPLE_MEMORY_BYTES // max(1, loader.bytes_per_sample())))
    shown.update(sample_count=cfg.sample_count, performance_sample_count=perf_count, batch_size=batch)
    say("settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()))

    batching = BatchingSUT(predictor, batch)
    sut = lg.ConstructSUT(batching.issue, batching.flush)
    qsl = lg.ConstructQSL(cfg.sample_count, perf_count, loader.load, loader.unload)
    print(READY_LINE, flush=True)
    started = time.perf_counter()
    thread = _start_test(sut, qsl, ts, log_dir)
    try:
        while thread.is_alive():
            thread.join(0.1)  # short waits keep the main thread able to take signals
    except BaseException:
        batching.drain()
        thread.join(STOP_GRACE_S)
        raise
    test_s = time.perf_counter() - started
    batching.stop()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    say(f"test finished in {test_s:.2f}s; logs in {log_dir}")
    outcome = RunOutcome(log_dir=log_dir, settings=shown, test_s=test_s,
                         files={"summary": log_dir / "mlperf_log_summary.txt",
                                "detail": log_dir / "mlperf_log_detail.txt",
                                "accuracy_log": log_dir / scoring.ACCURACY_LOG})
    if accuracy:
        assert reference is not None
        outcome.accuracy = evaluate(name, log_dir, Predictor(reference, loader, postprocess, "fp32", device),
                                    BATCH_SIZES[cfg.size])
        text, data = scoring.write_accuracy(log_dir, outcome.accuracy)
        outcome.files.update(accuracy_txt=text, accuracy_json=data)
        say(f"accuracy vs fp32 reference: {scoring.format_accuracy_line(name, outcome.accuracy.fields)}")
    return outcome


def evaluate(benchmark: str, log_dir: Path, reference: Predictor, batch: int) -> scoring.AccuracyResult:
    """Score the samples LoadGen logged against the FP32 reference on the same samples."""
    produced = scoring.read_accuracy_log(log_dir / scoring.ACCURACY_LOG, benchmark)
    indices = sorted(produced)
    expected: dict[int, np.ndarray] = {}
    for start in range(0, len(indices), batch):
        chunk = indices[start:start + batch]
        # Through the same byte codec as the logged outputs, so both sides have one shape.
        expected.update((i, decode_output(benchmark, out.tobytes())) for i, out in zip(chunk, reference(chunk)))
    return scoring.score(benchmark, produced, expected, reference.make_inputs.sample)
