"""QSL samples resident on the device, stacked per input, batches gathered there by index.

Rules: only models whose batch is a plain stack of same-shaped sample tensors (`Family.stack_keys`)
are held this way; each key's loaded samples live in one device tensor, in the model's dtype and
in the physical order of its memory format (a channels-last image set is stored [N, H, W, C]),
so a batch is one `index_select` per key and comes out already laid out for the model. LoadGen
loads and unloads through `SampleLoader`, which calls `add`/`remove` under its lock; the row of
each QSL index is kept in a host array, and the batch's rows travel to the device through a
pinned buffer (an asynchronous copy: it never waits for the batch computing before it).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

Sample = dict[str, torch.Tensor]
# Physical order of each channels-last format: [N, C, H, W] stored as [N, H, W, C].
PHYSICAL = {torch.channels_last: (0, 2, 3, 1), torch.channels_last_3d: (0, 2, 3, 4, 1)}
START_ROWS = 64


def _inverse(order: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(order.index(i) for i in range(len(order)))


class ResidentSet:
    """The loaded samples' tensors, one stacked device tensor per key."""

    def __init__(self, keys: Sequence[str], device: torch.device, dtype: torch.dtype,
                 memory_format: torch.memory_format | None = None, slots: int = 2) -> None:
        self.keys, self.device, self.dtype, self.memory_format = tuple(keys), device, dtype, memory_format
        self._store: dict[str, torch.Tensor] = {}
        self._orders: dict[str, tuple[int, ...] | None] = {}
        self._row_of = np.full(0, -1, dtype=np.int64)  # QSL index -> row, -1: not held
        self._free: list[int] = []
        self._rows = 0  # rows in use or freed (the high-water mark)
        pin = device.type == "cuda"
        self._index_slots = [torch.empty(0, dtype=torch.int64, pin_memory=pin) for _ in range(slots)]
        self._slot = 0
        self._pin = pin

    def __len__(self) -> int:
        return int((self._row_of >= 0).sum())

    def _order(self, value: torch.Tensor) -> tuple[int, ...] | None:
        if value.is_floating_point() and self.memory_format in PHYSICAL:
            order = PHYSICAL[self.memory_format]
            if value.dim() + 1 == len(order):
                return order
        return None

    def add(self, index: int, sample: Sample) -> None:
        if index < len(self._row_of) and self._row_of[index] >= 0:
            return
        row = self._free.pop() if self._free else self._grow_row(sample)
        for key in self.keys:
            value = sample[key]
            order = self._orders[key]
            if order is not None:  # drop the batch dim of the order: the sample's own axes
                value = value.permute(*[i - 1 for i in order[1:]])
            self._store[key][row].copy_(value, non_blocking=False)
        if index >= len(self._row_of):
            grown = np.full(max(index + 1, 2 * len(self._row_of)), -1, dtype=np.int64)
            grown[:len(self._row_of)] = self._row_of
            self._row_of = grown
        self._row_of[index] = row

    def _grow_row(self, sample: Sample) -> int:
        row = self._rows
        if not self._store:
            for key in self.keys:
                value = sample[key]
                self._orders[key] = order = self._order(value)
                shape = tuple(value.shape)
                if order is not None:
                    shape = tuple(shape[i - 1] for i in order[1:])
                dtype = self.dtype if value.is_floating_point() else value.dtype
                self._store[key] = torch.empty((START_ROWS, *shape), dtype=dtype, device=self.device)
        capacity = next(iter(self._store.values())).shape[0]
        if row >= capacity:
            for key, old in self._store.items():
                new = torch.empty((2 * capacity, *old.shape[1:]), dtype=old.dtype, device=self.device)
                new[:capacity].copy_(old)
                self._store[key] = new
        self._rows += 1
        return row

    def remove(self, index: int) -> None:
        if index < len(self._row_of) and self._row_of[index] >= 0:
            self._free.append(int(self._row_of[index]))
            self._row_of[index] = -1

    def holds(self, indices: Sequence[int]) -> bool:
        if not self._store or not len(indices):
            return False
        top = max(indices)
        return top < len(self._row_of) and bool((self._row_of[np.asarray(indices)] >= 0).all())

    def rows(self, indices: Sequence[int]) -> np.ndarray:
        return self._row_of[np.asarray(indices, dtype=np.int64)]

    def gather(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """The batch of `indices` (all held), one tensor per key in the model's layout."""
        rows = self.rows(indices)
        if (rows < 0).any():
            raise KeyError(f"samples {np.asarray(indices)[rows < 0][:5].tolist()} are not resident")
        slot = self._index_slots[self._slot]
        if slot.numel() < len(rows):
            slot = self._index_slots[self._slot] = torch.empty(
                max(len(rows), 2 * slot.numel()), dtype=torch.int64, pin_memory=self._pin)
        self._slot = (self._slot + 1) % len(self._index_slots)
        host = slot[:len(rows)]
        host.numpy()[:] = rows
        index = host.to(self.device, non_blocking=True)
        out = []
        for key in self.keys:
            batch = torch.index_select(self._store[key], 0, index)
            order = self._orders[key]
            out.append(batch.permute(*_inverse(order)) if order is not None else batch)
        return tuple(out)
