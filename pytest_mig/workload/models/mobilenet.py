"""MobileNet-v1 trunk (depthwise separable convolutions) as SSD-MobileNet uses it."""
from __future__ import annotations

import torch
from torch import nn

from .common import ConvBN

# (output channels at width 1.0, stride) of the 13 depthwise-separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def separable(cin: int, cout: int, stride: int) -> nn.Sequential:
    """3x3 depthwise then 1x1 pointwise, each with BN and ReLU6."""
    return nn.Sequential(ConvBN(cin, cin, 3, stride, groups=cin, act=nn.ReLU6),
                         ConvBN(cin, cout, 1, act=nn.ReLU6))


class MobileNetV1Trunk(nn.Module):
    """Returns the two maps SSD taps: after block 11 (stride 16) and block 13 (stride 32)."""

    def __init__(self, multiplier: float) -> None:
        super().__init__()

        def ch(c: int) -> int:
            return max(8, int(c * multiplier))

        layers: list[nn.Module] = [ConvBN(3, ch(32), 3, 2, act=nn.ReLU6)]
        cin = ch(32)
        for cout, stride in BLOCKS:
            layers.append(separable(cin, ch(cout), stride))
            cin = ch(cout)
        self.early = nn.Sequential(*layers[:12])  # stem + blocks 1..11
        self.late = nn.Sequential(*layers[12:])  # blocks 12..13
        self.out_channels = (ch(512), ch(1024))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mid = self.early(x)
        return mid, self.late(mid)
