"""The built-in harness's LLM path: greedy generation under LoadGen's token-latency mode.

Rules:
- `use_token_latencies` is on: after a sample's prefill the SUT reports its first token with
  `lg.FirstTokenComplete` (TTFT), and completes the sample with all its token ids and their
  count in `QuerySampleResponse(id, data, size, n_tokens)` (TPOT, tokens/s). LoadGen computes
  and logs every token metric itself.
- Serving (`serving.py`): continuous batching over a preallocated KV cache whose slot count
  (the decode batch) comes from the memory left after the weights on CUDA; prefill in bounded
  passes interleaved with decode steps; decode steps in CUDA graphs. With --precision fp8 the
  matmuls are fp8 x fp8 (Hopper: `torch._scaled_mm`; elsewhere the same math dequantised),
  fp16 upcasts the fp8 weights, fp32 is the reference.
- --until-stopped (a session background): back-to-back tests on one engine until SIGTERM; a
  stop answers every held request at once with what it has (serving.serve's `cut`).
- PATH_RECORD holds the decode batch and how it was chosen, written before the ready line;
  after the test it adds the roofline figures: decode steps, ms per step, bytes read per step
  (weights once + the attended K/V) and GB/s.
- Accuracy mode: the generated token ids (int32, from mlperf_log_accuracy.json) are compared
  with those the FP32 reference of the same weights generates for the same prompts:
  ROUGE-1/2/L on token ids (MLPerf's llama metrics, computed on ids instead of words) and
  exact match; rouge1 is the headline, written in MLCommons' evaluation.py format.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import mlperf_loadgen as lg
import numpy as np
import torch

from pytest_mig.io import write_atomic
from pytest_mig.mlperf_names import DETAIL_FILE, SUMMARY_FILE
from pytest_mig.workload_contract import PATH_RECORD

from . import roofline, scoring, serving, sut
from .batching import BatchWorker
from .models import FAMILIES, build, canonical_benchmark, resolve_device
from .models.llama import Llama, fp8_gemm_on, prompt_of

# Compute dtype per precision; "fp8" computes in bf16 with fp8 x fp8 matmuls (uses_fp8_gemm).
COMPUTE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.bfloat16}
# Offline asks for this many times the calibrated token rate, so the run outlasts min duration.
OFFLINE_QPS_MARGIN = 2.0
SERVER_LOAD = 0.5  # Server target: this fraction of the calibrated sample rate
# Server bounds: MLPerf's (llama3.1-8b: TTFT 2 s, TPOT 100 ms) or, on a slow device, these
# multiples of the calibrated values, whichever is larger.
MLPERF_TTFT_MS, MLPERF_TPOT_MS = 2000.0, 100.0
LATENCY_FACTOR = 20.0

def llm_benchmarks() -> tuple[str, ...]:
    """Benchmarks whose model is a decoder run by this module."""
    return tuple(name for name, f in FAMILIES.items() if f.construct is Llama)


def compute_dtype(precision: str) -> torch.dtype:
    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"the LLM runs fp32, bf16, fp16 or fp8 (its weights are fp8 already), not "
                         f"{precision!r}; use --precision fp8")
    return COMPUTE_DTYPES[precision]


def uses_fp8_gemm(precision: str) -> bool:
    """fp8 runs its matmuls fp8 x fp8 (activations quantised per token, as NVIDIA deploys this
    benchmark); bf16 and fp16 upcast the fp8 weights per matmul; fp32 is the reference."""
    return precision == "fp8"


def generate(model: Llama, prompts: Sequence[torch.Tensor], max_new: Sequence[int], dtype: torch.dtype,
             fp8: bool = False) -> list[np.ndarray]:
    """Greedy answers of `max_new[i]` tokens to each prompt (the serving engine, eager)."""
    return serving.generate(model, prompts, max_new, dtype, fp8=fp8)


def request(sample_id: Any, sample: dict) -> serving.Request:
    return serving.Request(sample_id, prompt_of(sample), int(sample["max_new"]))


class TokenSUT(BatchWorker):
    """Queues issued samples; one worker serves them with continuous batching, reporting tokens
    to LoadGen: the first when its prompt is prefilled, all of them when its answer is complete."""

    def __init__(self, engine: serving.Engine, loader) -> None:
        self.engine, self.loader = engine, loader
        super().__init__(engine.slots, "llm-worker")

    def _requests(self, samples: Sequence) -> list[serving.Request]:
        return [request(s, self.loader.sample(s.index)) for s in samples]

    def _run(self, batch: list, draining: bool) -> None:
        sched = serving.Scheduler(self.engine.slots, self.engine.prefill_tokens)
        sched.add(self._requests(batch))
        serving.serve(self.engine, sched, refill=lambda room: self._requests(self._poll(room)),
                      on_first=_first_token, on_done=_complete, cut=lambda: self._draining)


def _first_token(seq: serving.Request) -> None:
    data = np.asarray(seq.out[:1], dtype=np.int32)
    lg.FirstTokenComplete([lg.QuerySampleResponse(seq.request.id, data.ctypes.data, data.nbytes, 1)])


def _complete(seq: serving.Request) -> None:
    data = np.asarray(seq.out, dtype=np.int32)
    lg.QuerySamplesComplete([lg.QuerySampleResponse(seq.request.id, data.ctypes.data, data.nbytes, len(data))])


@dataclass(frozen=True)
class TokenCalibration:
    batch_s: float  # `samples` requests served together, first prefill to last token
    samples: int
    tokens: int
    ttft_s: float  # until the first request's first token
    tpot_s: float  # one decode step of the full batch

    @property
    def sample_qps(self) -> float:
        return self.samples / self.batch_s


def calibrate(engine: serving.Engine, loader, sample_count: int) -> TokenCalibration:
    """Serve a warm-up, then one request per slot (QSL samples), timing the whole and its steps."""
    warm = [request(i, loader.sample(i % sample_count)) for i in range(min(2, engine.slots))]
    for seq in warm:
        seq.max_new = min(seq.max_new, 3)
    sched = serving.Scheduler(engine.slots, engine.prefill_tokens)
    sched.add(warm)
    serving.serve(engine, sched)
    seqs = [request(i, loader.sample(i % sample_count)) for i in range(engine.slots)]
    sched = serving.Scheduler(engine.slots, engine.prefill_tokens)
    sched.add(seqs)
    engine.stats = serving.DecodeStats()
    marks: list[float] = []
    t0 = time.perf_counter()
    serving.serve(engine, sched, on_first=lambda seq: marks.append(time.perf_counter()) if not marks else None)
    total = time.perf_counter() - t0
    stats = engine.stats
    engine.stats = serving.DecodeStats()
    return TokenCalibration(batch_s=total, samples=len(seqs), tokens=sum(len(s.out) for s in seqs),
                            ttft_s=(marks[0] - t0) if marks else total,
                            tpot_s=max(1e-6, stats.seconds / max(1, stats.steps)))


def plan_slots(model: Llama, dtype: torch.dtype, device: torch.device, requested: int | None,
               scenario: str) -> tuple[int, dict[str, Any]]:
    """The decode batch (KV cache slots) and how it was chosen: asked for; 1 for SingleStream;
    on CUDA what the memory left after the weights holds (serving.kv_slots); else the config's."""
    slot_bytes = serving.cache_length(model) * serving.kv_bytes_per_token(model, dtype)
    record: dict[str, Any] = {"kv_slot_mib": round(slot_bytes / 2 ** 20, 1)}
    if requested:
        slots, how = requested, "--batch-size"
    elif scenario == "SingleStream":
        slots, how = 1, "SingleStream"
    elif device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        slots, how = serving.kv_slots(free, slot_bytes), "memory left for the KV cache"
        record.update(memory_free_gib=round(free / 2 ** 30, 2), memory_total_gib=round(total / 2 ** 30, 2))
    else:
        slots, how = model.cfg.max_batch, "config"
    record.update(decode_batch=slots, decode_batch_from=how, kv_cache_gib=round(slots * slot_bytes / 2 ** 30, 2))
    return slots, record


