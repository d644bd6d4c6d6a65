"""Every validation error names the file, the line, the key path, what is allowed and a guess."""
from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mig.errors import SuiteError
from pytest_mig.plan.suite import load_catalog, load_suite

BASE = """\
suite: datacenter
description: test suite
benchmarks:
  resnet50:
    scenarios: [Offline, SingleStream, Server]
    accuracy: 0.99
  bert:
    scenarios:
      - Offline
      - Server
    accuracy: 0.999
  dlrm: {scenarios: [Offline, Server]}
gpus:
  A100-SXM4-80GB: {profiles: [1g.10gb], slots: 7}
  A30-24GB:
    profiles: [1g.6gb]
    slots: 4
modes: [performance, accuracy]
background:
  set: datacenter
  lifetime: per-test
harness:
  size: tiny
run_profiles:
  smoke: {min_duration_ms: 1000, min_query_count: 64}
  submission:
    min_duration_ms: 600000
    min_query_count: 1024
default_run_profile: smoke
"""


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    gpus = tmp_path_factory.mktemp("gpus")
    (gpus / "A100-SXM4-80GB.yaml").write_text(
        "profiles: [1g.10gb, 1g.10gb+me, 1g.20gb, 2g.20gb, 3g.40gb, 4g.40gb, 7g.80gb]\n")
    (gpus / "A30-24GB.yaml").write_text(
        "profiles:\n  1g.6gb: {slices: 1}\n  1g.6gb+me: {slices: 1}\n  2g.12gb: {slices: 2}\n"
        "  4g.24gb: {slices: 4}\n")
    return load_catalog(gpus_dir=gpus)


def load_text(text: str, tmp_path: Path, catalog):
    path = tmp_path / "suite.yaml"
    path.write_text(text)
    return load_suite(path, catalog)


def test_base_is_valid(tmp_path, catalog):
    suite = load_text(BASE, tmp_path, catalog)
    assert suite.benchmarks["bert"].accuracy_fraction == 0.999
    assert suite.benchmarks["bert"].scenarios == ("Offline", "Server")
    assert len(suite.expand("A30-24GB")) == (3 + 2 + 2) * 2


# (old, new, key path, 1-based line of the offending node, fragments the message must hold)
CASES = [
    ("modes:", "mdoes:", "mdoes", 18, ["unknown key 'mdoes'", "did you mean 'modes'",
                                       "allowed keys: suite, class, description"]),
    ("slots: 4", "slots: four", "gpus.A30-24GB.slots", 17, ["expected an integer", "'four'"]),
    ("slots: 4", "slots: 9", "gpus.A30-24GB.slots", 17, ["must be <= 7"]),
    ("  dlrm:", "  dlrn:", "benchmarks.dlrn", 12,
     ["benchmark 'dlrn' is not in the benchmark catalogue", "did you mean 'dlrm'",
      "datacenter benchmarks: resnet50, ssd-resnet34, ssd-mobilenet, bert, rnnt, dlrm, 3d-unet"]),
    ("SingleStream, Server]", "SingleStream, Servr]", "benchmarks.resnet50.scenarios[2]", 5,
     ["unknown scenario 'Servr'", "did you mean 'Server'",
      "allowed: Offline, SingleStream, Server"]),
    ("      - Server", "      - MultiStream", "benchmarks.bert.scenarios[1]", 10,
     ["bert does not support scenario 'MultiStream' in datacenter suites",
      "allowed: Offline, SingleStream, Server"]),
    ("      - Server", "      - Offline", "benchmarks.bert.scenarios[1]", 10,
     ["scenario 'Offline' is listed twice"]),
    ("accuracy: 0.99\n", "accuracy: 0.999\n", "benchmarks.resnet50.accuracy", 6,
     ["accuracy fraction 0.999 is not allowed for resnet50", "allowed: 0.99"]),
    ("[performance, accuracy]", "[performance, acuracy]", "modes[1]", 18,
     ["unknown mode 'acuracy'", "did you mean 'accuracy'", "allowed: performance, accuracy"]),
    ("set: datacenter", "set: datacentre", "background.set", 20,
     ["unknown background alias 'datacentre'", "did you mean 'datacenter'",
      "allowed: datacenter, edge, all, none"]),
    ("set: datacenter", "set: [bert, rnt]", "background.set[1]", 20,
     ["unknown benchmark 'rnt'", "did you mean 'rnnt'"]),
    ("lifetime: per-test", "lifetime: per-tset", "background.lifetime", 21,
     ["did you mean 'per-test'", "allowed: per-test, session"]),
    ("  A30-24GB:", "  A30-24G:", "gpus.A30-24G", 15,
     ["unknown GPU model 'A30-24G'", "did you mean 'A30-24GB'",
      "allowed: A100-SXM4-80GB, A30-24GB"]),
    ("[1g.6gb]", "[1g6gb]", "gpus.A30-24GB.profiles[0]", 16,
     ["'1g6gb' is not a MIG profile name", "did you mean '1g.6gb'"]),
    ("[1g.6gb]", "[1g.6gb, 1g.10gb]", "gpus.A30-24GB.profiles[1]", 16,
     ["A30-24GB has no MIG profile '1g.10gb'", "allowed: 1g.6gb, 1g.6gb+me, 2g.12gb, 4g.24gb"]),
    ("[1g.6gb]", "[]", "gpus.A30-24GB.profiles", 16, ["the list is empty"]),
    ("min_duration_ms: 1000", "min_duration_ms: -5", "run_profiles.smoke.min_duration_ms", 25,
     ["must be >= 0, got -5"]),
    ("min_duration_ms: 600000", "min_duration_ms: 60000",
     "run_profiles.submission.min_duration_ms", 27,
     ["submission profile needs min_duration_ms >= 600000", "got 60000"]),
    ("min_query_count: 1024", "min_querry_count: 1024", "run_profiles.submission.min_querry_count",
     28, ["did you mean 'min_query_count'", "allowed keys: min_duration_ms, min_query_count"]),
    ("min_query_count: 1024", "min_query_count: 1024\n    start_time_buffer_s: -1",
     "run_profiles.submission.start_time_buffer_s", 29, ["must be >= 0"]),
    ("default_run_profile: smoke", "default_run_profile: smok", "default_run_profile", 29,
     ["unknown run profile 'smok'", "did you mean 'smoke'", "allowed: smoke, submission"]),
    ("  size: tiny", "  size: [tiny]", "harness.size", 23,
     ["harness option values must be strings or numbers", "got a list"]),
    ("    slots: 4\n", "", "gpus.A30-24GB", 16, ["missing required key 'slots'"]),
    ("  bert:\n", "  resnet50:\n", "benchmarks.resnet50", 7,
     ["duplicate key 'resnet50' (first on line 4)"]),
    ("suite: datacenter", "suite: nightly", "suite", 1,
     ["suite 'nightly' is not a suite class name (datacenter, edge) and has no 'class:' key",
      "add 'class:'"]),
    ("suite: datacenter", "suite: edge", "benchmarks.resnet50.scenarios[2]", 5,
     ["resnet50 does not support scenario 'Server' in edge suites",
      "allowed: Offline, SingleStream, MultiStream"]),
    ("description: test suite", "description: !!float abc", "description", 2,
     ["cannot read value 'abc'"]),
]


