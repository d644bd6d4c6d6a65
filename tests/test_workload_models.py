"""Built-in harness models, synthetic data, precisions and LoadGen settings derivation (no subprocess)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
lg = pytest.importorskip("mlperf_loadgen")

from pytest_mig.workload import datasets, scoring, sut  # noqa: E402
from pytest_mig.workload.models import (BENCHMARKS, Predictor, apply_precision, build,  # noqa: E402
                                       canonical_benchmark, decode_output)
from pytest_mig.workload.models.common import ConvBN  # noqa: E402
from pytest_mig.workload.models.precision import fake_quantize  # noqa: E402
from pytest_mig.workload.models.ssd import nms  # noqa: E402

CPU = torch.device("cpu")
# bytes of one tiny response per benchmark: shape check of every family's output codec
TINY_OUTPUT = {"resnet50": (np.int32, (1,)), "bert": (np.int32, (1, 2)), "3d-unet": (np.uint8, (16 ** 3,)),
               "dlrm": (np.float32, (32,))}


def test_canonical_benchmark_strips_accuracy_suffixes():
    assert canonical_benchmark("bert-99.9") == "bert"
    assert canonical_benchmark("3d-unet-99") == "3d-unet"
    assert canonical_benchmark("ssd-mobilenet") == "ssd-mobilenet"
    # One normalisation for every reader (pytest_mig/mlperf_names.py): v0.5's 'resnet' too.
    assert canonical_benchmark("resnet") == "resnet50"
    with pytest.raises(ValueError, match="unknown benchmark 'resnet18'"):
        canonical_benchmark("resnet18")


def test_samples_are_deterministic_per_benchmark_size_seed_index():
    first = build("bert", "tiny", seed=3).make_inputs
    again = build("bert", "tiny", seed=3).make_inputs
    other_seed = build("bert", "tiny", seed=4).make_inputs
    a, b = first.sample(11), again.sample(11)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], first.sample(12)["input_ids"])
    assert not torch.equal(a["input_ids"], other_seed.sample(11)["input_ids"])
    ids, segments, mask = a["input_ids"], a["token_type_ids"], a["attention_mask"]
    assert ids.shape == (64,) and int(ids[0]) == datasets.CLS
    assert int((ids == datasets.SEP).sum()) == 2 and int(segments.sum()) > 0 and int(mask.sum()) <= 64


def test_loader_load_unload_keeps_only_the_qsl_set():
    loader = build("dlrm").make_inputs
    loader.load([0, 1, 2])
    assert loader.loaded == 3
    dense, sparse = loader([2, 0])
    assert dense.shape == (64, 13) and sparse.shape == (64, 26)
    loader.unload([0, 1, 2])
    assert loader.loaded == 0


def test_same_seed_gives_same_weights_and_outputs():
    one, two = build("resnet50", seed=7), build("resnet50", seed=7)
    for p, q in zip(one.model.parameters(), two.model.parameters()):
        assert torch.equal(p, q)
    run = Predictor(*one, "fp32", CPU)
    assert [o.tolist() for o in run([0, 1, 2])] == [o.tolist() for o in Predictor(*two, "fp32", CPU)([0, 1, 2])]


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_every_family_runs_and_round_trips_its_output_bytes(benchmark):
    built = build(benchmark, "tiny", seed=0)
    outputs = Predictor(*built, "fp32", CPU)([0, 1, 2])
    assert len(outputs) == 3
    for out in outputs:
        assert out.flags["C_CONTIGUOUS"]
        decoded = decode_output(benchmark, out.tobytes())
        assert np.array_equal(decoded.reshape(-1), out.reshape(-1))
    if benchmark in TINY_OUTPUT:
        dtype, shape = TINY_OUTPUT[benchmark]
        assert outputs[0].dtype == dtype
        assert decode_output(benchmark, outputs[0].tobytes()).shape == shape
    if benchmark.startswith("ssd"):
        rows = decode_output(benchmark, outputs[0].tobytes())
        assert rows.shape[1] == 6 and 0 < len(rows) <= 25
        assert np.all((rows[:, :4] >= 0) & (rows[:, :4] <= 1)) and np.all(rows[:, 5] >= 1)


def test_resnet50_predictions_are_diverse_and_reference_scores_itself_100():
    built = build("resnet50")
    reference = Predictor(*built, "fp32", CPU)
    indices = list(range(64))
    outputs = {i: o for i, o in zip(indices, reference(indices))}
    assert len({int(o[0]) for o in outputs.values()}) > 50  # not a constant classifier
    result = scoring.score("resnet50", outputs, outputs, built.make_inputs.sample)
    assert result.value == 100.0 and result.fields["good"] == 64


def test_integer_precision_quantises_a_copy_and_keeps_the_reference():
    built = build("resnet50")
    before = [p.clone() for p in built.model.parameters()]
    quantised, reference = apply_precision(built.model, "int4", keep_reference=True)
    assert reference is built.model and quantised is not built.model
    assert all(torch.equal(p, q) for p, q in zip(before, built.model.parameters()))
    weight = quantised.fc.weight
    assert all(len(torch.unique(row)) <= 15 for row in weight[:8])  # 4-bit: at most 2*7+1 levels per row
    same, none = apply_precision(built.model, "bf16", keep_reference=False)
    assert same is built.model and none is None
    with pytest.raises(ValueError, match="unknown precision 'fp4'"):
        apply_precision(built.model, "fp4", keep_reference=False)
    with pytest.raises(ValueError, match="precision fp8 is the LLM's"):  # fp8 x fp8 matmuls: llm.py only
        apply_precision(built.model, "fp8", keep_reference=False)


def test_fake_quantize_levels_and_scales():
    x = torch.tensor([[-1.0, 0.6, 1.0], [0.0, 0.02, 0.04]])
    q = fake_quantize(x, 4, per_row=True)
    assert torch.allclose(q[0], torch.tensor([-1.0, 4 / 7, 1.0]))
    assert torch.allclose(q[1], torch.tensor([0.0, 0.02, 0.04]), atol=0.04 / 7 / 2 + 1e-7)
    assert float(fake_quantize(x, 8, per_row=False)[1, 1]) == pytest.approx(3 / 127)  # one scale for all


def test_conv_bn_fold_keeps_outputs():
    torch.manual_seed(0)
    unit = ConvBN(3, 4, 3)
    unit.bn.running_mean.uniform_(-1, 1)
    unit.bn.running_var.uniform_(0.5, 2)
    unit.eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        before = unit(x)
        unit.fold()
        after = unit(x)
    assert isinstance(unit.bn, torch.nn.Identity)
    assert torch.allclose(before, after, atol=1e-5)


def test_nms_keeps_best_per_class_overlap():
    boxes = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0.95], [0, 0, 1, 1], [2, 2, 3, 3]], dtype=torch.float)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([1, 1, 2, 1])
    assert nms(boxes, scores, labels, 0.5, 10).tolist() == [0, 2, 3]
    assert nms(boxes, scores, labels, 0.5, 2).tolist() == [0, 2]


def _config(scenario: str, **kw) -> sut.RunConfig:
    return sut.RunConfig(benchmark="resnet50", scenario=scenario, mode="performance", log_dir=Path("."),
                         min_duration_ms=1000, **kw)


CAL = sut.Calibration(latency_s=0.002, batch_size=8, batch_s=0.010, best_batch_s=0.008)  # 500/s, peak 1000/s


def test_settings_offline_ask_for_1_3x_the_best_case_rate():
    ts, shown = sut.test_settings(_config("Offline"), CAL)
    assert ts.offline_expected_qps == pytest.approx(1300.0)  # 1.3x peak: LoadGen adds its 1.1 slack
    assert shown["min_query_count"] == 1
    ts, _ = sut.test_settings(_config("Offline", target_qps=123.0), CAL)
    assert ts.offline_expected_qps == pytest.approx(123.0)


def test_settings_server_half_capacity_and_early_stopping_queries():
    ts, shown = sut.test_settings(_config("Server"), CAL)
    assert ts.server_target_qps == pytest.approx(250.0)
    assert ts.server_target_latency_ns == 100_000_000
    assert ts.min_query_count == 662
    # The CPU path: a slow model's capacity is its batched rate (one sample 50 ms, 8 in 100 ms),
    slow = sut.Calibration(latency_s=0.05, batch_size=8, batch_s=0.1)
    ts, shown = sut.test_settings(_config("Server"), slow, batched_capacity=True)
    assert ts.server_target_qps == pytest.approx(40.0)
    ts, shown = sut.test_settings(_config("Server"), slow)
    assert ts.server_target_qps == pytest.approx(10.0)
    # ... a fast one (2 ms) keeps the one-sample rule: per-query overheads dominate there.
    ts, shown = sut.test_settings(_config("Server"), CAL, batched_capacity=True)
    assert ts.server_target_qps == pytest.approx(250.0)
    ts, shown = sut.test_settings(_config("Server", target_qps=40.0, target_latency_ms=15.0,
                                          min_query_count=5000), CAL)
    assert (ts.server_target_qps, ts.server_target_latency_ns, ts.min_query_count) == (40.0, 15_000_000, 5000)


def test_settings_stream_scenarios():
    ts, shown = sut.test_settings(_config("SingleStream", min_query_count=10), CAL)
    assert ts.min_query_count == 64
    assert ts.single_stream_expected_latency_ns == 2_000_000
    ts, shown = sut.test_settings(_config("MultiStream"), CAL)
    assert (ts.min_query_count, ts.multi_stream_samples_per_query) == (662, 8)
    assert ts.multi_stream_expected_latency_ns == 10_000_000
    assert sut.batch_size_for(_config("MultiStream")) == 8
    assert sut.batch_size_for(_config("SingleStream")) == 1
    assert sut.batch_size_for(_config("Offline", batch_size=5)) == 5


def test_cli_choices_match_the_registry():
    from pytest_mig.workload import cli
    from pytest_mig.workload.models import PRECISIONS, SIZES

    assert cli.BENCHMARK_NAMES == BENCHMARKS
    # the child also takes "auto", which it resolves to one of the models' precisions (cpu_native.py)
    assert (cli.PRECISIONS, cli.SIZES, cli.SCENARIOS) == (("auto", *PRECISIONS), SIZES, sut.SCENARIOS)


def test_builtin_options_per_benchmark_and_cli_precedence(tmp_path):
    from pytest_mig.harness.loadgen import LoadgenHarness
    from pytest_mig.types import Partition, WorkSpec

    part = Partition("mig", 0, "GPU-x", "MIG-x", "1g.10gb", True)

    def argv(cli, suite, bench):
        work = WorkSpec("main", "main", bench, "Offline", "performance", 1000, 1, tmp_path,
                        options=suite)
        a = list(LoadgenHarness(cli).launch(work, part, {}, tmp_path / "l").argv)
        return a[a.index("--precision") + 1]

    suite = {"precision": "fp16", "precision.rnnt": "fp32"}
    assert argv({}, suite, "rnnt") == "fp32"
    assert argv({}, suite, "resnet50") == "fp16"
    assert argv({"precision": "int4"}, suite, "rnnt") == "int4"  # the command line wins


def test_backgrounds_are_a_paced_cpu_load_and_mains_are_not(tmp_path):
    from pytest_mig.harness.loadgen import LoadgenHarness
    from pytest_mig.workload_contract import BACKGROUND_CPU_DUTY
    from pytest_mig.types import Partition, WorkSpec

    part = Partition("mig", 0, "GPU-x", "MIG-x", "1g.10gb", True)

    def argv(role, options):
        work = WorkSpec(role, role, "dlrm", "Offline", "performance", 1000, 1, tmp_path)
        return list(LoadgenHarness(options).launch(work, part, {}, tmp_path / "l").argv)

    assert "--cpu-duty" not in argv("main", {})
    bg = argv("background", {})
    assert bg[bg.index("--cpu-duty") + 1] == BACKGROUND_CPU_DUTY
    off = argv("background", {"background_cpu_duty": "1"})
    assert off[off.index("--cpu-duty") + 1] == "1"


def test_paced_calibration_scales_every_rate_by_the_duty():
    paced = CAL.paced(0.1)
    assert paced.single_qps == pytest.approx(CAL.single_qps * 0.1)
    assert paced.batch_qps == pytest.approx(CAL.batch_qps * 0.1)
    assert paced.peak_qps == pytest.approx(CAL.peak_qps * 0.1)
    ts, _ = sut.test_settings(_config("Offline"), paced)  # Offline query sized for the paced rate
    assert ts.offline_expected_qps == pytest.approx(130.0)
    # A paced background expects 0.8 of its paced median rate, the rate it is planned and paced at.
    ts, _ = sut.test_settings(_config("Offline"), paced, paced=True)
    assert ts.offline_expected_qps == pytest.approx(64.0)


def test_cpu_duty_must_be_a_fraction():
    from pytest_mig.workload import cli

    base = ["--benchmark", "dlrm", "--scenario", "Offline", "--mode", "performance",
            "--log-dir", "x", "--min-duration-ms", "1"]
    assert cli.parser().parse_args(base + ["--cpu-duty", "0.25"]).cpu_duty == 0.25
    for bad in ("0", "1.5", "-0.1"):
        with pytest.raises(SystemExit):
            cli.parser().parse_args(base + ["--cpu-duty", bad])


@pytest.mark.parametrize("benchmark", ["ssd-mobilenet", "rnnt"])  # folded convs + buffers; cuDNN LSTMs
def test_a_cached_fitted_model_gives_the_same_outputs(benchmark, tmp_path):
    from pytest_mig.workload.models import build, cached_model_path

    fresh = build(benchmark, "tiny", seed=3, cache_dir=tmp_path)
    path = cached_model_path(tmp_path, benchmark, "tiny", 3)
    assert path.is_file()
    again = build(benchmark, "tiny", seed=3, cache_dir=tmp_path)  # loaded, not fitted
    inputs = fresh.make_inputs([0, 1])
    with torch.inference_mode():
        expected = fresh.postprocess(fresh.model(*inputs))
        got = again.postprocess(again.model(*inputs))
    assert [a.tobytes() for a in got] == [e.tobytes() for e in expected]
    path.write_bytes(b"torn")  # an unreadable cache file is fitted again and replaced
    assert build(benchmark, "tiny", seed=3, cache_dir=tmp_path).model is not None
    assert path.stat().st_size > 4