def test_settings(cfg, cal: TokenCalibration, device_type: str = "cpu") -> tuple[lg.TestSettings, dict[str, float | int | str]]:
    ts, common = sut.common_settings(cfg)
    ts.use_token_latencies = True
    shown = {"scenario": common.pop("scenario"), "mode": common.pop("mode"), "use_token_latencies": 1, **common}
    if cfg.scenario == "Offline":
        qps = cfg.target_qps or OFFLINE_QPS_MARGIN * cal.sample_qps
        ts.offline_expected_qps = qps
        shown["offline_expected_qps"] = round(qps, 3)
    elif cfg.scenario == "Server":
        qps = cfg.target_qps or SERVER_LOAD * cal.sample_qps
        ttft_ms, tpot_ms = server_bounds(cal, device_type)
        ts.server_target_qps = qps
        ts.server_target_latency_ns = 0  # only TTFT and TPOT are bounded, as in mlperf.conf
        ts.ttft_latency = int(ttft_ms * 1e6)
        ts.tpot_latency = int(tpot_ms * 1e6)
        shown.update(server_target_qps=round(qps, 3), ttft_latency_ms=round(ttft_ms, 1),
                     tpot_latency_ms=round(tpot_ms, 2))
    elif cfg.scenario == "SingleStream":
        latency_ms = cfg.target_latency_ms or cal.batch_s / cal.samples * 1e3
        ts.single_stream_expected_latency_ns = max(1, int(latency_ms * 1e6))
        shown["single_stream_expected_latency_ms"] = round(latency_ms, 3)
    else:
        raise ValueError(f"{cfg.benchmark} has no {cfg.scenario} scenario; use Offline, Server or SingleStream")
    return ts, shown


