"""DLRM click-through model: 26 embedding tables, bottom/top MLPs and pairwise dot interaction."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .. import datasets
from .common import Family, Inputs, Sample, reduced_postprocess

DENSE_FEATURES = 13
LOGIT_STD = 1.5
# Rows of the 26 tables of MLPerf's Criteo Terabyte DLRM (categorical ids hashed to at most 40M).
CRITEO_ROWS = (39884406, 39043, 17289, 7420, 20263, 3, 7120, 1543, 63, 38532951, 2953546, 403346, 10,
               2208, 11938, 155, 4, 976, 14, 39979771, 25641295, 39664984, 585935, 12972, 108, 36)


@dataclass(frozen=True)
class DLRMConfig:
    dim: int  # embedding dimension (128 real)
    bottom: tuple[int, ...]  # bottom MLP hidden widths; its output is `dim`
    top: tuple[int, ...]  # top MLP hidden widths; its output is one logit
    row_cap: int  # rows per table are min(real, cap); the real model needs ~100 GB at fp32
    pairs: int  # user-item pairs per sample (one sample = one aggregated user query)

    @property
    def tables(self) -> tuple[int, ...]:
        return tuple(min(rows, self.row_cap) for rows in CRITEO_ROWS)


CONFIGS = {
    "tiny": DLRMConfig(dim=16, bottom=(64, 32), top=(64, 32), row_cap=1000, pairs=32),
    "small": DLRMConfig(dim=64, bottom=(256, 128), top=(512, 256, 128), row_cap=100_000, pairs=128),
    "full": DLRMConfig(dim=128, bottom=(512, 256), top=(1024, 1024, 512, 256), row_cap=2_000_000, pairs=270),
}


def mlp(widths: Sequence[int], last_relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (cin, cout) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(cin, cout))
        if last_relu or i < len(widths) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    def __init__(self, cfg: DLRMConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.ModuleList(nn.Embedding(rows, cfg.dim) for rows in cfg.tables)
        for table in self.embeddings:
            bound = (1.0 / table.num_embeddings) ** 0.5
            nn.init.uniform_(table.weight, -bound, bound)
        self.bottom = mlp((DENSE_FEATURES, *cfg.bottom, cfg.dim), last_relu=True)
        features = len(cfg.tables) + 1
        self.register_buffer("pair_rows", torch.tril_indices(features, features, offset=-1), persistent=False)
        self.top = mlp((cfg.dim + features * (features - 1) // 2, *cfg.top, 1), last_relu=False)

    def logits(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        x = self.bottom(dense)
        embedded = [table(sparse[:, i]) for i, table in enumerate(self.embeddings)]
        stacked = torch.stack([x] + [e.to(x.dtype) for e in embedded], dim=1)  # [N, 27, dim]
        dots = torch.bmm(stacked, stacked.transpose(1, 2))
        pairs = dots[:, self.pair_rows[0], self.pair_rows[1]]
        return self.top(torch.cat([x, pairs], dim=1)).float()[:, 0]

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """Click probability per user-item pair [N]."""
        return torch.sigmoid(self.logits(dense, sparse))


def _fit(model: nn.Module, batches: Sequence[Inputs]) -> None:
    """Centre and spread the output logit so about half the pairs are predicted clicks, at varied confidence."""
    assert isinstance(model, DLRM)
    with torch.no_grad():
        logits = torch.cat([model.logits(*inputs) for inputs in batches])
        last = model.top[-1]
        assert isinstance(last, nn.Linear)
        scale = LOGIT_STD / float(logits.std().clamp(min=1e-6))
        last.weight *= scale
        last.bias.copy_((last.bias - torch.median(logits)) * scale)


def _make_sample(gen: torch.Generator, cfg: DLRMConfig) -> Sample:
    return datasets.click_log(gen, cfg.pairs, DENSE_FEATURES, cfg.tables)


def _collate(samples: Sequence[Sample]) -> Inputs:
    return torch.cat([s["dense"] for s in samples]), torch.cat([s["sparse"] for s in samples])


def _reduce(probs: torch.Tensor, cfg: DLRMConfig) -> tuple[torch.Tensor, None]:
    return probs.float().reshape(-1, cfg.pairs), None


DLRM_FAMILY = Family(name="dlrm", configs=CONFIGS, construct=DLRM, make_sample=_make_sample, collate=_collate,
                     postprocess=reduced_postprocess(_reduce), fit=_fit, output_dtype="float32", output_row=1,
                     reduce=_reduce)
