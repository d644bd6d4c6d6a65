"""Building blocks shared by the model families: conv+BN units, BN folding, the Family record."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

Sample = dict[str, torch.Tensor]
Inputs = tuple[torch.Tensor, ...]

# BN shift before a ReLU: most units stay active, as in trained nets. At 0 a random BN-ReLU
# stack is chaotic (rounding noise grows ~1.35x per layer) and bf16 flips most decisions.
ACTIVE_BIAS = 1.0


@dataclass(frozen=True)
class Family:
    """Everything the registry needs to build one benchmark's model, data and output codec."""

    name: str
    configs: Mapping[str, Any]  # size -> family-specific frozen config
    construct: Callable[[Any], nn.Module]  # random init; the registry seeds the RNG first
    make_sample: Callable[[torch.Generator, Any], Sample]
    collate: Callable[[Sequence[Sample]], Inputs]
    postprocess: Callable[[Any, Any], list[np.ndarray]]  # (model output, config) -> one array per sample
    # Fits statistics a trained model would have (BN stats, biases) on calibration batches.
    fit: Callable[[nn.Module, Sequence[Inputs]], None]
    output_dtype: str  # numpy dtype of one response's bytes
    output_row: int  # values per output row (1 = flat)
    # Inputs whose batch is a plain stack of same-shaped samples: the GPU path holds them stacked
    # on the device and gathers batches there by index (empty: collate does more, e.g. pads).
    stack_keys: tuple[str, ...] = ()
    # (model output, config) -> (rows [B, ...] in output_dtype, valid items per row [B] or None),
    # on the model's device: the GPU path copies these to the host once per batch. Where given,
    # `postprocess` is `reduced_postprocess(reduce)`, so both paths answer the same bytes.
    reduce: Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor | None]] | None = None


class ConvBN(nn.Module):
    """Conv (2d or 3d) + BatchNorm + optional activation; BN folds into the conv for inference."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: type[nn.Module] | None = nn.ReLU, padding: int | None = None) -> None:
        super().__init__()
        pad = kernel // 2 if padding is None else padding
        self.conv = nn.Conv2d(cin, cout, kernel, stride, pad, groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout)
        self.act = act() if act is not None else nn.Identity()
        if act is not None:
            nn.init.constant_(self.bn.bias, ACTIVE_BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def fold(self) -> None:
        """Fold the BN statistics into the conv weight and bias, as inference engines do."""
        if not isinstance(self.bn, nn.BatchNorm2d):
            return
        bn = self.bn
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        conv = self.conv
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, groups=conv.groups, bias=True).to(conv.weight.device)
        with torch.no_grad():
            fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
            fused.bias.copy_(bn.bias.detach() - bn.running_mean * scale)
        self.conv, self.bn = fused, nn.Identity()


def fit_batchnorm(model: nn.Module, batches: Sequence[Inputs]) -> None:
    """Recompute BN running stats on calibration batches (cumulative), then fold BN into convs."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    with torch.no_grad():
        for inputs in batches:
            model(*inputs)
    model.eval()
    for module in model.modules():
        if isinstance(module, ConvBN):
            module.fold()


def stack_samples(samples: Sequence[Sample], keys: Sequence[str]) -> Inputs:
    """Collate fixed-shape samples by stacking each named tensor along a new batch dim."""
    return tuple(torch.stack([s[k] for s in samples]) for k in keys)


def split_rows(rows: np.ndarray, counts: np.ndarray | None) -> list[np.ndarray]:
    """One flat array per sample from a batch's rows (the first `counts[i]` items of row i)."""
    flat = rows.reshape(rows.shape[0], -1)
    if counts is None:
        return [np.ascontiguousarray(row) for row in flat]
    per_item = int(np.prod(rows.shape[2:], dtype=np.int64))
    return [np.ascontiguousarray(row[:int(n) * per_item]) for row, n in zip(flat, counts)]


def reduced_postprocess(reduce: Callable[[Any, Any], tuple[torch.Tensor, torch.Tensor | None]]
                        ) -> Callable[[Any, Any], list[np.ndarray]]:
    """The per-sample arrays of `reduce`'s rows: the CPU path's postprocess for a family with a reduce."""
    def postprocess(output: Any, cfg: Any) -> list[np.ndarray]:
        rows, counts = reduce(output, cfg)
        return split_rows(rows.detach().cpu().numpy(), None if counts is None else counts.cpu().numpy())
    return postprocess


def to_numpy_rows(tensor: torch.Tensor, dtype: str) -> list[np.ndarray]:
    """Split a batch tensor into one contiguous numpy array per sample."""
    array = tensor.detach().float().cpu().numpy() if dtype.startswith("float") else tensor.detach().cpu().numpy()
    return [np.ascontiguousarray(row, dtype=dtype).reshape(-1) for row in array]
