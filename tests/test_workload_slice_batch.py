"""workload/slice_batch.py: a batch per slice from the packaged table (pure rule, env parsing)."""
from __future__ import annotations

import pytest

from pytest_mig.workload import slice_batch
from pytest_mig.workload.models import BENCHMARKS
from pytest_mig.workload.slice_batch import Slice

GIB = 1 << 30
TABLE = slice_batch.load_table()


def h200(sms: float, memory_gib: float, source: str = "mps") -> Slice:
    return Slice(sms, 132, int(memory_gib * GIB), source)


def test_every_benchmark_has_a_row():
    assert set(TABLE.rows) == set(BENCHMARKS)


@pytest.mark.parametrize("sms, memory, expected", [(16, 18, 128), (32, 35, 256), (60, 71, 512), (132, 141, 1024)])
def test_resnet50_batch_grows_with_the_slice(sms, memory, expected):
    choice = slice_batch.choose("resnet50", h200(sms, memory), TABLE)
    assert choice is not None and choice.batch == expected
    assert f"{sms}/132 SMs" in choice.rule


def test_floor_and_memory_cap():
    tiny = slice_batch.choose("ssd-resnet34", h200(4, 40), TABLE)
    assert tiny is not None and tiny.batch == TABLE.rows["ssd-resnet34"].min_batch  # the floor
    starved = slice_batch.choose("3d-unet", h200(132, 4), TABLE)  # 2 GiB of working memory: one sample
    assert starved is not None and starved.batch == 1 and "memory 4.0 GiB holds 1" in starved.rule


def test_unknown_benchmark_has_no_choice():
    assert slice_batch.choose("not-a-model", h200(16, 18), TABLE) is None


@pytest.mark.parametrize("value, expected", [("0=18000M", 18000 << 20), ("18G", 18 * GIB), ("0=1024", 1024 << 20),
                                             ("junk", None)])
def test_mps_memory_limit_parsing(value, expected):
    assert slice_batch.parse_memory_limit(value) == expected


def test_nearest_power_of_two():
    assert [slice_batch.nearest_power_of_two(v) for v in (0.3, 1, 3, 124, 190, 1024)] == [1, 1, 4, 128, 256, 1024]


def test_malformed_table_names_the_file(tmp_path):
    bad = tmp_path / "gpu_batch.yaml"
    bad.write_text("reference_sms: 132\nmemory_fraction: 0.5\nbenchmarks:\n  resnet50: {full_gpu_batch: 8}\n")
    with pytest.raises(ValueError, match="gpu_batch.yaml: malformed batch table"):
        slice_batch.load_table(bad)
