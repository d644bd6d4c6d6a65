"""SSD detectors: ResNet-34 and MobileNet-v1 trunks, multi-scale heads, box decoding and NMS."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .. import datasets
from .common import ConvBN, Family, Inputs, Sample, fit_batchnorm, reduced_postprocess, stack_samples
from .mobilenet import MobileNetV1Trunk
from .resnet import ResNet34Trunk

# Anchor scales relative to the image (SSD300's 21, 45, 99, 153, 207, 261, 315 pixels).
SCALES = (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05)
VARIANCES = (0.1, 0.2)
TARGET_LOGIT_STD = 2.0
DETECTING_ANCHORS = 0.03  # share of anchors with some class above the score threshold


@dataclass(frozen=True)
class SSDConfig:
    backbone: str  # "resnet34" | "mobilenet"
    image: int
    width: float  # resnet34: stem channels (64 real); mobilenet: width multiplier (1.0 real)
    classes: int  # including background (index 0)
    anchors: tuple[int, ...]  # anchors per location, one entry per feature map
    extra_channels: tuple[int, ...]  # extra layers' outputs at full width
    extra_layout: tuple[tuple[int, int], ...]  # (stride, padding) of each extra layer's 3x3 conv
    first_stride: int = 1  # resnet34: stride of the conv turning the trunk output into map 0
    score_threshold: float = 0.05
    nms_iou: float = 0.5
    pre_nms: int = 200
    max_detections: int = 100


R34_EXTRAS = (512, 512, 256, 256, 256)
MOBILE_EXTRAS = (512, 256, 256, 128)

SSD_RESNET34_CONFIGS = {
    "tiny": SSDConfig("resnet34", 64, 8, 81, (4, 6, 6, 6, 4, 4), R34_EXTRAS,
                      ((2, 1),) * 3 + ((1, 1),) * 2, pre_nms=100, max_detections=25),
    "small": SSDConfig("resnet34", 300, 32, 81, (4, 6, 6, 6, 4, 4), R34_EXTRAS,
                       ((2, 1),) * 3 + ((1, 0),) * 2, first_stride=1),
    "full": SSDConfig("resnet34", 1200, 64, 81, (4, 6, 6, 6, 4, 4), R34_EXTRAS,
                      ((2, 1),) * 3 + ((2, 0), (1, 0)), first_stride=3, max_detections=200),
}
SSD_MOBILENET_CONFIGS = {
    "tiny": SSDConfig("mobilenet", 64, 0.125, 91, (3, 6, 6, 6, 6, 6), MOBILE_EXTRAS,
                      ((2, 1),) * 4, pre_nms=100, max_detections=25),
    "small": SSDConfig("mobilenet", 150, 0.5, 91, (3, 6, 6, 6, 6, 6), MOBILE_EXTRAS, ((2, 1),) * 4),
    "full": SSDConfig("mobilenet", 300, 1.0, 91, (3, 6, 6, 6, 6, 6), MOBILE_EXTRAS, ((2, 1),) * 4),
}


def _extra(cin: int, cout: int, stride: int, padding: int) -> nn.Sequential:
    return nn.Sequential(ConvBN(cin, cout // 2, 1), ConvBN(cout // 2, cout, 3, stride, padding=padding))


def _ratios(count: int) -> tuple[float, ...]:
    """Aspect ratios per anchor count; the second '1' is the in-between scale sqrt(s_k s_k+1)."""
    return {3: (1.0, 2.0, 0.5), 4: (1.0, -1.0, 2.0, 0.5), 6: (1.0, -1.0, 2.0, 0.5, 3.0, 1 / 3)}[count]


def make_anchors(sizes: Sequence[tuple[int, int]], anchors: Sequence[int]) -> torch.Tensor:
    """(cx, cy, w, h) per anchor in map-major, row-major, anchor-minor order, normalised to [0, 1]."""
    out: list[list[float]] = []
    for k, ((fh, fw), count) in enumerate(zip(sizes, anchors)):
        scale, next_scale = SCALES[k], SCALES[k + 1]
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + 0.5) / fw, (y + 0.5) / fh
                for ratio in _ratios(count):
                    if ratio < 0:
                        w = h = math.sqrt(scale * next_scale)
                    else:
                        w, h = scale * math.sqrt(ratio), scale / math.sqrt(ratio)
                    out.append([cx, cy, min(w, 1.0), min(h, 1.0)])
    return torch.tensor(out)


class SSD(nn.Module):
    def __init__(self, cfg: SSDConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.backbone == "resnet34":
            trunk = ResNet34Trunk(int(cfg.width))
            scale = cfg.width / 64
            first = max(8, int(256 * scale))
            self.trunk: nn.Module = trunk
            self.adapter: nn.Module = ConvBN(trunk.out_channels, first, 3, cfg.first_stride)
            channels = [first]
        else:
            trunk_m = MobileNetV1Trunk(cfg.width)
            scale = cfg.width
            self.trunk, self.adapter = trunk_m, nn.Identity()
            channels = list(trunk_m.out_channels)
        extras = []
        for cout, (stride, pad) in zip(cfg.extra_channels, cfg.extra_layout):
            cout = max(8, int(cout * scale))
            extras.append(_extra(channels[-1], cout, stride, pad))
            channels.append(cout)
        self.extras = nn.ModuleList(extras)
        self.loc = nn.ModuleList(nn.Conv2d(c, a * 4, 3, padding=1) for c, a in zip(channels, cfg.anchors))
        self.conf = nn.ModuleList(nn.Conv2d(c, a * cfg.classes, 3, padding=1)
                                  for c, a in zip(channels, cfg.anchors))
        self.register_buffer("logit_scale", torch.tensor(1.0))
        self._anchors: dict[tuple, torch.Tensor] = {}

    def feature_maps(self, image: torch.Tensor) -> list[torch.Tensor]:
        if self.cfg.backbone == "resnet34":
            maps = [self.adapter(self.trunk(image))]
        else:
            maps = list(self.trunk(image))
        for extra in self.extras:
            maps.append(extra(maps[-1]))
        return maps

    def raw(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """Box regressions [B, A, 4] and class logits [B, A, C] over all anchors."""
        maps = self.feature_maps(image)
        batch = image.shape[0]
        locs = [head(m).permute(0, 2, 3, 1).reshape(batch, -1, 4) for head, m in zip(self.loc, maps)]
        confs = [head(m).permute(0, 2, 3, 1).reshape(batch, -1, self.cfg.classes)
                 for head, m in zip(self.conf, maps)]
        return torch.cat(locs, 1), torch.cat(confs, 1), [tuple(m.shape[-2:]) for m in maps]

    def anchors(self, sizes: list[tuple[int, int]], device: torch.device) -> torch.Tensor:
        key = (tuple(sizes), str(device))
        if key not in self._anchors:
            self._anchors[key] = make_anchors(sizes, self.cfg.anchors).to(device)
        return self._anchors[key]

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Decoded boxes [B, A, 4] as (x1, y1, x2, y2) and class probabilities [B, A, C]."""
        loc, conf, sizes = self.raw(image)
        loc, conf = loc.float(), conf.float()
        anchors = self.anchors(sizes, image.device)
        centre = anchors[:, :2] + loc[..., :2] * VARIANCES[0] * anchors[:, 2:]
        extent = anchors[:, 2:] * torch.exp(torch.clamp(loc[..., 2:] * VARIANCES[1], max=4.0))
        boxes = torch.cat([centre - extent / 2, centre + extent / 2], dim=-1).clamp(0.0, 1.0)
        return boxes, torch.softmax(conf * self.logit_scale, dim=-1)


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of (x1, y1, x2, y2) boxes: [N, 4] x [M, 4] -> [N, M]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-12)


