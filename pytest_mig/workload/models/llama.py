"""Llama-3.1-8B-shaped decoder (MLPerf v5.1 llama3.1-8b): GQA attention with RoPE, SwiGLU, RMSNorm.

Shape of the real model at `full`: 32 layers, hidden 4096, 32 query / 8 key-value heads of
128, SwiGLU 14336, vocabulary 128256, RoPE theta 500000. `tiny` (CPU) keeps the structure
(GQA 4:1, SwiGLU 3.5x) with 2 layers and narrow widths; `small` sits between.

Weights are fp8 (e4m3) values with one fp32 scale per output row, as NVIDIA's closed
submissions deploy this benchmark; every matmul upcasts its weight to the compute dtype
(fp32 for the reference, bf16/fp16 for the run), so the FP32 reference and the run share
exactly the same weights. Seeded: `construct` draws a weight seed from the RNG the registry
seeded; `fit` fills the weights on their device from it (no 8 G-parameter tensor on the CPU).

Confidence: a trained LM is sure of most next tokens. Here the residual stream carries the
current token's embedding and the output head's rows are partly (HEAD_PERMUTED) a fixed
permutation of the embedding table, partly random; the decoder layers' branch gain
(RESIDUAL_GAMMA) lets the context move the choice. At `tiny` (64 prompts): the same last
token after 10 different contexts gives 4 different answers, and greedy decoding agrees with
FP32 on 100% of answers in fp16, 98.4% of answers (99.7% of tokens) in bf16. (At gain 1.5
every context gives the same answer: a bigram machine; at 2.0 bf16 matches 95% of answers.)

Memory at `full` (why it fits the v5 suite's slice, e.g. H200 1g.18gb = 16 GiB):
  weights   8.03e9 params x 1 B (fp8)                      = 7.48 GiB
  scales    fp32 per output row (~0.5 M rows) + norms       < 0.01 GiB
  KV cache  32 layers x 2 x 8 heads x 128 x 2 B (bf16) = 128 KiB/token;
            16 sequences x (1024 prompt + 128 generated)    = 2.25 GiB
  transient one bf16 weight copy (gate+up 2 x 4096 x 14336) = 0.22 GiB;
            prefill of 2 prompts at a time: SwiGLU 2 x 1024 x 14336 x 2 x 2 B = 0.11 GiB,
            attention scores 2 x 32 x 1024^2 x 4 B = 0.25 GiB; logits 16 x 128256 x 4 B
  CUDA context and allocator slack                          ~ 1 GiB
  total                                                     ~ 11.4 GiB <= 16 GiB
The FP32 reference (accuracy mode) adds the fp32 KV cache (4.5 GiB): ~ 13.7 GiB.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .common import Family, Inputs, Sample

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0
RESIDUAL_GAMMA = 1.75  # gain of each attention / MLP branch's output projection
HEAD_PERMUTED = 0.6  # share of the output head that follows the permuted embedding
PAD = 0
FIRST_TOKEN = 1  # token ids from here up (0 is padding)


@dataclass(frozen=True)
class LlamaConfig:
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    prompt_min: int  # prompt length range of the synthetic dataset (tokens)
    prompt_max: int
    output_min: int  # tokens each sample generates (its max_new_tokens)
    output_max: int
    max_batch: int  # sequences decoded together
    prefill_batch: int  # prompts prefilled together (bounds the attention-score memory)
    rope_theta: float = 500000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def max_context(self) -> int:
        return self.prompt_max + self.output_max


CONFIGS = {
    "tiny": LlamaConfig(hidden=128, layers=2, heads=8, kv_heads=2, intermediate=448, vocab=1024,
                        prompt_min=12, prompt_max=48, output_min=4, output_max=16, max_batch=16,
                        prefill_batch=16),
    "small": LlamaConfig(hidden=512, layers=4, heads=8, kv_heads=2, intermediate=1792, vocab=8192,
                         prompt_min=64, prompt_max=256, output_min=16, output_max=64, max_batch=16,
                         prefill_batch=8),
    "full": LlamaConfig(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256,
                        prompt_min=128, prompt_max=1024, output_min=32, output_max=128, max_batch=16,
                        prefill_batch=2),
}


def quantize_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [M, K] as fp8 (e4m3) values and one fp32 scale per row [M, 1] (x ~ values * scale)."""
    amax = x.abs().amax(dim=-1, keepdim=True).float().clamp(min=1e-12)
    scale = amax / FP8_MAX
    return (x.float() / scale).to(FP8), scale


