"""mig-parted layout files: NVIDIA's real ones load as they are; errors name file and key."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import LayoutError
from pytest_mig.gpu.layouts import default_layout_dir, load_layouts, resolve_layout
from pytest_mig.gpu.planner import plan
from pytest_mig.gpu.profiles import load_models

REAL = Path(__file__).parent / "data" / "mig-parted"
A100_80, A100_40, A30, H100, H200 = 0x20B210DE, 0x20B010DE, 0x20B710DE, 0x233010DE, 0x233510DE


def test_all_real_mig_parted_files_load():
    counts = {f.name: len(load_layouts(f)) for f in sorted(REAL.glob("*.yaml"))}
    assert counts == {"config-default.yaml": 81, "config.yaml": 9,
                      "dgx-station-80gb-config.yaml": 9}


def test_devices_and_device_filter_select_gpus():
    custom = load_layouts(REAL / "config.yaml")["custom-config"]
    assert custom.for_gpu(4, A100_40) == {"1g.5gb": 7}
    assert custom.for_gpu(7, A100_40) == {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}
    assert custom.for_gpu(0, A100_40) is None  # mig-enabled: false
    assert custom.entry_for(0, A100_40).mig_enabled is False
    assert custom.for_gpu(8, A100_40) is None and custom.entry_for(8, A100_40) is None
    default = load_layouts(REAL / "config-default.yaml")
    assert default["all-1g.10gb"].for_gpu(0, H100) == {"1g.10gb": 7}
    assert default["all-1g.10gb"].for_gpu(3, A100_40) == {"1g.10gb": 4}
    assert default["all-1g.10gb"].for_gpu(0, A30) is None
    assert default["all-balanced"].for_gpu(0, H200) == {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1}
    assert default["all-balanced"].for_gpu(0, A30) == {"1g.6gb": 2, "2g.12gb": 1}
    assert default["all-enabled"].for_gpu(5, A30) == {}
    k8s = load_layouts(REAL / "dgx-station-80gb-config.yaml")["balanced-k8s-dgx-station-80"]
    assert k8s.for_gpu(4, A100_80) == {"1g.10gb": 7}
    assert k8s.for_gpu(2, A100_80) == {"2g.20gb": 3, "1g.10gb": 1}
    assert k8s.for_gpu(3, 0x1FB010DE) is None and k8s.entry_for(3, 0x1FB010DE) is not None
    assert k8s.for_gpu(3, A100_80) is None and k8s.entry_for(3, A100_80) is None


def test_every_real_layout_fits_our_tables_where_its_profiles_exist():
    """NVIDIA's own layouts are all placeable: a check of our tables' placements too."""
    checked = 0
    for f in sorted(REAL.glob("*.yaml")):
        for name, layout in load_layouts(f).items():
            for model in load_models().values():
                wanted = layout.for_gpu(0, model.pci_device_id)
                if wanted and all(model.has_profile(p) for p in wanted):
                    assert plan(model, wanted), (f.name, name, model.key)
                    checked += 1
    assert checked == 52  # (layout, model) pairs whose profiles all exist


def test_our_hetero_layout_fills_every_model_with_its_smallest_slice():
    hetero = resolve_layout("hetero-1g")
    assert hetero.source == default_layout_dir() / "pytest-mig.yaml"
    got = {m.key: hetero.for_gpu(0, m.pci_device_id) for m in load_models().values()}
    assert got == {"A100-SXM4-40GB": {"1g.5gb": 7}, "A100-SXM4-80GB": {"1g.10gb": 7},
                   "A30-24GB": {"1g.6gb": 4}, "H100-SXM5-80GB": {"1g.10gb": 7},
                   "H200-141GB": {"1g.18gb": 7}}
    for model in load_models().values():
        assert len(plan(model, got[model.key])) == model.compute_slices


def test_packaged_comparison_layouts_fit_every_model_they_name():
    """fixtures/layouts/compare.yaml (suites/layouts): the same shapes on each 7-slice model."""
    shapes = {"7x1g": [1] * 7, "3x2g+1g": [2, 2, 2, 1], "1x7g": [7]}
    for name, slices in shapes.items():
        layout = resolve_layout(name)
        for model in load_models().values():
            wanted = layout.for_gpu(0, model.pci_device_id)
            if model.key == "A30-24GB":  # 4 compute slices: none of these shapes
                assert wanted is None
                continue
            placed = plan(model, wanted)
            assert sorted((model.profile(p.profile).slice_count for p in placed),
                          reverse=True) == slices, (name, model.key)


def test_resolve_file_and_name_specs():
    layout = resolve_layout(f"{REAL}/dgx-station-80gb-config.yaml:all-3g.40gb-dgx-station-80")
    assert layout.for_gpu(1, A100_80) == {"3g.40gb": 2}
    assert resolve_layout("pytest-mig.yaml:mig-empty").for_gpu(0, 1) == {}  # relative to search dir
    with pytest.raises(LayoutError) as err:
        resolve_layout("hetero-1gb")
    assert str(err.value) == (
        f"unknown MIG layout 'hetero-1gb' (did you mean 'hetero-1g'?) in "
        f"{default_layout_dir() / 'compare.yaml'}, {default_layout_dir() / 'pytest-mig.yaml'}; "
        "known layouts: 1x7g, 3x2g+1g, 7x1g, hetero-1g, mig-empty")
    with pytest.raises(LayoutError, match=r"unknown MIG layout 'all-1g\.10gb-dgx' \(did you mean "
                                          r"'all-1g\.10gb-dgx-station-80'\?\) in .*dgx-station"):
        resolve_layout(f"{REAL}/dgx-station-80gb-config.yaml:all-1g.10gb-dgx")
    with pytest.raises(LayoutError, match="file nowhere.yaml does not exist"):
        resolve_layout("nowhere.yaml:x")


@pytest.mark.parametrize("body, key, message", [
    ("version: v2\nmig-configs: {a: [{devices: all, mig-enabled: false}]}", "version", "expected v1"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true, mig-device: {}}]}",
     "mig-configs.a[0].mig-device", "did you mean 'mig-devices'"),
    ("version: v1\nmig-configs: {a: [{devices: some, mig-enabled: true}]}",
     "mig-configs.a[0].devices", "expected 'all' or a list of GPU indexes"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: yes please}]}",
     "mig-configs.a[0].mig-enabled", "expected true or false"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true, mig-devices: {1g.10gb: -1}}]}",
     "mig-configs.a[0].mig-devices.1g.10gb", "count must be a whole number"),
    ("version: v1\nmig-configs: {a: [{devices: all, mig-enabled: true, mig-devices: {big: 1}}]}",
     "mig-configs.a[0].mig-devices.big", "not a MIG profile name"),
    ("version: v1\nmig-configs: {a: [{devices: all, device-filter: 0xZZ, mig-enabled: true}]}",
     "mig-configs.a[0].device-filter", "not a PCI device id"),
    ("version: v1\nmig-configs: {a: []}", "mig-configs.a", "non-empty list"),
])
def test_malformed_files_name_file_and_key(tmp_path, body, key, message):
    f = tmp_path / "bad.yaml"
    f.write_text(body)
    with pytest.raises(LayoutError) as err:
        load_layouts(f)
    assert str(err.value).startswith(f"{f}: key '{key}': ")
    assert message in str(err.value)


def test_device_filter_is_case_insensitive(tmp_path):
    f = tmp_path / "l.yaml"
    f.write_text("version: v1\nmig-configs:\n  x:\n    - devices: [1]\n      device-filter: "
                 "['0x20b210de']\n      mig-enabled: true\n      mig-devices: {'1g.10gb': 2}\n")
    layout = load_layouts(f)["x"]
    assert layout.for_gpu(1, A100_80) == {"1g.10gb": 2}
    assert layout.for_gpu(0, A100_80) is None and layout.for_gpu(1, H100) is None
