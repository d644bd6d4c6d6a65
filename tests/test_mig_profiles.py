"""GPU profile tables: every model loads, lookups work, broken tables name file and key."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pytest_mig.errors import GpuError
from pytest_mig.gpu.profiles import (ProfileTableError, default_gpu_dir, get_model,
                                     load_model_file, load_models, model_for_nvml_name,
                                     model_for_pci_device_id, profile_fraction)


def test_all_five_models_load_with_their_identity():
    models = load_models()
    got = {k: (m.nvml_name, m.pci_device_id, m.compute_slices, m.memory_slices, m.total_sms,
               m.memory_total) for k, m in models.items()}
    assert got == {
        "A100-SXM4-40GB": ("NVIDIA A100-SXM4-40GB", 0x20B010DE, 7, 8, 108, 42949672960),
        "A100-SXM4-80GB": ("NVIDIA A100-SXM4-80GB", 0x20B210DE, 7, 8, 108, 85899345920),
        "A30-24GB": ("NVIDIA A30", 0x20B710DE, 4, 4, 56, 25769803776),
        "H100-SXM5-80GB": ("NVIDIA H100 80GB HBM3", 0x233010DE, 7, 8, 132, 85520809984),
        "H200-141GB": ("NVIDIA H200", 0x233510DE, 7, 8, 132, 150754820096),
    }
    for m in models.values():
        assert m.source and m.path.parent == default_gpu_dir()
        assert all(p.memory_bytes < m.memory_total for p in m.profiles)


def test_profile_names_per_model():
    names = {k: [p.name for p in m.profiles] for k, m in load_models().items()}
    assert names["A100-SXM4-40GB"] == ["1g.5gb", "1g.5gb+me", "1g.10gb", "2g.10gb", "3g.20gb",
                                       "4g.20gb", "7g.40gb"]
    assert names["A30-24GB"] == ["1g.6gb", "1g.6gb+me", "2g.12gb", "2g.12gb+me", "4g.24gb"]
    assert names["H200-141GB"] == ["1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb",
                                   "4g.71gb", "7g.141gb"]
    a30 = get_model("A30-24GB")
    assert [(p.profile_const, p.id) for p in a30.profiles] == [(0, 14), (7, 21), (1, 5), (8, 6), (3, 0)]


def test_lookups():
    assert model_for_pci_device_id(0x233010DE).key == "H100-SXM5-80GB"
    assert model_for_nvml_name("NVIDIA A30").key == "A30-24GB"
    assert model_for_pci_device_id(0x12345678) is None and model_for_nvml_name("x") is None
    h100 = get_model("H100-SXM5-80GB")
    assert h100.profile_by_id(15).name == "1g.20gb"
    assert h100.profile_by_const(9).name == "1g.20gb"
    assert h100.profile("4g.40gb").placements == [(0, 4)]
    with pytest.raises(GpuError, match=r"unknown GPU model 'H100-SXM5' \(did you mean "
                                       r"'H100-SXM5-80GB'\?\); known models"):
        get_model("H100-SXM5")
    with pytest.raises(GpuError, match=r"H100-SXM5-80GB has no MIG profile '1g\.5gb'"):
        h100.profile("1g.5gb")


def test_profile_fraction_sizes_an_mps_share():
    h100 = get_model("H100-SXM5-80GB")
    assert profile_fraction(h100, "1g.10gb") == (16 / 132, 9984 * 1024 * 1024)
    assert profile_fraction(h100, h100.profile("7g.80gb")) == (1.0, 81152 * 1024 * 1024)
    assert profile_fraction(get_model("A30-24GB"), "2g.12gb") == (0.5, 11968 * 1024 * 1024)


def _broken(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((default_gpu_dir() / "A30-24GB.yaml").read_text())
    edit(data)
    path = tmp_path / "A30-24GB.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("edit, key, message", [
    (lambda d: d.pop("total_sms"), "", "missing total_sms"),
    (lambda d: d.update(model="A30"), "model", "must equal the file name"),
    (lambda d: d.update(pci_device_id="0xNOPE"), "pci_device_id", "expected an integer"),
    (lambda d: d["profiles"][0]["placements"].update(starts=[3, 4]),
     "profiles[0] (1g.6gb).placements", "start 4 + size 1 exceeds the 4 memory slices"),
    (lambda d: d["profiles"][2].update(slice_count=5), "profiles (2g.12gb).slice_count",
     "5 exceeds the 4 compute slices"),
    (lambda d: d["profiles"][1].update(id=14), "profiles", "duplicate id 14"),
    (lambda d: d["profiles"][0].update(sms=3), "profiles[0].sms", "unknown key"),
    (lambda d: d["profiles"][0].pop("memory_mb"), "profiles[0]", "missing memory_mb"),
    (lambda d: d.update(sim={"power_max_w": "lots"}), "sim.power_max_w", "expected a number"),
])
def test_broken_tables_name_file_and_key(tmp_path, edit, key, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(ProfileTableError) as err:
        load_model_file(path)
    assert str(err.value).startswith(f"{path}: key '{key}': ")
    assert message in str(err.value)
    assert isinstance(err.value, GpuError)


def test_unreadable_table(tmp_path):
    (tmp_path / "X.yaml").write_text("model: [unclosed")
    with pytest.raises(ProfileTableError, match=r"X\.yaml: cannot read GPU profile table"):
        load_models(tmp_path)