def fp8_gemm_on(device: torch.device) -> bool:
    """Hopper tensor cores (and later) take fp8 operands: `torch._scaled_mm`; elsewhere the same
    math dequantised (`FP8Linear.fp8`)."""
    return device.type == "cuda" and _capability(device.index) >= (8, 9)


@functools.lru_cache(maxsize=None)
def _capability(index: int | None) -> tuple[int, int]:
    return torch.cuda.get_device_capability(index)


def scaled_mm(q: torch.Tensor, sx: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """bf16 (q * sx) @ (weight * scale)^T on fp8 tensor cores: rows padded to a multiple of 16
    (cuBLASLt's fp8 alignment), the weight as the column-major second operand."""
    rows = q.shape[0]
    pad = -rows % 16
    if pad:
        q = torch.cat([q, q.new_zeros(pad, q.shape[1])])
        sx = torch.cat([sx, sx.new_ones(pad, 1)])
    y = torch._scaled_mm(q, weight.t(), scale_a=sx, scale_b=scale[None, :], out_dtype=torch.bfloat16)
    return y[:rows] if pad else y


class FP8Linear(nn.Module):
    """y = x W^T, W stored as fp8 values times a per-row fp32 scale.

    Two ways to run it: `forward` upcasts W to x's dtype per call (the FP32 reference, fp16/bf16);
    `fp8` quantises x per row (token) to fp8 too and multiplies fp8 by fp8 with fp32
    accumulation, scaled by both rows' scales: one `torch._scaled_mm` on Hopper tensor cores
    (reads W once, 1 byte a weight), the same math dequantised to fp32 on other devices.
    """

    def __init__(self, cin: int, cout: int, gamma: float = 1.0) -> None:
        super().__init__()
        self.cin, self.cout, self.gamma = cin, cout, gamma
        self.register_buffer("weight", torch.empty(cout, cin, dtype=FP8))
        self.register_buffer("scale", torch.ones(cout))

    def set_weight(self, w: torch.Tensor) -> None:
        """Quantise a float weight [cout, cin] to fp8 values with one scale per row."""
        amax = w.abs().amax(dim=1).clamp(min=1e-12)
        self.scale.copy_(amax / FP8_MAX)
        self.weight.copy_((w / self.scale[:, None]).to(FP8))

    def dense(self, dtype: torch.dtype) -> torch.Tensor:
        return self.weight.to(dtype) * self.scale.to(dtype)[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.to(x.dtype)) * self.scale.to(x.dtype)

    def fp8(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., cin] -> [..., cout] in x's dtype, both operands fp8 (see the class docstring)."""
        lead = x.shape[:-1]
        q, sx = quantize_rows(x.reshape(-1, self.cin))
        if fp8_gemm_on(x.device) and x.dtype == torch.bfloat16:
            y = scaled_mm(q, sx, self.weight, self.scale)
        else:
            y = ((q.float() * sx) @ (self.weight.float() * self.scale[:, None]).t()).to(x.dtype)
        return y.view(*lead, self.cout)

    def run(self, x: torch.Tensor, fp8: bool) -> torch.Tensor:
        return self.fp8(x) if fp8 else self(x)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype) * self.weight.to(x.dtype)


