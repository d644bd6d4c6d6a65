"""3D U-Net (nnU-Net style, BraTS): 4 MRI modalities in, 4 label classes out, per voxel."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .. import datasets
from .common import ACTIVE_BIAS, Family, Inputs, Sample, reduced_postprocess, stack_samples


@dataclass(frozen=True)
class UNetConfig:
    patch: int  # cubic input patch edge (128 real)
    base: int  # filters at full resolution (32 real)
    levels: int  # resolutions, each halving the previous (6 real: 128 -> 4)
    max_filters: int = 320
    modalities: int = 4
    classes: int = 4  # background, necrosis/non-enhancing, edema, enhancing tumour

    def filters(self, level: int) -> int:
        return min(self.base * 2 ** level, self.max_filters)


CONFIGS = {
    "tiny": UNetConfig(patch=16, base=4, levels=3),
    "small": UNetConfig(patch=64, base=16, levels=4),
    "full": UNetConfig(patch=128, base=32, levels=6),
}


class ConvNorm(nn.Sequential):
    """3x3x3 conv, instance norm, leaky ReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(nn.Conv3d(cin, cout, 3, stride, 1), nn.InstanceNorm3d(cout, affine=True),
                         nn.LeakyReLU(0.01, inplace=True))
        nn.init.constant_(self[1].bias, ACTIVE_BIAS)


class UNet3D(nn.Module):
    def __init__(self, cfg: UNetConfig) -> None:
        super().__init__()
        self.down = nn.ModuleList()
        cin = cfg.modalities
        for level in range(cfg.levels):
            cout = cfg.filters(level)
            self.down.append(nn.Sequential(ConvNorm(cin, cout, 1 if level == 0 else 2), ConvNorm(cout, cout)))
            cin = cout
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for level in range(cfg.levels - 1, 0, -1):
            skip = cfg.filters(level - 1)
            self.up.append(nn.ConvTranspose3d(cfg.filters(level), skip, 2, 2))
            self.merge.append(nn.Sequential(ConvNorm(2 * skip, skip), ConvNorm(skip, skip)))
        self.head = nn.Conv3d(cfg.filters(0), cfg.classes, 1)

    def logits(self, volume: torch.Tensor) -> torch.Tensor:
        skips = []
        x = volume
        for block in self.down:
            x = block(x)
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips[:-1])):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x).float()

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Label map [B, D, H, W] (argmax over classes)."""
        # argmax over a trailing axis: ~10x faster on CPU than over the strided class axis
        return torch.argmax(self.logits(volume).permute(0, 2, 3, 4, 1).contiguous(), dim=-1)


def _make_sample(gen: torch.Generator, cfg: UNetConfig) -> Sample:
    return datasets.volume(gen, cfg.patch, cfg.modalities)


def _collate(samples: Sequence[Sample]) -> Inputs:
    return stack_samples(samples, ("volume",))


def _reduce(labels: torch.Tensor, cfg: UNetConfig) -> tuple[torch.Tensor, None]:
    return labels.to(torch.uint8), None


def _no_fit(model: nn.Module, batches: Sequence[Inputs]) -> None:
    """Instance norm normalises per sample: nothing to fit."""


UNET3D = Family(name="3d-unet", configs=CONFIGS, construct=UNet3D, make_sample=_make_sample, collate=_collate,
                postprocess=reduced_postprocess(_reduce), fit=_no_fit, output_dtype="uint8", output_row=1,
                stack_keys=("volume",), reduce=_reduce)
