"""RetinaNet (MLPerf v5.x object detection): ResNeXt-50 32x4d trunk, FPN P3-P7, shared heads.

As MLPerf's model: 264 OpenImages classes, 9 anchors per location (3 scales x 3 ratios),
sigmoid class scores, up to 1000 candidates per level before per-class NMS. Output rows are
(x1, y1, x2, y2, score, label) like the SSD detectors, scored with the same COCO-style mAP.
Widths shrink at the CPU sizes; the structure stays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import datasets
from .common import Family, Inputs, Sample, fit_batchnorm, reduced_postprocess, stack_samples
from .resnet import Bottleneck, stem
from .ssd import detections

RATIOS = (0.5, 1.0, 2.0)
SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
ANCHOR_SIZE = 4  # anchor side = 4 x the level's stride (32 px at P3 of an 800 px image)
BOX_CLAMP = math.log(1000.0 / 16)  # largest log-scale a box regression may apply
TARGET_LOGIT_STD = 2.0
DETECTING_ANCHORS = 0.01  # share of anchors with some class above the score threshold


@dataclass(frozen=True)
class RetinaNetConfig:
    image: int
    width: int  # stem channels (64 real)
    groups: int  # ResNeXt cardinality (32 real)
    group_width: int  # channels per group in the first stage (4 real)
    fpn: int  # FPN channels (256 real)
    head_depth: int  # convs per head before the output conv (4 real)
    classes: int = 264
    blocks: tuple[int, int, int, int] = (3, 4, 6, 3)
    score_threshold: float = 0.05
    nms_iou: float = 0.5
    pre_nms: int = 1000  # per level
    max_detections: int = 300


CONFIGS = {
    "tiny": RetinaNetConfig(image=64, width=8, groups=4, group_width=2, fpn=16, head_depth=1,
                            pre_nms=100, max_detections=25),
    "small": RetinaNetConfig(image=320, width=32, groups=16, group_width=4, fpn=128, head_depth=2),
    "full": RetinaNetConfig(image=800, width=64, groups=32, group_width=4, fpn=256, head_depth=4),
}


class ResNeXtTrunk(nn.Module):
    """Stem and four stages; returns C3, C4, C5 (strides 8, 16, 32)."""

    def __init__(self, cfg: RetinaNetConfig) -> None:
        super().__init__()
        self.stem = stem(cfg.width)
        stages: list[nn.Module] = []
        cin = cfg.width
        self.channels: list[int] = []
        for stage, count in enumerate(cfg.blocks):
            mid = cfg.groups * cfg.group_width * 2 ** stage
            cout = cfg.width * 4 * 2 ** stage
            blocks = []
            for i in range(count):
                blocks.append(Bottleneck(cin, mid, 2 if (i == 0 and stage > 0) else 1, cout, cfg.groups))
                cin = cout
            stages.append(nn.Sequential(*blocks))
            self.channels.append(cout)
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs[1:]


class FPN(nn.Module):
    """Lateral 1x1 + top-down sum + 3x3 smoothing on C3-C5; P6 from C5, P7 from P6 (strided)."""

    def __init__(self, channels: Sequence[int], out: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, out, 1) for c in channels)
        self.smooth = nn.ModuleList(nn.Conv2d(out, out, 3, padding=1) for _ in channels)
        self.p6 = nn.Conv2d(channels[-1], out, 3, stride=2, padding=1)
        self.p7 = nn.Conv2d(out, out, 3, stride=2, padding=1)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        maps = [conv(x) for conv, x in zip(self.smooth, laterals)]
        p6 = self.p6(feats[-1])
        return [*maps, p6, self.p7(F.relu(p6))]


def _head(channels: int, depth: int, out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(channels, out, 3, padding=1))
    return nn.Sequential(*layers)


def make_anchors(sizes: Sequence[tuple[int, int]], image: int) -> torch.Tensor:
    """(cx, cy, w, h) per anchor, level-major, row-major, anchor-minor; normalised to [0, 1]."""
    out: list[list[float]] = []
    for level, (fh, fw) in enumerate(sizes):
        side = ANCHOR_SIZE * 2 ** (level + 3) / image
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + 0.5) / fw, (y + 0.5) / fh
                for ratio in RATIOS:
                    for scale in SCALES:
                        out.append([cx, cy, side * scale / math.sqrt(ratio), side * scale * math.sqrt(ratio)])
    return torch.tensor(out)


class RetinaNet(nn.Module):
    def __init__(self, cfg: RetinaNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.trunk = ResNeXtTrunk(cfg)
        self.fpn = FPN(self.trunk.channels[1:], cfg.fpn)
        anchors = len(RATIOS) * len(SCALES)
        self.cls_head = _head(cfg.fpn, cfg.head_depth, anchors * cfg.classes)
        self.box_head = _head(cfg.fpn, cfg.head_depth, anchors * 4)
        self.register_buffer("logit_scale", torch.tensor(1.0))
        self._anchors: dict[tuple, torch.Tensor] = {}

    def raw(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Box regressions [B, A, 4] and class logits [B, A, C] over all anchors of all levels."""
        maps = self.fpn(self.trunk(image))
        batch = image.shape[0]
        logits = [self.cls_head(m).permute(0, 2, 3, 1).reshape(batch, -1, self.cfg.classes) for m in maps]
        boxes = [self.box_head(m).permute(0, 2, 3, 1).reshape(batch, -1, 4) for m in maps]
        return torch.cat(boxes, 1), torch.cat(logits, 1), [tuple(m.shape[-2:]) for m in maps]

    def anchors(self, sizes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        key = (tuple(sizes), str(device))
        if key not in self._anchors:
            self._anchors[key] = make_anchors(sizes, self.cfg.image).to(device)
        return self._anchors[key]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded boxes [B, A, 4] as (x1, y1, x2, y2) and sigmoid class scores [B, A, C]."""
        loc, logits, sizes = self.raw(image)
        loc, logits = loc.float(), logits.float()
        anchors = self.anchors(sizes, image.device)
        centre = anchors[:, :2] + loc[..., :2] * anchors[:, 2:]
        extent = anchors[:, 2:] * torch.exp(torch.clamp(loc[..., 2:], max=BOX_CLAMP))
        boxes = torch.cat([centre - extent / 2, centre + extent / 2], dim=-1).clamp(0.0, 1.0)
        return boxes, torch.sigmoid(logits * self.logit_scale)


def _reduce(outputs: tuple[torch.Tensor, torch.Tensor], cfg: RetinaNetConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: rows (x1, y1, x2, y2, score, label) of the kept detections, float32."""
    boxes, scores = outputs
    return detections(boxes, scores, cfg.score_threshold, cfg.pre_nms, cfg.nms_iou, cfg.max_detections,
                      label_offset=0)


def _fit(model: nn.Module, batches: Sequence[Inputs]) -> None:
    """BN statistics, a logit scale and a class bias, so that (as in a trained detector) class
    scores are peaked and only a few anchors per image pass the score threshold."""
    fit_batchnorm(model, batches)
    assert isinstance(model, RetinaNet)
    with torch.no_grad():
        logits = torch.cat([model.raw(*inputs)[1].reshape(-1, model.cfg.classes) for inputs in batches])
        model.logit_scale.fill_(TARGET_LOGIT_STD / float(logits.std().clamp(min=1e-6)))
        top = (logits * model.logit_scale).amax(dim=1)
        # Bias so that DETECTING_ANCHORS of the anchors score above the threshold.
        wanted = float(torch.quantile(top.float(), 1.0 - DETECTING_ANCHORS))
        threshold_logit = math.log(model.cfg.score_threshold / (1 - model.cfg.score_threshold))
        bias = (threshold_logit - wanted) / float(model.logit_scale)
        model.cls_head[-1].bias.add_(bias)


def _make_sample(gen: torch.Generator, cfg: RetinaNetConfig) -> Sample:
    return datasets.image(gen, cfg.image)


def _collate(samples: Sequence[Sample]) -> Inputs:
    return stack_samples(samples, ("image",))


RETINANET = Family(name="retinanet", configs=CONFIGS, construct=RetinaNet, make_sample=_make_sample,
                   collate=_collate, postprocess=reduced_postprocess(_reduce), fit=_fit, output_dtype="float32",
                   output_row=6, stack_keys=("image",), reduce=_reduce)
