"""run.json's CPU fields (background pacing, auto precision): present only where the built-in harness runs on a CPU."""
from types import SimpleNamespace

import pytest

from pytest_mig.workload_contract import BACKGROUND_CPU_DUTY
from pytest_mig.report.header import background_cpu_duty


def session(backend: str, harness: str = "loadgen", **options: str):
    topo = SimpleNamespace(backend=backend)
    return SimpleNamespace(topology=lambda: topo,
                           settings=SimpleNamespace(harness=harness, harness_options=options))


@pytest.mark.parametrize("backend, options, expected", [
    ("simulated", {}, BACKGROUND_CPU_DUTY),
    ("simulated", {"background_cpu_duty": "0.5"}, "0.5"),
    ("nvml", {"device": "cpu"}, BACKGROUND_CPU_DUTY),
    ("nvml", {"device": "cuda"}, None),   # the H200 runs recorded 0.1 here before
    ("nvml", {}, None),
])
def test_pacing_is_recorded_only_on_a_cpu(backend, options, expected):
    assert background_cpu_duty(session(backend, **options)) == expected


def test_other_harnesses_record_no_pacing():
    assert background_cpu_duty(session("simulated", harness="nvidia")) is None


def test_cpu_precision_is_recorded_and_said_only_on_a_cpu():
    from pytest_mig import cpu_native
    from pytest_mig.report.header import cpu_precision

    record = cpu_precision(session("simulated"))
    native = cpu_native.probe()
    assert record == native.as_record()
    assert record["precision"] in ("fp16", "bf16", "fp32") and record["reason"] == native.reason
    assert cpu_precision(session("nvml", device="cuda")) is None
    assert cpu_precision(session("simulated", harness="nvidia")) is None