def greedy_keep(over: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Greedy NMS over score-sorted candidates, batched: `over` [B, K, K] (j suppresses i when
    over[b, j, i], only j < i counts), `valid` [B, K]; returns kept [B, K]. K steps of a few
    batch-wide kernels, no host sync: the same on the CPU, eager on the GPU and inside a CUDA graph."""
    count = over.shape[-1]
    later = torch.ones(count, count, dtype=torch.bool, device=over.device).triu(1)
    over = over & later
    suppressed = ~valid
    for i in range(count):
        suppressed |= over[:, i, :] & ~suppressed[:, i:i + 1]
    return ~suppressed


def nms(boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, iou: float, keep_max: int) -> torch.Tensor:
    """Greedy per-class NMS over score-sorted candidates; returns kept indices (best first)."""
    order = torch.argsort(scores, descending=True)
    boxes, labels = boxes[order], labels[order]
    over = (box_iou(boxes, boxes) > iou) & (labels[:, None] == labels[None, :])
    kept = greedy_keep(over[None], torch.ones(1, len(order), dtype=torch.bool, device=order.device))[0]
    return order[kept.nonzero()[:keep_max, 0]]


def batched_box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU per batch element: [B, N, 4] x [B, M, 4] -> [B, N, M]."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    top_left = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    bottom_right = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter).clamp(min=1e-12)


def detections(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, pre_nms: int, iou: float,
               max_detections: int, label_offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, on the device and batched: the `pre_nms` best (anchor, class) scores above
    `threshold`, greedy per-class NMS, the `max_detections` best kept. Returns rows
    [B, max_detections, 6] float32 of (x1, y1, x2, y2, score, class + label_offset), best first,
    and the kept count per image [B] (rows past it are zero)."""
    batch, anchors, classes = scores.shape
    k = min(pre_nms, anchors * classes)
    top, flat = torch.topk(scores.reshape(batch, -1).float(), k, dim=1)  # sorted, best first
    anchor, label = flat // classes, flat % classes
    cand = torch.gather(boxes.float(), 1, anchor[..., None].expand(batch, k, 4))
    over = (batched_box_iou(cand, cand) > iou) & (label[:, :, None] == label[:, None, :])
    kept = greedy_keep(over, top > threshold)
    kept &= torch.cumsum(kept.int(), dim=1) <= max_detections
    order = torch.argsort((~kept).to(torch.uint8), dim=1, stable=True)[:, :max_detections]
    rows = torch.cat([cand, top[..., None], (label + label_offset).float()[..., None]], dim=2)
    rows = torch.gather(rows, 1, order[..., None].expand(batch, order.shape[1], 6))
    counts = kept.sum(dim=1).int()
    rows = rows * (torch.arange(rows.shape[1], device=rows.device)[None, :] < counts[:, None])[..., None]
    if rows.shape[1] < max_detections:
        rows = torch.cat([rows, rows.new_zeros(batch, max_detections - rows.shape[1], 6)], dim=1)
    return rows.contiguous(), counts


def _reduce(outputs: tuple[torch.Tensor, torch.Tensor], cfg: SSDConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: rows (x1, y1, x2, y2, score, label) of the kept detections, float32 (label 0,
    the background, is never a detection)."""
    boxes, probs = outputs
    return detections(boxes, probs[..., 1:], cfg.score_threshold, cfg.pre_nms, cfg.nms_iou,
                      cfg.max_detections, label_offset=1)


def _fit(model: nn.Module, batches: Sequence[Inputs]) -> None:
    """BN statistics, a logit scale and a background bias, so that (as in a trained detector)
    class logits are peaked and only a few anchors per image pass the score threshold."""
    fit_batchnorm(model, batches)
    assert isinstance(model, SSD)
    with torch.no_grad():
        logits = torch.cat([model.raw(*inputs)[1].reshape(-1, model.cfg.classes) for inputs in batches])
        model.logit_scale.fill_(TARGET_LOGIT_STD / float(logits.std().clamp(min=1e-6)))
        logits = logits * model.logit_scale
        low, high = -50.0, 50.0
        for _ in range(40):  # bisect the background bias for the wanted share of detecting anchors
            bias = (low + high) / 2
            shifted = logits.clone()
            shifted[:, 0] += bias
            share = float((torch.softmax(shifted, dim=1)[:, 1:].amax(dim=1) > model.cfg.score_threshold)
                          .float().mean())
            low, high = (bias, high) if share > DETECTING_ANCHORS else (low, bias)
        for head, anchors in zip(model.conf, model.cfg.anchors):
            head.bias.view(anchors, model.cfg.classes)[:, 0] += bias / float(model.logit_scale)


def _make_sample(gen: torch.Generator, cfg: SSDConfig) -> Sample:
    return datasets.image(gen, cfg.image)


def _collate(samples: Sequence[Sample]) -> Inputs:
    return stack_samples(samples, ("image",))


def _family(name: str, configs: dict[str, SSDConfig]) -> Family:
    return Family(name=name, configs=configs, construct=SSD, make_sample=_make_sample, collate=_collate,
                  postprocess=reduced_postprocess(_reduce), fit=_fit, output_dtype="float32", output_row=6,
                  stack_keys=("image",), reduce=_reduce)


SSD_RESNET34 = _family("ssd-resnet34", SSD_RESNET34_CONFIGS)
SSD_MOBILENET = _family("ssd-mobilenet", SSD_MOBILENET_CONFIGS)
