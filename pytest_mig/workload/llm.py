"""The built-in harness's LLM path: greedy generation under LoadGen's token-latency mode.

Rules:
- `use_token_latencies` is on: after a sample's prefill the SUT reports its first token with
  `lg.FirstTokenComplete` (TTFT), and completes the sample with all its token ids and their
  count in `QuerySampleResponse(id, data, size, n_tokens)` (TPOT, tokens/s). LoadGen computes
  and logs every token metric itself.
- Static batching: the worker takes up to `max_batch` queued samples, prefills them, decodes
  them together and completes each one as soon as its own answer length is reached.
- Accuracy mode: the generated token ids (int32, from mlperf_log_accuracy.json) are compared
  with those the FP32 reference of the same weights generates for the same prompts:
  ROUGE-1/2/L on token ids (MLPerf's llama metrics, computed on ids instead of words) and
  exact match; rouge1 is the headline, written in MLCommons' evaluation.py format.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import mlperf_loadgen as lg
import numpy as np
import torch

from . import scoring, sut
from .batching import BatchWorker
from .models import FAMILIES, build, canonical_benchmark, resolve_device
from .models.llama import Llama, left_pad, prompt_of

COMPUTE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Offline asks for this many times the calibrated token rate, so the run outlasts min duration.
OFFLINE_QPS_MARGIN = 2.0
SERVER_LOAD = 0.5  # Server target: this fraction of the calibrated sample rate
# Server bounds: MLPerf's (llama3.1-8b: TTFT 2 s, TPOT 100 ms) or, on a slow device, these
# multiples of the calibrated values, whichever is larger.
MLPERF_TTFT_MS, MLPERF_TPOT_MS = 2000.0, 100.0
LATENCY_FACTOR = 20.0

OnFirst = Callable[[int, int], None]  # (row, first token id)
OnDone = Callable[[int, np.ndarray], None]  # (row, all generated token ids as int32)


def llm_benchmarks() -> tuple[str, ...]:
    """Benchmarks whose model is a decoder run by this module."""
    return tuple(name for name, f in FAMILIES.items() if f.construct is Llama)


def compute_dtype(precision: str) -> torch.dtype:
    if precision not in COMPUTE_DTYPES:
        raise ValueError(f"the LLM runs fp32, bf16 or fp16 (its weights are fp8 already), not "
                         f"{precision!r}; use --precision bf16")
    return COMPUTE_DTYPES[precision]


@torch.inference_mode()
def generate(model: Llama, prompts: Sequence[torch.Tensor], max_new: Sequence[int], dtype: torch.dtype,
             on_first: OnFirst | None = None, on_done: OnDone | None = None) -> list[np.ndarray]:
    """Greedy answers of `max_new[i]` tokens to each prompt, decoded as one batch."""
    cfg = model.cfg
    device = model.head.weight.device
    tokens, lengths = left_pad(prompts)
    batch, length = tokens.shape
    total = length + max(max_new)
    tokens, lengths = tokens.to(device), lengths.to(device)
    valid = torch.zeros(batch, total, dtype=torch.bool, device=device)
    valid[:, :length] = torch.arange(length, device=device)[None, :] >= (length - lengths)[:, None]
    positions = (torch.cumsum(valid[:, :length].long(), dim=1) - 1).clamp(min=0)
    cache = model.new_cache(batch, total, dtype)
    logits = torch.empty(batch, cfg.vocab, device=device)
    for start in range(0, batch, cfg.prefill_batch):  # prefill a few prompts at a time
        rows = slice(start, start + cfg.prefill_batch)
        part = [(k[rows], v[rows]) for k, v in cache]
        logits[rows] = model.step(tokens[rows], positions[rows], valid[rows], part, 0, dtype)
    nxt = torch.argmax(logits, dim=-1)
    out = [[int(t)] for t in nxt.tolist()]
    for i, first in enumerate(out):
        if on_first is not None:
            on_first(i, first[0])
    answers: list[np.ndarray | None] = [None] * batch

    def finish(i: int) -> None:
        answers[i] = np.asarray(out[i], dtype=np.int32)
        if on_done is not None:
            on_done(i, answers[i])

    for i in range(batch):
        if max_new[i] == 1:
            finish(i)
    for step in range(1, max(max_new)):
        slot = length + step - 1
        valid[:, slot] = True
        pos = (lengths + step - 1)[:, None]
        logits = model.step(nxt[:, None], pos, valid, cache, slot, dtype)
        nxt = torch.argmax(logits, dim=-1)
        for i, t in enumerate(nxt.tolist()):
            if len(out[i]) < max_new[i]:
                out[i].append(int(t))
                if len(out[i]) == max_new[i]:
                    finish(i)
    return [a if a is not None else np.asarray(out[i], dtype=np.int32) for i, a in enumerate(answers)]


class TokenSUT(BatchWorker):
    """Queues issued samples; one worker generates them in batches, reporting tokens to LoadGen."""

    def __init__(self, model: Llama, loader, dtype: torch.dtype, max_batch: int) -> None:
        self.model, self.loader, self.dtype = model, loader, dtype
        super().__init__(max_batch, "llm-worker")

    def _run(self, batch: list, draining: bool) -> None:
        samples = [self.loader.sample(s.index) for s in batch]

        def first(i: int, token: int) -> None:
            data = np.asarray([token], dtype=np.int32)
            lg.FirstTokenComplete([lg.QuerySampleResponse(batch[i].id, data.ctypes.data, data.nbytes, 1)])

        def done(i: int, tokens: np.ndarray) -> None:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(batch[i].id, tokens.ctypes.data, tokens.nbytes,
                                                            len(tokens))])

        generate(self.model, [prompt_of(s) for s in samples], [int(s["max_new"]) for s in samples],
                 self.dtype, first, done)


@dataclass(frozen=True)
class TokenCalibration:
    batch_s: float  # one full batch, prefill to last token
    samples: int
    tokens: int
    ttft_s: float  # prefill of that batch
    tpot_s: float  # one decode step

    @property
    def sample_qps(self) -> float:
        return self.samples / self.batch_s


def calibrate(model: Llama, loader, dtype: torch.dtype, batch: int, sample_count: int) -> TokenCalibration:
    """Time a warm-up batch, then a full batch of QSL samples (prefill and decode separately)."""
    device = model.head.weight.device
    samples = [loader.sample(i % sample_count) for i in range(batch)]
    prompts, new = [prompt_of(s) for s in samples], [int(s["max_new"]) for s in samples]
    generate(model, prompts[:2], [2, 2], dtype)  # warm-up: allocator, kernels
    marks: list[float] = []

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    generate(model, prompts, new, dtype, on_first=lambda i, t: marks.append(time.perf_counter()) if i == 0 else None)
    sync()
    total = time.perf_counter() - t0
    ttft = (marks[0] - t0) if marks else total
    steps = max(1, max(new) - 1)
    return TokenCalibration(batch_s=total, samples=batch, tokens=sum(new), ttft_s=ttft,
                            tpot_s=max(1e-6, (total - ttft) / steps))


def test_settings(cfg, cal: TokenCalibration) -> tuple[lg.TestSettings, dict[str, float | int | str]]:
    ts, common = sut.common_settings(cfg)
    ts.use_token_latencies = True
    shown = {"scenario": common.pop("scenario"), "mode": common.pop("mode"), "use_token_latencies": 1, **common}
    if cfg.scenario == "Offline":
        qps = cfg.target_qps or OFFLINE_QPS_MARGIN * cal.sample_qps
        ts.offline_expected_qps = qps
        shown["offline_expected_qps"] = round(qps, 3)
    elif cfg.scenario == "Server":
        qps = cfg.target_qps or SERVER_LOAD * cal.sample_qps
        ttft_ms = max(MLPERF_TTFT_MS, LATENCY_FACTOR * cal.batch_s * 1e3)
        tpot_ms = max(MLPERF_TPOT_MS, LATENCY_FACTOR * cal.tpot_s * 1e3)
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


def run(cfg):
    """Build, calibrate, run LoadGen in token-latency mode and, in accuracy mode, score against FP32."""
    log_dir = Path(cfg.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    name = canonical_benchmark(cfg.benchmark)
    dtype = compute_dtype(cfg.precision)
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    built = build(name, cfg.size, cfg.seed, device)
    model, loader = built.model, built.make_inputs
    assert isinstance(model, Llama)
    mcfg = model.cfg
    batch = cfg.batch_size or (1 if cfg.scenario == "SingleStream" else mcfg.max_batch)
    weights = sum(b.numel() for b in model.buffers() if b.dtype == torch.float8_e4m3fn)
    sut.say(f"model {name} size={cfg.size} precision={cfg.precision} (fp8 weights) device={device} "
            f"threads={cfg.threads} params={weights} layers={mcfg.layers} built in {time.perf_counter() - t0:.2f}s")
    cal = calibrate(model, loader, dtype, batch, cfg.sample_count)
    sut.say(f"calibration: batch {cal.samples} in {cal.batch_s * 1e3:.1f} ms ({cal.sample_qps:.2f} samples/s, "
            f"{cal.tokens / cal.batch_s:.1f} tokens/s), prefill {cal.ttft_s * 1e3:.1f} ms, "
            f"decode step {cal.tpot_s * 1e3:.2f} ms")
    ts, shown = test_settings(cfg, cal)
    shown.update(sample_count=cfg.sample_count, batch_size=batch)
    sut.say("settings: " + ", ".join(f"{k}={v}" for k, v in shown.items()))
    tokens_sut = TokenSUT(model, loader, dtype, batch)
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
    sut.say(f"test finished in {test_s:.2f}s; logs in {log_dir}")
    outcome = sut.RunOutcome(log_dir=log_dir, settings=shown, test_s=test_s,
                             files={"summary": log_dir / "mlperf_log_summary.txt",
                                    "detail": log_dir / "mlperf_log_detail.txt",
                                    "accuracy_log": log_dir / scoring.ACCURACY_LOG})
    if cfg.mode == "accuracy":
        outcome.accuracy = evaluate(name, log_dir, model, loader, batch)
        text, data = scoring.write_accuracy(log_dir, outcome.accuracy)
        outcome.files.update(accuracy_txt=text, accuracy_json=data)
        sut.say(f"accuracy vs fp32 reference: {scoring.format_accuracy_line(name, outcome.accuracy.fields)}")
    return outcome


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
