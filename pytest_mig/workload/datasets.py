"""Seeded synthetic data: (benchmark, size, seed, index) always yields the same sample.

Primitives shape realistic-looking inputs (smooth images and volumes, tokenised
question/context pairs, speech features, click logs); `SampleLoader` is the
QSL's in-memory store that LoadGen loads and unloads (on the GPU path, with a `resident.ResidentSet`
beside it that holds the same samples stacked in device memory).
"""
from __future__ import annotations

import hashlib
import threading
from typing import Any, Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

Sample = dict[str, torch.Tensor]

# Index stream used for build-time calibration data, disjoint from every QSL index.
CALIBRATION_STREAM = "calibration"

CLS, SEP, PAD = 101, 102, 0
FIRST_WORD_ID = 1000


def sample_seed(benchmark: str, size: str, seed: int, index: int | str) -> int:
    """Stable 63-bit seed for one sample (the same in every process, unlike hash())."""
    digest = hashlib.sha256(f"{benchmark}|{size}|{seed}|{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(benchmark: str, size: str, seed: int, index: int | str) -> torch.Generator:
    gen = torch.Generator()
    gen.manual_seed(sample_seed(benchmark, size, seed, index))
    return gen


def smooth_field(gen: torch.Generator, channels: int, spatial: Sequence[int], coarse: int = 4) -> torch.Tensor:
    """Low-frequency structure plus fine noise, roughly zero-mean unit-variance (2D or 3D)."""
    low = [max(1, s // coarse) for s in spatial]
    base = torch.randn(1, channels, *low, generator=gen)
    mode = "bilinear" if len(spatial) == 2 else "trilinear"
    field = F.interpolate(base, size=tuple(spatial), mode=mode, align_corners=False)[0]
    field = field + 0.35 * torch.randn(channels, *spatial, generator=gen)
    return (field - field.mean()) / (field.std() + 1e-6)


def image(gen: torch.Generator, size: int, channels: int = 3) -> Sample:
    return {"image": smooth_field(gen, channels, (size, size))}


def labelled_image(gen: torch.Generator, prototype: torch.Tensor, label: int, noise: float) -> Sample:
    """An image of a class: the class prototype plus per-sample variation, renormalised."""
    pixels = prototype + noise * torch.randn(prototype.shape, generator=gen)
    pixels = (pixels - pixels.mean()) / (pixels.std() + 1e-6)
    return {"image": pixels, "label": torch.tensor(label)}


def volume(gen: torch.Generator, size: int, channels: int = 4) -> Sample:
    return {"volume": smooth_field(gen, channels, (size, size, size))}


def question_context(gen: torch.Generator, seq_len: int, vocab: int) -> Sample:
    """[CLS] question [SEP] context [SEP] padding, with segment ids and an attention mask."""
    q_len = int(torch.randint(max(2, seq_len // 8), max(3, seq_len // 4) + 1, (1,), generator=gen))
    pad = int(torch.randint(0, max(1, seq_len // 8) + 1, (1,), generator=gen))
    c_len = seq_len - q_len - pad - 3
    words = torch.randint(FIRST_WORD_ID, vocab, (q_len + c_len,), generator=gen)
    ids = torch.full((seq_len,), PAD, dtype=torch.long)
    ids[0] = CLS
    ids[1:1 + q_len] = words[:q_len]
    ids[1 + q_len] = SEP
    ids[2 + q_len:2 + q_len + c_len] = words[q_len:]
    ids[2 + q_len + c_len] = SEP
    segments = torch.zeros(seq_len, dtype=torch.long)
    segments[2 + q_len:3 + q_len + c_len] = 1
    mask = (torch.arange(seq_len) < seq_len - pad).long()
    return {"input_ids": ids, "token_type_ids": segments, "attention_mask": mask}


def speech(gen: torch.Generator, min_frames: int, max_frames: int, features: int) -> Sample:
    """Stacked filterbank-like features of a random length, smooth over time."""
    frames = int(torch.randint(min_frames, max_frames + 1, (1,), generator=gen))
    feats = smooth_field(gen, 1, (frames, features), coarse=3)[0]
    return {"features": feats, "length": torch.tensor(frames)}


def click_log(gen: torch.Generator, pairs: int, dense: int, table_sizes: Sequence[int]) -> Sample:
    """One user's query: `pairs` rows of log-transformed counts and skewed categorical ids."""
    # Exponential counts (mean 20) by inverse CDF, since torch.distributions takes no generator.
    counts = -20.0 * torch.log1p(-torch.rand(pairs, dense, generator=gen) * 0.999)
    sizes = torch.tensor(list(table_sizes), dtype=torch.float64)
    u = torch.rand(pairs, len(table_sizes), generator=gen, dtype=torch.float64)
    sparse = torch.minimum((sizes * u ** 3).long(), sizes.long() - 1)  # heavy head, long tail
    return {"dense": torch.log1p(counts), "sparse": sparse}


class SampleLoader:
    """The QSL's memory: LoadGen loads/unloads sample sets; calling it batches model inputs."""

    def __init__(self, benchmark: str, size: str, seed: int,
                 make: Callable[[torch.Generator], Sample],
                 collate: Callable[[Sequence[Sample]], tuple[torch.Tensor, ...]],
                 device: torch.device, stack_keys: Sequence[str] = ()) -> None:
        self.benchmark, self.size, self.seed = benchmark, size, seed
        # Inputs whose batch is a plain stack of same-shaped samples (empty: collate does more).
        self.stack_keys = tuple(stack_keys)
        self._make, self._collate, self.device = make, collate, device
        self._cache: dict[int, Sample] = {}
        self._lock = threading.Lock()
        # Where loaded samples live: the GPU path sets a transform to device memory (start_from_device).
        self.resident: Callable[[Sample], Sample] | None = None
        # Where loaded samples also live, stacked on the device (resident.ResidentSet; GPU path).
        self.resident_set: Any = None
        # Keep samples across unloads: back-to-back tests load the same set each time.
        self.retain = False

    def sample(self, index: int) -> Sample:
        """One sample, from memory when loaded, else generated (deterministically)."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        return self._make(generator(self.benchmark, self.size, self.seed, index))

    def calibration_samples(self, count: int) -> list[Sample]:
        return [self._make(generator(self.benchmark, self.size, self.seed, f"{CALIBRATION_STREAM}-{i}"))
                for i in range(count)]

    def load(self, indices: Iterable[int]) -> None:
        with self._lock:
            for index in indices:
                if index not in self._cache:
                    sample = self.sample(index)
                    self._cache[index] = self.resident(sample) if self.resident is not None else sample
                if self.resident_set is not None:
                    self.resident_set.add(index, self._cache[index])

    def unload(self, indices: Iterable[int]) -> None:
        if self.retain:
            return
        with self._lock:
            for index in indices:
                self._cache.pop(index, None)
                if self.resident_set is not None:
                    self.resident_set.remove(index)

    @property
    def loaded(self) -> int:
        return len(self._cache)

    def bytes_per_sample(self) -> int:
        return sum(t.element_size() * t.numel() for t in self.sample(0).values())

    def batch(self, samples: Sequence[Sample]) -> tuple[torch.Tensor, ...]:
        return tuple(t.to(self.device, non_blocking=True) for t in self._collate(samples))

    def __call__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        return self.batch([self.sample(i) for i in indices])
