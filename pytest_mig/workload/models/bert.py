"""BERT question answering: post-LN transformer encoder with a SQuAD span head (start/end logits)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import datasets
from .common import Family, Inputs, Sample, reduced_postprocess, stack_samples


@dataclass(frozen=True)
class BertConfig:
    layers: int
    hidden: int
    heads: int
    seq: int
    vocab: int = 30522
    max_positions: int = 512
    max_answer: int = 30  # longest answer span in tokens, as in the SQuAD post-processing


CONFIGS = {
    "tiny": BertConfig(layers=2, hidden=64, heads=4, seq=64),
    "small": BertConfig(layers=4, hidden=256, heads=4, seq=128),
    "full": BertConfig(layers=24, hidden=1024, heads=16, seq=384),
}


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.attn_out = nn.Linear(hidden, hidden)
        self.attn_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.ffn_in = nn.Linear(hidden, 4 * hidden)
        self.ffn_out = nn.Linear(4 * hidden, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        batch, seq, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, seq, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
        x = self.attn_norm(x + self.attn_out(context.transpose(1, 2).reshape(batch, seq, hidden)))
        return self.ffn_norm(x + self.ffn_out(F.gelu(self.ffn_in(x))))


class BertQA(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.words = nn.Embedding(cfg.vocab, cfg.hidden)
        self.positions = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.segments = nn.Embedding(2, cfg.hidden)
        self.embed_norm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.layers = nn.ModuleList(EncoderLayer(cfg.hidden, cfg.heads) for _ in range(cfg.layers))
        self.qa = nn.Linear(cfg.hidden, 2)
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)

    def logits(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
               attention_mask: torch.Tensor) -> torch.Tensor:
        """Start and end logits [B, S, 2]."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.words(input_ids) + self.positions(positions)[None] + self.segments(token_type_ids)
        x = self.embed_norm(x)
        keep = attention_mask.bool()[:, None, None, :]
        for layer in self.layers:
            x = layer(x, keep)
        return self.qa(x).float()

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> torch.Tensor:
        """Best answer span (start, end) [B, 2] inside the context, at most max_answer tokens long."""
        logits = self.logits(input_ids, token_type_ids, attention_mask)
        start, end = logits[..., 0], logits[..., 1]
        seq = input_ids.shape[1]
        context = (token_type_ids == 1) & attention_mask.bool() & (input_ids != datasets.SEP)
        offsets = torch.arange(seq, device=input_ids.device)
        span = offsets[None, :] - offsets[:, None]  # end - start
        allowed = (span >= 0) & (span < self.cfg.max_answer)
        valid = allowed[None] & context[:, :, None] & context[:, None, :]
        scores = (start[:, :, None] + end[:, None, :]).masked_fill(~valid, float("-inf"))
        best = torch.argmax(scores.view(scores.shape[0], -1), dim=1)
        return torch.stack([best // seq, best % seq], dim=1)


def _make_sample(gen: torch.Generator, cfg: BertConfig) -> Sample:
    return datasets.question_context(gen, cfg.seq, cfg.vocab)


def _collate(samples: Sequence[Sample]) -> Inputs:
    return stack_samples(samples, ("input_ids", "token_type_ids", "attention_mask"))


def _reduce(spans: torch.Tensor, cfg: BertConfig) -> tuple[torch.Tensor, None]:
    return spans.int(), None


def _no_fit(model: nn.Module, batches: Sequence[Inputs]) -> None:
    """LayerNorm carries no running statistics: nothing to fit."""


BERT = Family(name="bert", configs=CONFIGS, construct=BertQA, make_sample=_make_sample, collate=_collate,
              postprocess=reduced_postprocess(_reduce), fit=_no_fit, output_dtype="int32", output_row=2,
              stack_keys=("input_ids", "token_type_ids", "attention_mask"), reduce=_reduce)
