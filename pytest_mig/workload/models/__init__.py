"""Registry of the built-in harness's PyTorch models: one family module per MLPerf benchmark."""
from __future__ import annotations

import functools
import hashlib
import re
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from pytest_mig.io import atomic_path
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
           "decode_output", "apply_precision", "reduce_for", "resolve_device"]


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


def source_digest() -> str:
    """Hash of the code a built model depends on (the model families and the data generators)."""
    digest = hashlib.sha256()
    for path in sorted([*Path(__file__).parent.glob("*.py"), Path(__file__).parents[1] / "datasets.py"]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def cached_model_path(cache_dir: Path, name: str, size: str, seed: int) -> Path:
    """Where a fitted model is kept: one file per benchmark/size/seed, torch version and model code."""
    version = re.sub(r"[^A-Za-z0-9.]+", "_", torch.__version__)
    return cache_dir / f"torch-{version}" / f"{name}-{size}-seed{seed}-{source_digest()}.pt"


def build(benchmark: str, size: str = "tiny", seed: int = 0, device: str | torch.device = "cpu",
          cache_dir: Path | None = None) -> Built:
    """Seeded model with fitted statistics on `device`, its QSL sample loader and its postprocessing.

    With `cache_dir`, a fitted model is kept there (keyed by benchmark, size, seed, torch
    version and the model code) and later builds load it instead of fitting again: the same
    weights, without the fit's calibration data and passes (seconds for the full-size nets).
    """
    name = canonical_benchmark(benchmark)
    family = FAMILIES[name]
    if size not in family.configs:
        raise ValueError(f"unknown size {size!r}; choose one of {', '.join(SIZES)}")
    cfg = family.configs[size]
    dev = resolve_device(device) if isinstance(device, str) else device
    loader = SampleLoader(name, size, seed, functools.partial(family.make_sample, cfg=cfg), family.collate, dev,
                          family.stack_keys)
    cached = cached_model_path(cache_dir, name, size, seed) if cache_dir is not None else None
    model = _load_cached(cached, dev) if cached is not None else None
    if model is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = family.construct(cfg)
        model = model.to(dev).eval()
        count = CALIBRATION_SAMPLES[size]
        samples = loader.calibration_samples(count)
        step = min(count, 16)
        family.fit(model, [loader.batch(samples[i:i + step]) for i in range(0, count, step)])
        if cached is not None:
            _store(cached, model)
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return Built(model, loader, functools.partial(family.postprocess, cfg=cfg))


def reduce_for(benchmark: str, size: str) -> Callable[[Any], Any] | None:
    """The family's on-device output reduction bound to its config (None: the family has none)."""
    family = FAMILIES[canonical_benchmark(benchmark)]
    return functools.partial(family.reduce, cfg=family.configs[size]) if family.reduce is not None else None


def _load_cached(path: Path, device: torch.device) -> nn.Module | None:
    """The fitted model kept at `path` (our own cache file, pickled by `_store`), or None."""
    if not path.is_file():
        return None
    try:
        model = torch.load(path, map_location=device, weights_only=False)
    except Exception:  # noqa: BLE001  (a torn or stale file: fit again and overwrite it)
        return None
    return model if isinstance(model, nn.Module) else None


def _store(path: Path, model: nn.Module) -> None:
    """Keep the fitted model at `path`; a model that cannot be kept (unpicklable) just is not."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, fsync=False) as tmp:
            torch.save(model, tmp)
    except Exception:  # noqa: BLE001  (a cache that cannot be written costs the next start a fit, nothing more)
        return


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