def rope(x: torch.Tensor, positions: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary embedding (half-split, as Llama) of x [B, H, T, D] at positions [B, T]."""
    dim = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    angles = positions.float()[:, None, :, None] * inv  # [B, 1, T, D/2]
    cos, sin = torch.cos(angles).to(x.dtype), torch.sin(angles).to(x.dtype)
    first, second = x[..., : dim // 2], x[..., dim // 2:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


def rope_tables(positions: torch.Tensor, dim: int, theta: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [N, 1, dim/2] of token positions [N] (computed once per step, shared by all layers)."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim))
    angles = positions.float()[:, None, None] * inv
    return torch.cos(angles).to(dtype), torch.sin(angles).to(dtype)


def rope_rows(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """`rope` of per-token rows x [N, H, D] (the same rotation, tables from `rope_tables`)."""
    half = x.shape[-1] // 2
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


@dataclass(frozen=True)
class Segment:
    """Part of one prompt in a packed prefill: its `count` tokens go to cache slot `slot` from
    position `start` on (a prompt's chunks come in order)."""

    slot: int
    start: int
    count: int


class Layer(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, hd = cfg.hidden, cfg.head_dim
        self.attn_norm = RMSNorm(d, cfg.eps)
        self.qkv = FP8Linear(d, (cfg.heads + 2 * cfg.kv_heads) * hd)
        self.out = FP8Linear(cfg.heads * hd, d, gamma=RESIDUAL_GAMMA)
        self.mlp_norm = RMSNorm(d, cfg.eps)
        self.gate_up = FP8Linear(d, 2 * cfg.intermediate)
        self.down = FP8Linear(cfg.intermediate, d, gamma=RESIDUAL_GAMMA)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor], start: int) -> torch.Tensor:
        cfg, (b, t, _) = self.cfg, x.shape
        hd = cfg.head_dim
        q, k, v = self.qkv(self.attn_norm(x)).split(
            [cfg.heads * hd, cfg.kv_heads * hd, cfg.kv_heads * hd], dim=-1)
        q = rope(q.view(b, t, cfg.heads, hd).transpose(1, 2), positions, cfg.rope_theta)
        k = rope(k.view(b, t, cfg.kv_heads, hd).transpose(1, 2), positions, cfg.rope_theta)
        keys, values = cache
        keys[:, :, start:start + t] = k.to(keys.dtype)
        values[:, :, start:start + t] = v.view(b, t, cfg.kv_heads, hd).transpose(1, 2).to(values.dtype)
        end = start + t
        attn = F.scaled_dot_product_attention(q, keys[:, :, :end].to(q.dtype), values[:, :, :end].to(q.dtype),
                                              attn_mask=mask, enable_gqa=True)
        x = x + self.out(attn.transpose(1, 2).reshape(b, t, cfg.heads * hd))
        gate, up = self.gate_up(self.mlp_norm(x)).chunk(2, dim=-1)
        return x + self.down(F.silu(gate) * up)

    def _qkv(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
             fp8: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Rows x [N, hidden] -> q [N, H, D], k and v [N, KV, D], q and k rotated."""
        cfg, n, hd = self.cfg, x.shape[0], self.cfg.head_dim
        q, k, v = self.qkv.run(self.attn_norm(x), fp8).split(
            [cfg.heads * hd, cfg.kv_heads * hd, cfg.kv_heads * hd], dim=-1)
        q = rope_rows(q.view(n, cfg.heads, hd), cos, sin)
        k = rope_rows(k.view(n, cfg.kv_heads, hd), cos, sin)
        return q, k, v.view(n, cfg.kv_heads, hd)

    def _finish(self, x: torch.Tensor, attn: torch.Tensor, fp8: bool) -> torch.Tensor:
        x = x + self.out.run(attn, fp8)
        gate, up = self.gate_up.run(self.mlp_norm(x), fp8).chunk(2, dim=-1)
        return x + self.down.run(F.silu(gate) * up, fp8)

    def prefill(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, segments: Sequence[Segment],
                cache: tuple[torch.Tensor, torch.Tensor], fp8: bool) -> torch.Tensor:
        """Packed prompt rows x [N, hidden] (segments in order): every GEMM over all N rows at
        once, attention per segment over its slot's cache (causal)."""
        cfg, hd = self.cfg, self.cfg.head_dim
        group = cfg.heads // cfg.kv_heads
        q, k, v = self._qkv(x, cos, sin, fp8)
        keys, values = cache
        outs, row = [], 0
        for seg in segments:
            end = seg.start + seg.count
            keys[seg.slot, :, seg.start:end] = k[row:row + seg.count].transpose(0, 1).to(keys.dtype)
            values[seg.slot, :, seg.start:end] = v[row:row + seg.count].transpose(0, 1).to(values.dtype)
            if seg.start == 0:  # a whole prompt: plain causal attention (flash kernel), K/V per query head
                qs = q[row:row + seg.count].transpose(0, 1)[None]
                ks = k[row:row + seg.count].transpose(0, 1).repeat_interleave(group, dim=0)[None]
                vs = v[row:row + seg.count].transpose(0, 1).repeat_interleave(group, dim=0)[None]
                att = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)
                outs.append(att[0].transpose(0, 1).reshape(seg.count, cfg.heads * hd))
                row += seg.count
                continue
            # A later chunk attends the cached prefix: query heads grouped under their KV head,
            # [1, KV, group * count, D], with an explicit causal mask (no K/V copies).
            qs = q[row:row + seg.count].view(seg.count, cfg.kv_heads, group, hd).permute(1, 2, 0, 3)
            qs = qs.reshape(1, cfg.kv_heads, group * seg.count, hd)
            slots = torch.arange(end, device=x.device)
            causal = slots[None, :] <= (seg.start + torch.arange(seg.count, device=x.device))[:, None]
            mask = causal.repeat(group, 1)[None, None]
            att = F.scaled_dot_product_attention(qs, keys[seg.slot:seg.slot + 1, :, :end].to(q.dtype),
                                                 values[seg.slot:seg.slot + 1, :, :end].to(q.dtype), attn_mask=mask)
            outs.append(att.view(cfg.kv_heads, group, seg.count, hd).permute(2, 0, 1, 3)
                        .reshape(seg.count, cfg.heads * hd))
            row += seg.count
        return self._finish(x, torch.cat(outs), fp8)

    def decode(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor,
               cache: tuple[torch.Tensor, torch.Tensor], context: int, fp8: bool) -> torch.Tensor:
        """One new token per cache slot, x [S, hidden] at positions [S]; attends the first
        `context` cache positions (a static bound: graph-capturable, no host sync)."""
        cfg, hd, n = self.cfg, self.cfg.head_dim, x.shape[0]
        group = cfg.heads // cfg.kv_heads
        q, k, v = self._qkv(x, cos, sin, fp8)
        keys, values = cache
        rows = torch.arange(n, device=x.device)
        keys[rows, :, positions] = k.to(keys.dtype)
        values[rows, :, positions] = v.to(values.dtype)
        mask = (torch.arange(context, device=x.device)[None, :] <= positions[:, None])[:, None, None]
        att = F.scaled_dot_product_attention(q.view(n, cfg.kv_heads, group, hd), keys[:, :, :context].to(q.dtype),
                                             values[:, :, :context].to(q.dtype), attn_mask=mask)
        return self._finish(x, att.reshape(n, cfg.heads * hd), fp8)


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = FP8Linear(cfg.hidden, cfg.vocab)  # rows are token embeddings
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.hidden, cfg.eps)
        self.head = FP8Linear(cfg.hidden, cfg.vocab)
        # Drawn from the RNG the registry seeded; `fit` fills the weights from it on their device.
        self.weight_seed = int(torch.randint(0, 2 ** 62, (1,), device="cpu"))

    def new_cache(self, batch: int, length: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        cfg, device = self.cfg, self.head.weight.device
        shape = (batch, cfg.kv_heads, length, cfg.head_dim)
        return [(torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))
                for _ in range(cfg.layers)]

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, valid: torch.Tensor,
             cache: list[tuple[torch.Tensor, torch.Tensor]], start: int, dtype: torch.dtype) -> torch.Tensor:
        """Run tokens [B, T] placed at cache slots start..start+T; fp32 logits of the last one [B, V].

        valid [B, >= start+T] marks the slots holding real tokens (left padding is not valid).
        """
        t = tokens.shape[1]
        end = start + t
        slots = torch.arange(end, device=tokens.device)
        query_slots = slots[start:end]
        allowed = (slots[None, :] <= query_slots[:, None])[None] & valid[:, None, :end]
        allowed |= (slots[None, :] == query_slots[:, None])[None]  # a pad query attends itself
        mask = allowed[:, None]  # [B, 1, T, S]
        # Rows gathered as bytes: indexing kernels do not all take float8 tensors.
        rows = self.embed.weight.view(torch.uint8)[tokens].view(FP8)
        x = rows.to(dtype) * self.embed.scale[tokens].to(dtype)[..., None]
        for layer, layer_cache in zip(self.layers, cache):
            x = layer(x, positions, mask, layer_cache, start)
        return self.head(self.norm(x[:, -1])).float()

    def kv_cache(self, slots: int, length: int, dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Preallocated K and V per layer [slots, KV heads, length, head_dim] (serving.KVCache)."""
        return self.new_cache(slots, length, dtype)

    def embed_rows(self, tokens: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        # Rows gathered as bytes: indexing kernels do not all take float8 tensors.
        rows = self.embed.weight.view(torch.uint8)[tokens].view(FP8)
        return rows.to(dtype) * self.embed.scale[tokens].to(dtype)[..., None]

    def prefill(self, tokens: torch.Tensor, positions: torch.Tensor, segments: Sequence[Segment],
                cache: list[tuple[torch.Tensor, torch.Tensor]], dtype: torch.dtype, fp8: bool) -> torch.Tensor:
        """Packed prompt tokens [N] at positions [N] (see `Layer.prefill`) into the cache; the
        fp32 logits of each segment's last token [len(segments), V]."""
        x = self.embed_rows(tokens, dtype)
        cos, sin = rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, dtype)
        for layer, layer_cache in zip(self.layers, cache):
            x = layer.prefill(x, cos, sin, segments, layer_cache, fp8)
        last = torch.tensor([sum(s.count for s in segments[:i + 1]) - 1 for i in range(len(segments))],
                            device=tokens.device)
        return self.head.run(self.norm(x[last]), fp8).float()

    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: list[tuple[torch.Tensor, torch.Tensor]],
               context: int, dtype: torch.dtype, fp8: bool) -> torch.Tensor:
        """One greedy step of every cache slot: tokens [S] at positions [S] -> next tokens [S]."""
        x = self.embed_rows(tokens, dtype)
        cos, sin = rope_tables(positions, self.cfg.head_dim, self.cfg.rope_theta, dtype)
        for layer, layer_cache in zip(self.layers, cache):
            x = layer.decode(x, cos, sin, positions, layer_cache, context, fp8)
        return torch.argmax(self.head.run(self.norm(x), fp8), dim=-1)

    def matrix_bytes(self) -> int:
        """Bytes one decode step reads of the weights: every matrix but the embedding table
        (only its rows of the step's tokens are read), with their scales and the norms."""
        total = 0
        for name, tensor in [*self.named_buffers(), *self.named_parameters()]:
            if not name.startswith("embed."):
                total += tensor.numel() * tensor.element_size()
        return total

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Next-token logits after left-padded prompts [B, L] (lengths [B]): one greedy step."""
        batch, length = tokens.shape
        valid = torch.arange(length, device=tokens.device)[None, :] >= (length - lengths)[:, None]
        positions = (torch.cumsum(valid.long(), dim=1) - 1).clamp(min=0)
        dtype = torch.get_autocast_dtype(tokens.device.type) if torch.is_autocast_enabled(tokens.device.type) \
            else torch.float32
        cache = self.new_cache(batch, length, dtype)
        return self.step(tokens, positions, valid, cache, 0, dtype)


def _init_weights(model: Llama) -> None:
    """Seeded weights on the model's device: random layers, a confident permuted output head."""
    cfg = model.cfg
    device = model.head.weight.device
    gen = torch.Generator(device=device)
    gen.manual_seed(model.weight_seed)

    def randn(rows: int, cols: int) -> torch.Tensor:
        return torch.randn(rows, cols, generator=gen, device=device)

    embed = randn(cfg.vocab, cfg.hidden)
    model.embed.set_weight(embed)
    for layer in model.layers:
        for lin in (layer.qkv, layer.out, layer.gate_up, layer.down):
            lin.set_weight(randn(lin.cout, lin.cin) * (lin.gamma / math.sqrt(lin.cin)))
    perm = torch.randperm(cfg.vocab, generator=gen, device=device)
    head = torch.empty_like(embed)
    head[perm] = embed.div_(embed.norm(dim=1, keepdim=True))  # token v predicts perm[v]
    del embed  # in-place steps: at `full` each of these tables is 2 GiB in fp32
    head.mul_(HEAD_PERMUTED).add_(randn(cfg.vocab, cfg.hidden), alpha=(1 - HEAD_PERMUTED) / math.sqrt(cfg.hidden))
    head[:FIRST_TOKEN] = 0  # never predict padding
    model.head.set_weight(head)


