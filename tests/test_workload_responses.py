"""workload/responses.py: LoadGen responses pointing into one batch array (real mlperf_loadgen objects)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mlperf_loadgen")

from pytest_mig.workload.responses import BatchOutput, Responder  # noqa: E402


def test_fixed_rows_point_at_each_row_and_reuse_one_object_per_row():
    rows = np.arange(8, dtype=np.int32).reshape(4, 2)
    responder = Responder()
    first = responder.responses([101, 102, 103], BatchOutput(rows))
    base = rows.ctypes.data
    assert [(r.id, r.data, r.size) for r in first] == [(101, base, 8), (102, base + 8, 8), (103, base + 16, 8)]
    again = responder.responses([201, 202, 203, 204], BatchOutput(rows))
    assert [r.id for r in again] == [201, 202, 203, 204]
    assert again[0] is first[0]  # the same object, new id


def test_counted_rows_answer_only_their_valid_items():
    rows = np.zeros((2, 3, 6), dtype=np.float32)
    out = BatchOutput(rows, np.array([2, 0], dtype=np.int32))
    got = Responder().responses([7, 8], out)
    assert [(r.data, r.size) for r in got] == [(rows.ctypes.data, 2 * 24), (rows.ctypes.data + 72, 0)]
    assert [a.size for a in out.arrays()] == [12, 0]


def test_arrays_of_a_list_output_and_refusals():
    arrays = [np.array([1, 2], dtype=np.int32), np.zeros(0, dtype=np.int32)]
    got = Responder().responses([1, 2], arrays)
    assert [(r.data, r.size) for r in got] == [(arrays[0].ctypes.data, 8), (0, 0)]
    with pytest.raises(ValueError, match="3 samples for a batch output of 2 rows"):
        Responder().responses([1, 2, 3], BatchOutput(np.zeros((2, 1), dtype=np.int32)))
    with pytest.raises(ValueError, match="C-contiguous"):
        Responder().responses([1], BatchOutput(np.zeros((2, 4), dtype=np.int32)[:, ::2]))
