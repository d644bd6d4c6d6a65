"""Registry of the built-in harness's PyTorch models: one family module per MLPerf benchmark."""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from pytest_mig.mlperf_names import normalize_benchmark

from ..datasets import SampleLoader
from .bert import BERT
from .common import Family
from .dlrm import DLRM_FAMILY
from .llama import LLAMA31_8B
from .precision import PRECISIONS, apply_precision, autocast
from .resnet import RESNET50
from .retinanet import RETINANET
from .rnnt import RNNT_FAMILY
from .ssd import SSD_MOBILENET, SSD_RESNET34
from .unet3d import UNET3D

FAMILIES: dict[str, Family] = {f.name: f for f in (
    RESNET50, SSD_RESNET34, SSD_MOBILENET, BERT, RNNT_FAMILY, DLRM_FAMILY, UNET3D, RETINANET, LLAMA31_8B)}
BENCHMARKS = tuple(FAMILIES)
SIZES = ("tiny", "small", "full")
ACCURACY_SUFFIXES = ("-99.9", "-99")  # MLPerf's accuracy-target variants share one model
CALIBRATION_SAMPLES = {"tiny": 32, "small": 16, "full": 8}

__all__ = ["BENCHMARKS", "SIZES", "PRECISIONS", "Built", "Predictor", "build", "canonical_benchmark",
           "decode_output", "apply_precision", "resolve_device"]


class Built(NamedTuple):
    model: nn.Module
    make_inputs: SampleLoader  # callable(sample_indices) -> model inputs; also the QSL's memory
    postprocess: Callable[[Any], list[np.ndarray]]  # model output -> one response array per sample


def canonical_benchmark(name: str) -> str:
    """'bert-99.9' -> 'bert' (mlperf_names.normalize_benchmark); ValueError for names no
    family knows."""
    base = normalize_benchmark(name)
    if base not in FAMILIES:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(BENCHMARKS)} "
                         f"(optionally with {' or '.join(ACCURACY_SUFFIXES)})")
    return base


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when a GPU is visible, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def build(benchmark: str, size: str = "tiny", seed: int = 0, device: str | torch.device = "cpu") -> Built:
    """Seeded model with fitted statistics on `device`, its QSL sample loader and its postprocessing."""
    name = canonical_benchmark(benchmark)
    family = FAMILIES[name]
    if size not in family.configs:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    cfg = family.configs[size]
    dev = resolve_device(device) if isinstance(device, str) else device
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = family.construct(cfg)
    model = model.to(dev).eval()
    loader = SampleLoader(name, size, seed, functools.partial(family.make_sample, cfg=cfg), family.collate, dev)
    count = CALIBRATION_SAMPLES[size]
    samples = loader.calibration_samples(count)
    step = min(count, 16)
    family.fit(model, [loader.batch(samples[i:i + step]) for i in range(0, count, step)])
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return Built(model, loader, functools.partial(family.postprocess, cfg=cfg))


def decode_output(benchmark: str, raw: bytes) -> np.ndarray:
    """Inverse of a response's bytes: a flat array, or rows for multi-value outputs (SSD, BERT)."""
    family = FAMILIES[canonical_benchmark(benchmark)]
    values = np.frombuffer(raw, dtype=family.output_dtype)
    return values.reshape(-1, family.output_row) if family.output_row > 1 else values


class Predictor:
    """Runs one precision of a model on QSL indices: inputs -> model -> one output array per sample."""

    def __init__(self, model: nn.Module, make_inputs: SampleLoader,
                 postprocess: Callable[[Any], list[np.ndarray]], precision: str, device: torch.device) -> None:
        self.model, self.make_inputs, self.postprocess = model, make_inputs, postprocess
        self.precision, self.device = precision, device

    def __call__(self, indices: Sequence[int]) -> list[np.ndarray]:
        inputs = self.make_inputs(indices)
        with torch.inference_mode():
            with autocast(self.precision, self.device):
                outputs = self.model(*inputs)
            return self.postprocess(outputs)
