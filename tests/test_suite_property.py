"""Property: any mutation of a valid suite or catalogue loads or raises SuiteError, nothing else."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_mig.errors import SuiteError
from pytest_mig.plan.suite import Suite, load_catalog, load_suite

REPO = Path(__file__).resolve().parent.parent
SUITE_TEXT = (REPO / "suites" / "datacenter" / "suite.yaml").read_text()
CATALOG_TEXT = (REPO / "fixtures" / "benchmarks.yaml").read_text()
# Names that pass some checks, so mutations reach the deeper validation paths.
PLAUSIBLE = st.sampled_from([
    "Offline", "Server", "MultiStream", "resnet50", "dlrm", "edge", "none", "session",
    "1g.10gb", "1g.10gb+me", "7g.80gb", "smoke", "submission", "performance", 0.99, 0.999,
    600000, -1, 7, 0, "auto", [], {}, "", "!!float x"])
SCALARS = (st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats()
           | st.text(max_size=12) | PLAUSIBLE)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8) | PLAUSIBLE.map(str), inner,
                                        max_size=3), max_leaves=8)
SETTINGS = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    gpus = tmp_path_factory.mktemp("gpus")
    (gpus / "A100-SXM4-80GB.yaml").write_text("profiles: [1g.10gb, 1g.10gb+me, 7g.80gb]\n")
    (gpus / "A30-24GB.yaml").write_text("profiles: [1g.6gb, 4g.24gb]\n")
    return load_catalog(gpus_dir=gpus)


def slots(doc) -> list[tuple[object, object]]:
    """Every (container, key-or-index) pair in a plain YAML tree."""
    out = []
    if isinstance(doc, dict):
        items = list(doc.items())
    else:
        items = list(enumerate(doc)) if isinstance(doc, list) else []
    for key, value in items:
        out.append((doc, key))
        out += slots(value)
    return out


def mutate(doc, data) -> None:
    container, key = data.draw(st.sampled_from(slots(doc)))
    op = data.draw(st.sampled_from(["delete", "replace", "rename"]))
    if op == "delete":
        del container[key]
    elif op == "replace":
        container[key] = data.draw(VALUES)
    elif isinstance(container, dict):
        new = data.draw(st.text(max_size=10) | PLAUSIBLE.map(str) | st.integers())
        container[new] = container.pop(key)
    else:
        container.insert(key, data.draw(VALUES))


def check_suite(path: Path, catalog) -> None:
    try:
        suite = load_suite(path, catalog)
    except SuiteError as exc:
        assert str(exc)
        return
    assert isinstance(suite, Suite)
    for model in suite.gpus:
        for profile in suite.run_profiles:
            for case in suite.expand(model, profile):
                assert case.id.startswith(case.benchmark + "-")
    assert suite.expand("no-such-gpu") == []


def mutate_text(text: str, data) -> str:
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(text)))
        if data.draw(st.booleans()):
            text = text[:at] + data.draw(st.text(max_size=6) | st.sampled_from(
                [":", "- ", "[", "]", "{", "}", "\n  ", "&a ", "*a", "!!int ", "'", '"', "\t"])) \
                + text[at:]
        else:
            text = text[:at] + text[at + data.draw(st.integers(1, 20)):]
    return text


@SETTINGS
@given(data=st.data())
def test_structural_mutations(tmp_path, catalog, data):
    doc = yaml.safe_load(SUITE_TEXT)
    for _ in range(data.draw(st.integers(1, 4))):
        if not slots(doc):
            break
        mutate(doc, data)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    check_suite(path, catalog)


@SETTINGS
@given(data=st.data())
def test_text_mutations(tmp_path, catalog, data):
    path = tmp_path / "suite.yaml"
    path.write_text(mutate_text(SUITE_TEXT, data))
    check_suite(path, catalog)


@SETTINGS
@given(data=st.data())
def test_catalog_mutations(tmp_path, data):
    doc = yaml.safe_load(CATALOG_TEXT)
    mutate(doc, data)
    path = tmp_path / "benchmarks.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
                    if data.draw(st.booleans()) else mutate_text(CATALOG_TEXT, data))
    try:
        catalog = load_catalog(path, gpus_dir=tmp_path / "no-gpus")
    except SuiteError:
        return
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(SUITE_TEXT)
    check_suite(suite_path, catalog)
