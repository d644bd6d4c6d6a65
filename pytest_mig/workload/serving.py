"""The LLM's serving engine: a preallocated KV cache, continuous batching, chunked prefill
interleaved with decode, the decode step in CUDA graphs.

Rules:
- The KV cache is allocated once: `slots` sequences x the model's longest context (+1 scratch
  position that idle slots write to). Its slot count is the decode batch; on CUDA it is sized
  from the memory left after the weights (`kv_slots`), so a larger slice decodes a larger batch.
- Continuous batching (`Scheduler`): a finished sequence frees its slot at once and the next
  queued prompt takes it; every decode step runs all slots (idle ones on scratch).
- Prefill never starves decode: each iteration prefills at most `prefill_tokens` prompt tokens
  (prompts packed into one pass, a long one cut into chunks that continue next iteration), then
  decodes one token for every decoding sequence. A sequence's TPOT is thus bounded by one
  prefill budget plus one decode step.
- The decode step (embedding to argmax) is captured in one CUDA graph per attended-context
  bucket (CONTEXT_BUCKET positions) and replayed; on the CPU it runs eagerly, the same code.
- Each decode step's bytes read (weights once + the K/V of the attended context) and time are
  accumulated (`DecodeStats`): the roofline figure of the run.
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .models.llama import PAD, Llama, Segment

CONTEXT_BUCKET = 128  # decode graphs attend a multiple of this many cache positions
GRAPH_WARMUP = 2
MAX_SLOTS = 256  # decode batch cap (the whole GPU would hold more; attention grows with it)
RESERVE_BYTES = 3 * 2 ** 30  # left free beside the KV cache: prefill activations, graphs, allocator slack
RESERVE_FRACTION = 0.08  # ... or this share of the free memory, whichever is larger


def kv_bytes_per_token(model: Llama, dtype: torch.dtype) -> int:
    cfg = model.cfg
    return cfg.layers * 2 * cfg.kv_heads * cfg.head_dim * torch.tensor([], dtype=dtype).element_size()


def cache_length(model: Llama) -> int:
    """Positions per slot: the longest context rounded up to a bucket, plus one scratch position."""
    ctx = model.cfg.max_context
    return -(-ctx // CONTEXT_BUCKET) * CONTEXT_BUCKET + 1


def kv_slots(free_bytes: int, slot_bytes: int, cap: int = MAX_SLOTS) -> int:
    """Decode batch that the free memory holds: KV slots after a reserve; at least 1, at most `cap`."""
    usable = free_bytes - max(RESERVE_BYTES, int(RESERVE_FRACTION * free_bytes))
    return max(1, min(cap, usable // max(1, slot_bytes)))


@dataclass
class Request:
    """One request: its prompt, answer length and progress."""

    request: Any
    prompt: torch.Tensor
    max_new: int
    slot: int = -1
    prefilled: int = 0
    out: list[int] = field(default_factory=list)

    @property
    def position(self) -> int:
        """Cache position of the next token fed to decode (the last one generated)."""
        return len(self.prompt) + len(self.out) - 1


class Scheduler:
    """Slots, queue and prefill budget; pure bookkeeping (no torch compute)."""

    def __init__(self, slots: int, prefill_tokens: int) -> None:
        if slots < 1 or prefill_tokens < 1:
            raise ValueError(f"need at least one slot and one prefill token, got {slots} and {prefill_tokens}")
        self.slots, self.prefill_tokens = slots, prefill_tokens
        self.free = list(range(slots - 1, -1, -1))  # pop() gives slot 0 first
        self.waiting: collections.deque[Request] = collections.deque()
        self.prefilling: list[Request] = []
        self.decoding: list[Request] = []

    def add(self, seqs: Sequence[Request]) -> None:
        self.waiting.extend(seqs)

    @property
    def room(self) -> int:
        """How many more requests could take a slot now (beyond those already waiting)."""
        return max(0, len(self.free) - len(self.waiting))

    def busy(self) -> bool:
        return bool(self.waiting or self.prefilling or self.decoding)

    def plan_prefill(self) -> list[tuple[Request, Segment]]:
        """Give free slots to waiting requests, then this iteration's prompt chunks (in order,
        at most `prefill_tokens` tokens in all)."""
        while self.free and self.waiting:
            seq = self.waiting.popleft()
            seq.slot = self.free.pop()
            self.prefilling.append(seq)
        budget, plan = self.prefill_tokens, []
        for seq in self.prefilling:
            if budget == 0:
                break
            count = min(budget, len(seq.prompt) - seq.prefilled)
            plan.append((seq, Segment(seq.slot, seq.prefilled, count)))
            budget -= count
        return plan

    def prefilled(self, seq: Request, segment: Segment, first: int | None) -> bool:
        """Record a prefilled chunk; with the prompt complete, `first` is its first answer token.
        True when the sequence is finished (an answer of one token)."""
        seq.prefilled += segment.count
        if seq.prefilled < len(seq.prompt):
            return False
        assert first is not None
        self.prefilling.remove(seq)
        seq.out.append(first)
        if len(seq.out) >= seq.max_new:
            self.release(seq)
            return True
        self.decoding.append(seq)
        return False

    def decoded(self, tokens: Sequence[int]) -> list[Request]:
        """Append each decoding sequence's next token (tokens indexed by slot); the finished ones."""
        done = []
        for seq in list(self.decoding):
            seq.out.append(int(tokens[seq.slot]))
            if len(seq.out) >= seq.max_new:
                self.decoding.remove(seq)
                self.release(seq)
                done.append(seq)
        return done

    def release(self, seq: Request) -> None:
        self.free.append(seq.slot)


