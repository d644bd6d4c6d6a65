"""Layout suites (`layouts:` in suite.yaml): one case per benchmark x layout, the main on the
layout's largest instance, the mix in turn on the others; errors name file, line and fix."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_mig.errors import SuiteError
from pytest_mig.gpu.layouts import resolve_layout
from pytest_mig.gpu.profiles import get_model
from pytest_mig.plan.suite import layout_fill, load_suite

REPO = Path(__file__).resolve().parents[1]

SUITE = """
suite: cmp
class: datacenter
layouts: {layouts}
benchmarks:
  resnet50: {{scenarios: [Offline]}}
  bert: {{scenarios: [Offline]}}
gpus:
  A100-SXM4-80GB:
  A30-24GB:
modes: [performance]
background: {{set: [dlrm, bert]}}
run_profiles:
  smoke: {{min_duration_ms: 100, min_query_count: 1}}
"""


def write(tmp_path: Path, layouts: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(textwrap.dedent(SUITE.format(layouts=layouts)))
    return path


def test_fill_repeats_the_mix_in_order():
    assert layout_fill(("dlrm", "bert"), 5) == ("dlrm", "bert", "dlrm", "bert", "dlrm")
    assert layout_fill(("dlrm",), 0) == () and layout_fill((), 3) == ()


def test_cases_per_layout_with_the_mix_on_every_other_instance(tmp_path):
    suite = load_suite(write(tmp_path, "[7x1g, 3x2g+1g, 1x7g]"))
    cases = suite.expand("A100-SXM4-80GB")
    assert [c.id for c in cases] == [
        f"{b}-Offline-{p}-performance-{n}" for b in ("resnet50", "bert")
        for p, n in (("1g.10gb", "7x1g"), ("2g.20gb", "3x2g+1g"), ("7g.80gb", "1x7g"))]
    model = get_model("A100-SXM4-80GB")
    for c in cases:  # every instance of the layout gets one workload, the main included
        wanted = resolve_layout(c.layout).for_gpu(0, model.pci_device_id)
        assert 1 + len(c.background) == sum(wanted.values())
        assert c.background == layout_fill(("dlrm", "bert"), len(c.background))
        assert c.background_lifetime == "per-test" and c.skip_reason is None
    # a model without the shape: its cases are listed, skipped with the layout's reason
    a30 = suite.expand("A30-24GB")
    assert len(a30) == 6 and all("has no MIG devices for GPU 0 (A30-24GB" in c.skip_reason
                                 for c in a30)


def test_layout_given_as_file_beside_the_suite(tmp_path):
    (tmp_path / "mine.yaml").write_text(textwrap.dedent("""
        version: v1
        mig-configs:
          two-3g:
            - devices: all
              mig-enabled: true
              mig-devices: {"3g.40gb": 2}
    """))
    suite = load_suite(write(tmp_path, "[mine.yaml:two-3g]"))
    (case, _) = suite.expand("A100-SXM4-80GB")
    assert case.id == "resnet50-Offline-3g.40gb-performance-two-3g"
    assert case.layout == f"{tmp_path / 'mine.yaml'}:two-3g" and case.background == ("dlrm",)


def test_unknown_layout_is_a_suite_error_at_its_line(tmp_path):
    path = write(tmp_path, "[7x1g, 3x2g1g]")
    with pytest.raises(SuiteError) as err:
        load_suite(path)
    text = str(err.value)
    assert str(path) in text and ":4" in text and "unknown MIG layout '3x2g1g'" in text
    assert "did you mean '3x2g+1g'" in text


def test_repo_layout_suite_loads_for_every_seven_slice_model():
    suite = load_suite(REPO / "suites" / "layouts" / "suite.yaml")
    for model in ("A100-SXM4-80GB", "A100-SXM4-40GB", "H100-SXM5-80GB", "H200-141GB"):
        cases = suite.expand(model)
        assert [c.layout for c in cases] == ["7x1g", "3x2g+1g", "1x7g"]
        assert [len(c.background) for c in cases] == [6, 3, 0]
        assert not any(c.skip_reason for c in cases)