@pytest.mark.parametrize("old, new, key, line, fragments", CASES, ids=[c[1] for c in CASES])
def test_error(tmp_path, catalog, old, new, key, line, fragments):
    assert old in BASE
    with pytest.raises(SuiteError) as err:
        load_text(BASE.replace(old, new, 1), tmp_path, catalog)
    text = str(err.value)
    assert (err.value.key, err.value.line) == (key, line)
    assert text.startswith(f"{tmp_path / 'suite.yaml'}:{line}: key '{key}': ")
    for fragment in fragments:
        assert fragment in text


def test_class_key_makes_dlrm_invalid_for_edge(tmp_path, catalog):
    text = BASE.replace("suite: datacenter", "suite: tiny-edge\nclass: edge").replace(
        "    scenarios: [Offline, SingleStream, Server]", "    scenarios: [Offline]").replace(
        "      - Server", "      - SingleStream")
    with pytest.raises(SuiteError) as err:
        load_text(text, tmp_path, catalog)
    assert (err.value.key, err.value.line) == ("benchmarks.dlrm", 13)
    assert "benchmark 'dlrm' is not part of edge suites" in str(err.value)


@pytest.mark.parametrize("text, line, fragment", [
    (BASE.replace("  bert:\n", "  bert: [\n"), 9, "YAML syntax error"),
    ("suite: [a\nclass: edge\n", 2, "the construct started on line 1"),
    (BASE.replace("modes: [performance, accuracy]", "modes: [performance, accuracy"), 19,
     "YAML syntax error"),
    ("", 1, "the file is empty"),
    ("- just\n- a list\n", 1, "expected a mapping, got a list"),
    ("suite: a\n---\nsuite: b\n", 2, "YAML syntax error"),
    ("a: &x [*x]\n", 1, "recursive alias"),
])
def test_yaml_problems(tmp_path, catalog, text, line, fragment):
    with pytest.raises(SuiteError) as err:
        load_text(text, tmp_path, catalog)
    assert err.value.line == line
    assert f"suite.yaml:{line}: " in str(err.value)
    assert fragment in str(err.value)


def test_missing_file(tmp_path, catalog):
    with pytest.raises(SuiteError, match="cannot read file"):
        load_suite(tmp_path / "nope.yaml", catalog)


def test_missing_top_level_keys(tmp_path, catalog):
    with pytest.raises(SuiteError) as err:
        load_text("suite: datacenter\n", tmp_path, catalog)
    assert "missing required key 'benchmarks'" in str(err.value)
    assert "add 'benchmarks:' under the top level" in str(err.value)