@dataclass
class DecodeStats:
    """Decode steps of a run: their count, seconds, bytes read and sequences decoded."""

    steps: int = 0
    seconds: float = 0.0
    bytes_read: int = 0
    active: int = 0  # sum over steps of decoding sequences
    prefill_passes: int = 0
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0

    def record(self) -> dict[str, float | int]:
        step = self.seconds / self.steps if self.steps else 0.0
        return {"decode_steps": self.steps, "decode_step_ms": round(step * 1e3, 3),
                "decode_bytes_per_step": int(self.bytes_read / self.steps) if self.steps else 0,
                "decode_gbytes_per_s": round(self.bytes_read / self.seconds / 1e9, 3) if self.seconds else 0.0,
                "decode_mean_batch": round(self.active / self.steps, 2) if self.steps else 0.0,
                "prefill_passes": self.prefill_passes, "prefill_tokens": self.prefill_tokens,
                "prefill_tokens_per_s": round(self.prefill_tokens / self.prefill_seconds, 1)
                if self.prefill_seconds else 0.0}


class Engine:
    """The model, its KV cache and the decode graphs; runs a Scheduler's plans."""

    def __init__(self, model: Llama, slots: int, dtype: torch.dtype, fp8: bool, prefill_tokens: int,
                 graphs: bool) -> None:
        self.model, self.dtype, self.fp8 = model, dtype, fp8
        self.device = model.head.weight.device
        self.slots, self.prefill_tokens = slots, prefill_tokens
        self.length = cache_length(model)
        self.scratch = self.length - 1
        self.cache = model.kv_cache(slots, self.length, dtype)
        self.tokens = torch.full((slots,), PAD, dtype=torch.long, device=self.device)
        self.positions = torch.full((slots,), self.scratch, dtype=torch.long, device=self.device)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor]] | None = {} if graphs else None
        self._pool: Any = None
        self.stats = DecodeStats()
        self.weight_bytes = model.matrix_bytes()
        self.token_kv_bytes = kv_bytes_per_token(model, dtype)

    # --- decode ---------------------------------------------------------------------------
    def bucket(self, context: int) -> int:
        return min(self.scratch, -(-context // CONTEXT_BUCKET) * CONTEXT_BUCKET)

    def buckets(self) -> list[int]:
        return sorted({self.bucket(c) for c in range(CONTEXT_BUCKET, self.scratch + CONTEXT_BUCKET, CONTEXT_BUCKET)})

    def _step(self, context: int) -> torch.Tensor:
        return self.model.decode(self.tokens, self.positions, self.cache, context, self.dtype, self.fp8)

    def capture(self) -> float:
        """Capture every context bucket's decode graph (CUDA with graphs on); seconds taken."""
        started = time.perf_counter()
        if self.graphs is not None:
            for context in self.buckets():
                self._graph(context)
            torch.cuda.synchronize(self.device)
        return time.perf_counter() - started

    def _graph(self, context: int) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
        assert self.graphs is not None
        if context not in self.graphs:
            with torch.inference_mode():
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(GRAPH_WARMUP):
                        self._step(context)
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph, pool=self._pool, capture_error_mode="thread_local"):
                    out = self._step(context)
            if self._pool is None:
                self._pool = graph.pool()
            self.graphs[context] = (graph, out)
        return self.graphs[context]

    def decode(self, decoding: Sequence[Request]) -> list[int]:
        """One token for every decoding sequence (idle slots run on scratch): next tokens by slot."""
        started = time.perf_counter()
        tokens = [PAD] * self.slots
        positions = [self.scratch] * self.slots
        for seq in decoding:
            tokens[seq.slot], positions[seq.slot] = seq.out[-1], seq.position
        context = self.bucket(max(positions[s.slot] for s in decoding) + 1)
        self.tokens.copy_(torch.tensor(tokens), non_blocking=True)
        self.positions.copy_(torch.tensor(positions), non_blocking=True)
        with torch.inference_mode():
            if self.graphs is not None:
                graph, out = self._graph(context)
                graph.replay()
            else:
                out = self._step(context)
            result = out.tolist()
        stats = self.stats
        stats.steps += 1
        stats.active += len(decoding)
        stats.seconds += time.perf_counter() - started
        stats.bytes_read += self.weight_bytes + self.slots * context * self.token_kv_bytes
        return result

    # --- prefill --------------------------------------------------------------------------
    def prefill(self, plan: Sequence[tuple[Request, Segment]]) -> list[int | None]:
        """Run one packed prefill pass; each entry's first answer token where its prompt is complete."""
        started = time.perf_counter()
        tokens = torch.cat([seq.prompt[seg.start:seg.start + seg.count] for seq, seg in plan]).to(self.device)
        positions = torch.cat([torch.arange(seg.start, seg.start + seg.count) for _, seg in plan]).to(self.device)
        with torch.inference_mode():
            logits = self.model.prefill(tokens, positions, [seg for _, seg in plan], self.cache, self.dtype, self.fp8)
            firsts = torch.argmax(logits, dim=-1).tolist()
        self.stats.prefill_passes += 1
        self.stats.prefill_tokens += len(tokens)
        self.stats.prefill_seconds += time.perf_counter() - started
        return [first if seq.prefilled + seg.count == len(seq.prompt) else None
                for (seq, seg), first in zip(plan, firsts)]


OnFirst = Callable[[Request], None]
OnDone = Callable[[Request], None]


def serve(engine: Engine, sched: Scheduler, refill: Callable[[int], Sequence[Request]] | None = None,
          on_first: OnFirst | None = None, on_done: OnDone | None = None,
          cut: Callable[[], bool] | None = None) -> None:
    """Run until the scheduler has nothing left: each iteration refills free slots from `refill`
    (continuous batching), runs one prefill pass within budget, then one decode step. Once
    `cut()` is true, every request still held is answered at once with what it has (a test cut
    short: LoadGen must see every sample complete)."""
    while True:
        if cut is not None and cut():
            for seq in [*sched.waiting, *sched.prefilling, *sched.decoding]:
                if not seq.out:
                    seq.out.append(PAD)
                    if on_first is not None:
                        on_first(seq)
                if on_done is not None:
                    on_done(seq)
            sched.waiting.clear()
            sched.prefilling.clear()
            sched.decoding.clear()
            sched.free = list(range(sched.slots - 1, -1, -1))
            return
        if refill is not None and sched.room:
            sched.add(refill(sched.room))
        if not sched.busy():
            return
        plan = sched.plan_prefill()
        if plan:
            for (seq, seg), first in zip(plan, engine.prefill(plan)):
                finished = sched.prefilled(seq, seg, first)
                if first is not None and on_first is not None:
                    on_first(seq)
                if finished and on_done is not None:
                    on_done(seq)
        if sched.decoding:
            for seq in sched.decoded(engine.decode(sched.decoding)):
                if on_done is not None:
                    on_done(seq)


def generate(model: Llama, prompts: Sequence[torch.Tensor], max_new: Sequence[int], dtype: torch.dtype,
             fp8: bool = False, slots: int | None = None, prefill_tokens: int = 4096) -> list[np.ndarray]:
    """Greedy answers of `max_new[i]` tokens to each prompt (eager; the engine's own math)."""
    engine = Engine(model, slots or len(prompts), dtype, fp8, prefill_tokens, graphs=False)
    sched = Scheduler(engine.slots, prefill_tokens)
    seqs = [Request(i, p, n) for i, (p, n) in enumerate(zip(prompts, max_new))]
    sched.add(seqs)
    serve(engine, sched)
    return [np.asarray(s.out, dtype=np.int32) for s in seqs]