def server_bounds(cal: TokenCalibration, device_type: str) -> tuple[float, float]:
    """TTFT and TPOT bounds (ms): on a GPU MLPerf's (the catalogue's, 2 s and 100 ms); on the CPU,
    whose tiny models are no server, those or LATENCY_FACTOR x the calibrated values if larger."""
    if device_type == "cuda":
        return MLPERF_TTFT_MS, MLPERF_TPOT_MS
    return (max(MLPERF_TTFT_MS, LATENCY_FACTOR * cal.batch_s * 1e3),
            max(MLPERF_TPOT_MS, LATENCY_FACTOR * cal.tpot_s * 1e3))


PREFILL_TOKENS_PER_16_SMS = 256  # a pass of this many tokens per 16 SMs takes ~30 ms of fp8 GEMMs


def effective_sms(device: torch.device, environ=os.environ) -> int:
    """SMs this process computes on: the device's, times the MPS share's thread percentage."""
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    share = environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE")
    return max(1, int(sms * float(share) / 100)) if share else sms


def prefill_budget(model: Llama, device: torch.device) -> int:
    """Prompt tokens per prefill pass. On CUDA it grows with the SMs (a pass costs about the
    same time on a small share and on the whole GPU, so decode steps between passes, the
    TPOT, stay bounded: 256 tokens on a 1g-sized share, 2048 on a whole H100/H200); on the
    CPU twice the longest prompt."""
    if device.type != "cuda":
        return model.cfg.prompt_max * 2
    return max(PREFILL_TOKENS_PER_16_SMS, min(8 * PREFILL_TOKENS_PER_16_SMS,
                                              PREFILL_TOKENS_PER_16_SMS * effective_sms(device) // 16))


def decode_figures(stats: serving.DecodeStats, weight_bytes: int, device: torch.device) -> dict[str, Any]:
    """The decode figures of a run (bytes read per step / step time, and that as a fraction of
    the slice's memory bandwidth where the GPU table knows it), for PATH_RECORD."""
    figures: dict[str, Any] = {"weight_bytes": weight_bytes, **stats.record()}
    if device.type == "cuda":
        bandwidth = roofline.slice_bandwidth(torch.cuda.get_device_name(device))
        figures["slice_bandwidth_gbs"] = bandwidth.gbs if bandwidth else None
        figures["slice_bandwidth"] = bandwidth.what if bandwidth else "no bandwidth in the GPU table"
        figures["roofline_fraction"] = roofline.fraction(figures["decode_gbytes_per_s"], bandwidth)
    return figures


def write_record(log_dir: Path, record: dict[str, Any]) -> None:
    write_atomic(log_dir / PATH_RECORD, json.dumps(record, indent=2) + "\n", mode=0o666, fsync=False)


@dataclass
class Prepared:
    model: Llama
    loader: Any
    engine: serving.Engine
    settings: Any  # lg.TestSettings
    shown: dict[str, Any]
    record: dict[str, Any]  # PATH_RECORD
    device: torch.device
    log_dir: Path


def prepare(cfg) -> Prepared:
    """Build, start the engine (KV cache, graphs), calibrate, derive LoadGen's settings and write
    PATH_RECORD: everything before the ready line."""
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    name = canonical_benchmark(cfg.benchmark)
    dtype = compute_dtype(cfg.precision)
    fp8 = uses_fp8_gemm(cfg.precision)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    built = build(name, cfg.size, cfg.seed, device)
    model, loader = built.model, built.make_inputs
    assert isinstance(model, Llama)
    mcfg = model.cfg
    weights = sum(b.numel() for b in model.buffers() if b.dtype == torch.float8_e4m3fn)
    gemm = ("fp8 x fp8 (torch._scaled_mm)" if fp8_gemm_on(device) and dtype == torch.bfloat16 else
            "fp8 x fp8 (dequantised)") if fp8 else "weights upcast to " + cfg.precision
    sut.say(f"model {name} size={cfg.size} precision={cfg.precision} (fp8 weights, matmuls {gemm}) "
            f"device={device} threads={cfg.threads} params={weights} layers={mcfg.layers} "
            f"built in {time.perf_counter() - t0:.2f}s")
    slots, record = plan_slots(model, dtype, device, cfg.batch_size, cfg.scenario)
    graphs = device.type == "cuda" and cfg.cuda_graphs is not False
    engine, capture_s = start_engine(model, slots, dtype, fp8, prefill_budget(model, device), graphs, record)
    slots = engine.slots
    record.update(benchmark=name, gemm=gemm, cuda_graphs="on" if graphs else "off",
                  prefill_budget_tokens=engine.prefill_tokens, context_buckets=len(engine.buckets()),
                  capture_s=round(capture_s, 2))
    sut.say(f"serving: decode batch {slots} ({record['decode_batch_from']}; KV cache "
            f"{record['kv_cache_gib']} GiB), prefill {engine.prefill_tokens} tokens a pass, "
            f"decode graphs {'captured in ' + format(capture_s, '.1f') + 's' if graphs else 'off'}")
    cal = calibrate(engine, loader, cfg.sample_count)
    sut.say(f"calibration: {cal.samples} requests in {cal.batch_s * 1e3:.1f} ms ({cal.sample_qps:.2f} samples/s, "
            f"{cal.tokens / cal.batch_s:.1f} tokens/s), first token {cal.ttft_s * 1e3:.1f} ms, "
            f"decode step {cal.tpot_s * 1e3:.2f} ms")
    ts, shown = test_settings(cfg, cal, device.type)
    shown.update(sample_count=cfg.sample_count, batch_size=slots)
    sut.say("settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    record["ready_s"] = round(time.monotonic() - cfg.started, 2) if cfg.started is not None else None
    write_record(log_dir, record)
    return Prepared(model, loader, engine, ts, shown, record, device, log_dir)


def run(cfg):
    """Prepare, run LoadGen in token-latency mode and, in accuracy mode, score against FP32."""
    p = prepare(cfg)
    name, mcfg = canonical_benchmark(cfg.benchmark), p.model.cfg
    model, loader, engine, ts, shown, record, device, log_dir = (
        p.model, p.loader, p.engine, p.settings, p.shown, p.record, p.device, p.log_dir)
    slots = engine.slots
    tokens_sut = TokenSUT(engine, loader)
    lg_sut = lg.ConstructSUT(tokens_sut.issue, tokens_sut.flush)
    qsl = lg.ConstructQSL(cfg.sample_count, cfg.sample_count, loader.load, loader.unload)
    print(sut.READY_LINE, flush=True)
    started = time.perf_counter()
    thread = sut._start_test(lg_sut, qsl, ts, log_dir)
    while thread.is_alive():
        thread.join(0.1)  # short waits keep the main thread able to take signals
    test_s = time.perf_counter() - started
    tokens_sut.stop()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(lg_sut)
    record.update(decode_figures(engine.stats, engine.weight_bytes, device))
    record["decode_line"] = decode_line(record)
    write_record(log_dir, record)
    sut.say(f"test finished in {test_s:.2f}s; logs in {log_dir}")
    sut.say(record["decode_line"])
    outcome = sut.RunOutcome(log_dir=log_dir, settings=shown, test_s=test_s,
                             files={"summary": log_dir / SUMMARY_FILE,
                                    "detail": log_dir / DETAIL_FILE,
                                    "accuracy_log": log_dir / scoring.ACCURACY_LOG})
    if cfg.mode == "accuracy":
        del tokens_sut, engine  # the reference's fp32 cache needs the room
        if device.type == "cuda":
            torch.cuda.empty_cache()
        outcome.accuracy = evaluate(name, log_dir, model, loader, min(slots, mcfg.max_batch))
        text, data = scoring.write_accuracy(log_dir, outcome.accuracy)
        outcome.files.update(accuracy_txt=text, accuracy_json=data)
        sut.say(f"accuracy vs fp32 reference: {scoring.format_accuracy_line(name, outcome.accuracy.fields)}")
    return outcome


def start_engine(model: Llama, slots: int, dtype: torch.dtype, fp8: bool, prefill_tokens: int, graphs: bool,
                 record: dict[str, Any]) -> tuple[serving.Engine, float]:
    """The engine with its graphs captured; on CUDA out of memory, half the slots (recorded)."""
    while True:
        try:
            engine = serving.Engine(model, slots, dtype, fp8, prefill_tokens, graphs)
            return engine, engine.capture()
        except torch.cuda.OutOfMemoryError:
            if slots == 1:
                raise
        engine = None  # type: ignore[assignment]  (outside the except: its traceback held the tensors)
        torch.cuda.empty_cache()
        slots //= 2
        sut.say(f"out of memory for the KV cache and graphs: trying {slots} slots")
        record.update(decode_batch=slots, decode_batch_from=f"{record['decode_batch_from']}, halved "
                                                             f"after out of memory",
                      kv_cache_gib=round(slots * record["kv_slot_mib"] / 1024, 2))


def run_until_stopped(cfg, stop) -> int:
    """Back-to-back performance tests (logs in run-<k>/) until `stop` is set, as a session
    background; the engine, graphs and calibration are made once. Returns the tests run."""
    capped = replace(cfg, min_duration_ms=min(cfg.min_duration_ms, sut.UNTIL_STOPPED_TEST_MS))
    p = prepare(capped)
    p.loader.retain = True  # LoadGen loads the same performance set before every test
    tokens_sut = TokenSUT(p.engine, p.loader)
    lg_sut = lg.ConstructSUT(tokens_sut.issue, tokens_sut.flush)
    qsl = lg.ConstructQSL(cfg.sample_count, cfg.sample_count, p.loader.load, p.loader.unload)
    stop.armed = True  # from here a signal ends the current test instead of the process
    print(sut.READY_LINE, flush=True)
    completed: Path | None = None
    tests = 0
    while True:
        run_dir = p.log_dir / f"run-{tests}"
        run_dir.mkdir(parents=True, exist_ok=True)
        cut_short = sut._await_test(sut._start_test(lg_sut, qsl, p.settings, run_dir), tokens_sut, stop.event)
        tests += 1
        if not cut_short:
            completed = run_dir
            sut._publish(run_dir, p.log_dir)
        if cut_short or stop.event.is_set():
            break
    tokens_sut.stop()
    if completed is None:
        sut._publish(run_dir, p.log_dir)
    p.record.update(decode_figures(p.engine.stats, p.engine.weight_bytes, p.device), tests=tests)
    p.record["decode_line"] = decode_line(p.record)
    write_record(p.log_dir, p.record)
    sut.say(p.record["decode_line"])
    sut.say(f"stopped after {tests} test(s); last completed: {completed.name if completed else 'none'}")
    return tests


def decode_line(record: dict[str, Any]) -> str:
    """One line: the timed run's decode step, batch and bytes read per second."""
    if not record.get("decode_steps"):
        return "decode: no decode step in the timed run"
    share = record.get("roofline_fraction")
    roof = (f" = {100 * share:.1f}% of the slice's {record['slice_bandwidth_gbs']:g} GB/s "
            f"({record['slice_bandwidth']})") if share is not None else ""
    return (f"decode: {record['decode_steps']} steps, {record['decode_step_ms']:.2f} ms/step at batch "
            f"{record['decode_batch']} (mean {record['decode_mean_batch']} decoding), "
            f"{record['decode_bytes_per_step'] / 1e9:.2f} GB read/step, {record['decode_gbytes_per_s']:.1f} GB/s"
            f"{roof}; prefill {record['prefill_tokens_per_s']:.0f} tokens/s")


def evaluate(benchmark: str, log_dir: Path, model: Llama, loader, batch: int) -> scoring.AccuracyResult:
    """Score the logged answers against what the FP32 reference generates for the same prompts."""
    produced = scoring.read_accuracy_log(log_dir / scoring.ACCURACY_LOG, benchmark)
    indices = sorted(produced)
    expected: dict[int, np.ndarray] = {}
    for start in range(0, len(indices), batch):
        chunk = indices[start:start + batch]
        samples = [loader.sample(i) for i in chunk]
        answers = generate(model, [prompt_of(s) for s in samples], [int(s["max_new"]) for s in samples],
                           torch.float32)
        expected.update(zip(chunk, answers))
    return scoring.score(benchmark, produced, expected, loader.sample)