def _fit(model: nn.Module, batches: Sequence[Inputs]) -> None:
    assert isinstance(model, Llama)
    _init_weights(model)


def _make_sample(gen: torch.Generator, cfg: LlamaConfig) -> Sample:
    """A prompt of seeded length and tokens, and how many tokens its answer has.

    The prompt is held left-padded to the config's longest (`length` says how much is real):
    every batch of the QSL then has one shape, as a captured CUDA graph's static buffers and
    a single compile need (prompts of 993 and 865 tokens in two batches crashed the graph
    replay). Padding changes no logit: pad slots are masked out of attention.
    """
    length = int(torch.randint(cfg.prompt_min, cfg.prompt_max + 1, (1,), generator=gen))
    tokens = torch.randint(FIRST_TOKEN, cfg.vocab, (length,), generator=gen)
    new = int(torch.randint(cfg.output_min, cfg.output_max + 1, (1,), generator=gen))
    padded, _ = left_pad([tokens], cfg.prompt_max)
    return {"tokens": padded[0], "length": torch.tensor(length), "max_new": torch.tensor(new)}


def prompt_of(sample: Sample) -> torch.Tensor:
    """The real tokens of a sample's (left-padded) prompt."""
    return sample["tokens"][sample["tokens"].shape[0] - int(sample["length"]):]


