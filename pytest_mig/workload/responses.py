"""One batch's outputs as LoadGen responses: pointers into one host array, answered in one call.

Rules: a predictor hands the SUT either a `BatchOutput` (the batch's rows in one contiguous
host array, copied from the device once per batch; sample i's response is row i, or its first
`counts[i]` items where outputs vary in length, e.g. detections) or a list of one array per
sample (the CPU path's models). `Responder.complete` answers LoadGen once per batch; LoadGen
copies the bytes and the responses, so the array and the reused response objects may be
reused as soon as it returns. Bottom of the harness: numpy and LoadGen only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import mlperf_loadgen as lg
import numpy as np


@dataclass(frozen=True)
class BatchOutput:
    """A batch's outputs on the host: `rows[i]` is sample i's (C-contiguous, one dtype).

    `counts[i]`, when given, is how many items (slices along dim 1) of row i are valid: the
    response holds only those (a detector's kept boxes, best first).
    """

    rows: np.ndarray
    counts: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    def arrays(self) -> list[np.ndarray]:
        """One flat array per sample (copies): what the scorer and the CPU path compare."""
        flat = self.rows.reshape(len(self), -1)
        if self.counts is None:
            return [row.copy() for row in flat]
        per_item = int(np.prod(self.rows.shape[2:], dtype=np.int64))
        return [row[:int(n) * per_item].copy() for row, n in zip(flat, self.counts)]


class Responder:
    """Answers LoadGen one batch at a time (`complete`), from the worker thread only.

    Responses into a `BatchOutput` reuse one QuerySampleResponse per row of its buffer (data
    pointer and size set once; each batch sets the ids, and sizes where rows vary): the
    per-sample cost is one attribute write, not an object. The pinned slot buffers of the GPU
    path are stable, so a handful of pools serve a whole run.
    """

    MAX_POOLS = 16

    def __init__(self) -> None:
        self._pools: dict[tuple[int, int, bool], list] = {}

    def _pool(self, rows: np.ndarray, count: int, sized: bool) -> list:
        base, stride = rows.ctypes.data, (rows.strides[0] if rows.ndim else rows.nbytes)
        key = (base, stride, sized)  # `sized`: each batch sets the sizes (rows of varying length)
        pool = self._pools.get(key)
        if pool is None:
            if len(self._pools) >= self.MAX_POOLS:
                self._pools.clear()
            pool = self._pools[key] = []
        response = lg.QuerySampleResponse
        for i in range(len(pool), count):
            pool.append(response(0, base + i * stride, stride))
        return pool

    def responses(self, ids: Sequence[int], outputs: BatchOutput | Sequence[np.ndarray]) -> list:
        """QuerySampleResponse per id, pointing into `outputs` (which must outlive their use)."""
        if not isinstance(outputs, BatchOutput):
            return [lg.QuerySampleResponse(i, out.ctypes.data if out.nbytes else 0, out.nbytes)
                    for i, out in zip(ids, outputs)]
        rows = outputs.rows
        if not rows.flags.c_contiguous:
            raise ValueError("BatchOutput.rows must be C-contiguous (its bytes are answered in place)")
        if len(ids) > len(rows):
            raise ValueError(f"{len(ids)} samples for a batch output of {len(rows)} rows")
        pool = self._pool(rows, len(ids), outputs.counts is not None)
        used = pool if len(pool) == len(ids) else pool[:len(ids)]
        if outputs.counts is None:
            for response, i in zip(used, ids):
                response.id = i
        else:
            item = rows.strides[1] if rows.ndim > 1 else rows.itemsize
            for response, i, n in zip(used, ids, outputs.counts.tolist()):
                response.id = i
                response.size = n * item
        return used

    def complete(self, ids: Sequence[int], outputs: BatchOutput | Sequence[np.ndarray] | None) -> None:
        """Answer LoadGen for `ids` in one call (no data when `outputs` is None: draining)."""
        if outputs is None:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(i, 0, 0) for i in ids])
        else:
            lg.QuerySamplesComplete(self.responses(ids, outputs))  # copied: pools may be reused
