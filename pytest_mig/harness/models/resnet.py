"""ResNet family: ResNet-50 v1.5 classifier (bottleneck blocks [3,4,6,3]) and the ResNet-34 trunk SSD uses."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .. import datasets
from .common import ConvBN, Family, Sample, fit_batchnorm, stack_samples, to_numpy_rows


@dataclass(frozen=True)
class ResNetConfig:
    image: int  # input resolution (square)
    width: int  # stem channels; 64 in the real network
    classes: int = 1000
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)


CONFIGS = {
    "tiny": ResNetConfig(image=32, width=8),
    "small": ResNetConfig(image=112, width=32),
    "full": ResNetConfig(image=224, width=64),
}


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride, as in v1.5), 1x1 expand x4, identity or projection."""

    expansion = 4

    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = mid * self.expansion
        self.reduce = ConvBN(cin, mid, 1)
        self.spatial = ConvBN(mid, mid, 3, stride)
        self.expand = ConvBN(mid, cout, 1, act=None)
        self.shortcut = ConvBN(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.expand(self.spatial(self.reduce(x))) + self.shortcut(x))


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual: the ResNet-34 block."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.first = ConvBN(cin, cout, 3, stride)
        self.second = ConvBN(cout, cout, 3, act=None)
        self.shortcut = ConvBN(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.second(self.first(x)) + self.shortcut(x))


def stem(width: int) -> nn.Sequential:
    return nn.Sequential(ConvBN(3, width, 7, 2), nn.MaxPool2d(3, 2, 1))


class ResNet50(nn.Module):
    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = [stem(cfg.width)]
        cin = cfg.width
        for stage, count in enumerate(cfg.blocks):
            mid = cfg.width * 2 ** stage
            for i in range(count):
                layers.append(Bottleneck(cin, mid, 2 if (i == 0 and stage > 0) else 1))
                cin = mid * Bottleneck.expansion
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, cfg.classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(image)), 1))


class ResNet34Trunk(nn.Module):
    """conv1..layer3 of ResNet-34 with layer3's stride removed (output stride 8), as SSD-ResNet34 uses."""

    def __init__(self, width: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [stem(width)]
        cin = width
        for stage, (count, stride) in enumerate(zip((3, 4, 6), (1, 2, 1))):
            cout = width * 2 ** stage
            for i in range(count):
                layers.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.body = nn.Sequential(*layers)
        self.out_channels = cin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _make_sample(gen: torch.Generator, cfg: ResNetConfig) -> Sample:
    return datasets.image(gen, cfg.image)


def _collate(samples: Sequence[Sample]) -> tuple[torch.Tensor, ...]:
    return stack_samples(samples, ("image",))


def _postprocess(logits: torch.Tensor, cfg: ResNetConfig) -> list[np.ndarray]:
    """Top-1 class per image (int32), what the accuracy script compares with the label."""
    return to_numpy_rows(torch.argmax(logits, dim=1, keepdim=True).int(), "int32")


RESNET50 = Family(
    name="resnet50", configs=CONFIGS, construct=ResNet50, make_sample=_make_sample,
    collate=_collate, postprocess=_postprocess, fit=fit_batchnorm, output_dtype="int32", output_row=1,
)