def left_pad(prompts: Sequence[torch.Tensor], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as one left-padded [B, L] batch and their lengths [B]; L = `length`, else the longest."""
    longest = max(len(p) for p in prompts)
    if length is not None and longest > length:
        raise ValueError(f"a prompt of {longest} tokens does not fit a batch padded to {length}")
    length = longest if length is None else length
    tokens = torch.full((len(prompts), length), PAD, dtype=torch.long)
    for i, p in enumerate(prompts):
        tokens[i, length - len(p):] = p
    return tokens, torch.tensor([len(p) for p in prompts])


def _collate(samples: Sequence[Sample]) -> Inputs:
    """[B, prompt_max] left-padded tokens and their real lengths [B]: one shape for every batch."""
    return torch.stack([s["tokens"] for s in samples]), torch.stack([s["length"] for s in samples])


def _postprocess(logits: torch.Tensor, cfg: LlamaConfig) -> list[np.ndarray]:
    """The greedy next token per prompt (int32): the first token of each answer."""
    return [np.ascontiguousarray([int(t)], dtype="int32") for t in torch.argmax(logits, dim=-1)]


LLAMA31_8B = Family(name="llama3.1-8b", configs=CONFIGS, construct=Llama, make_sample=_make_sample,
                    collate=_collate, postprocess=_postprocess, fit=_fit, output_dtype="int32",
                    output_row=1)
