"""The harness's GPU path, as far as a CPU can check it, and --until-stopped as a real subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

from pytest_mig.workload import accel  # noqa: E402
from pytest_mig.workload.models import Predictor, build  # noqa: E402
from pytest_mig.results.summary import parse_summary  # noqa: E402

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[1]
READY = "[pytest-mig loadgen] Starting running actual test."


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


def test_bucket_sizes_are_powers_of_two_then_the_max():
    assert accel.bucket_sizes(1) == (1,)
    assert accel.bucket_sizes(8) == (1, 2, 4, 8)
    assert accel.bucket_sizes(6) == (1, 2, 4, 6)
    assert accel.bucket_sizes(256) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        accel.bucket_sizes(0)


def test_bucket_for_picks_the_smallest_that_holds_the_batch():
    buckets = (1, 2, 4, 6)
    assert [accel.bucket_for(n, buckets) for n in (1, 2, 3, 4, 5, 6)] == [1, 2, 4, 4, 6, 6]
    with pytest.raises(ValueError, match="7 samples exceed the largest graphed batch 6"):
        accel.bucket_for(7, buckets)


def test_pad_indices_repeats_the_last_sample():
    assert accel.pad_indices([3, 5], 4) == [3, 5, 5, 5]
    assert accel.pad_indices([9], 1) == [9]
    with pytest.raises(ValueError, match="cannot pad 0 samples"):
        accel.pad_indices([], 2)
    with pytest.raises(ValueError, match="cannot pad 3 samples to a batch of 2"):
        accel.pad_indices([1, 2, 3], 2)


def test_take_samples_keeps_rows_of_the_first_samples():
    per_pair = torch.arange(4 * 3 * 2).reshape(12, 2)  # 4 samples of 3 rows (DLRM: pairs per query)
    assert torch.equal(accel.take_samples(per_pair, 2, 4), per_pair[:6])
    boxes, probs = torch.zeros(4, 7, 4), torch.ones(4, 7, 3)
    out = accel.take_samples((boxes, probs), 3, 4)
    assert isinstance(out, tuple) and out[0].shape == (3, 7, 4) and out[1].shape == (3, 7, 3)
    with pytest.raises(ValueError, match="output of 10 rows is not 4 equal samples"):
        accel.take_samples(torch.zeros(10), 1, 4)
    with pytest.raises(TypeError, match="of type dict"):
        accel.take_samples({"x": per_pair}, 1, 4)
    rows, counts = accel.take_samples((per_pair, None), 2, 4)  # a reduction without counts
    assert torch.equal(rows, per_pair[:6]) and counts is None


@pytest.mark.parametrize("benchmark", ["bert", "dlrm", "ssd-mobilenet"])
def test_a_reduction_taken_from_a_padded_batch_is_the_reduction_of_the_batch(benchmark):
    """What a graph replay gives (the reduction of a padded batch, then its first rows) is what
    the eager path gives (the reduction of the batch itself)."""
    from pytest_mig.workload.models import reduce_for

    model, loader, _ = build(benchmark, "tiny", seed=0)
    reduce = reduce_for(benchmark, "tiny")
    assert reduce is not None
    runner = accel.GraphRunner(model, CPU, reduce)  # its forward: model then head, as captured
    with torch.inference_mode():
        padded = runner._forward(loader(accel.pad_indices([0, 1, 2], 4)))
        eager = reduce(model(*loader([0, 1, 2])))
    taken = accel.take_samples(padded, 3, 4)
    for got, want in zip(taken, eager):
        assert (got is None and want is None) or torch.equal(got, want)


def test_options_defaults_per_benchmark():
    opts = accel.options_for("resnet50", "bf16")
    assert (opts.dtype, opts.memory_format, opts.cuda_graphs, opts.start_from_device) == (
        torch.bfloat16, torch.channels_last, True, False)
    assert opts.describe() == "dtype=bfloat16 layout=channels_last cuda_graphs=on start_from_device=off compile=off"
    unet = accel.options_for("3d-unet", "fp16", start_from_device=True)
    assert (unet.dtype, unet.memory_format, unet.start_from_device) == (torch.float16, torch.channels_last_3d, True)
    rnnt = accel.options_for("rnnt", "fp16", channels_last=True)
    assert (rnnt.cuda_graphs, rnnt.memory_format) == (True, None)  # step graphs; no convs
    plain = accel.options_for("ssd-resnet34", "int8", cuda_graphs=False, channels_last=False)
    assert (plain.dtype, plain.memory_format, plain.cuda_graphs) == (torch.float32, None, False)


@pytest.mark.parametrize("benchmark", ["resnet50", "ssd-mobilenet", "3d-unet"])
def test_channels_last_leaves_outputs_equal_and_the_reference_untouched(benchmark):
    model, loader, _ = build(benchmark, "tiny", seed=0)
    opts = accel.options_for(benchmark, "fp32", cuda_graphs=False)
    fast = accel.prepare_model(model, benchmark, opts, copy_first=True)
    assert fast is not model
    first_conv = next(m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    assert first_conv.weight.is_contiguous()  # the reference keeps its layout
    fast_conv = next(m for m in fast.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)))
    assert fast_conv.weight.is_contiguous(memory_format=opts.memory_format)
    inputs = loader([0, 1, 2])
    with torch.inference_mode():
        expected = model(*inputs)
        got = fast(*(accel.prepare_input(t, opts) for t in inputs))
    for e, g in zip(expected if isinstance(expected, tuple) else (expected,), got if isinstance(got, tuple) else (got,)):
        if e.is_floating_point():
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-4)
        else:
            assert torch.equal(g, e)


def test_layout_instance_norm_matches_and_keeps_channels_last_3d():
    torch.manual_seed(0)
    norm = torch.nn.InstanceNorm3d(6, affine=True)
    torch.nn.init.normal_(norm.weight)
    torch.nn.init.normal_(norm.bias)
    x = torch.randn(2, 6, 5, 4, 3).contiguous(memory_format=torch.channels_last_3d)
    ours = accel.LayoutInstanceNorm(norm)
    torch.testing.assert_close(ours(x), norm(x), rtol=1e-5, atol=1e-5)
    assert ours(x).is_contiguous(memory_format=torch.channels_last_3d)
    model = build("3d-unet", "tiny", seed=0).model
    norms = sum(isinstance(m, torch.nn.InstanceNorm3d) for m in model.modules())
    assert norms == 2 * 3 + 2 * 2  # two per level down, two per merge up (3 levels)
    assert accel.replace_instance_norms(model) == norms
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in model.modules())


def test_cast_parameters_keeps_float_buffers_and_runs_in_bf16():
    model = build("ssd-mobilenet", "tiny", seed=0).model
    scale = float(model.logit_scale)
    accel.cast_parameters(model, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.logit_scale.dtype == torch.float32 and float(model.logit_scale) == scale


def test_rnnt_cast_to_bf16_decodes_like_fp32():
    model, loader, post = build("rnnt", "tiny", seed=0)
    opts = accel.options_for("rnnt", "bf16", cuda_graphs=False)
    fast = accel.prepare_model(model, "rnnt", opts, copy_first=True)
    assert model.pre.weight_ih_l0.dtype == torch.float32 and fast.pre.weight_ih_l0.dtype == torch.bfloat16
    got = accel.AccelPredictor(fast, loader, post, opts, CPU, 8)([0, 1, 2, 3])
    expected = Predictor(model, loader, post, "fp32", CPU)([0, 1, 2, 3])
    same = sum(np.array_equal(g, e) for g, e in zip(got, expected))
    assert same >= 3, (got, expected)


class _EagerRunner:
    """Stands in for GraphRunner on the CPU: same interface, records the batch sizes it ran."""

    def __init__(self, model):
        self.model, self.graphs, self.sizes = model, {}, []

    def capture(self, size, inputs):
        self.graphs[size] = True

    def __call__(self, size, inputs):
        assert all(t.shape[0] % size == 0 for t in inputs)
        self.sizes.append(size)
        return self.model(*inputs)


@pytest.mark.parametrize("benchmark", ["resnet50", "dlrm", "ssd-resnet34"])
def test_partial_batches_are_padded_to_a_bucket_and_trimmed(benchmark):
    model, loader, post = build(benchmark, "tiny", seed=0)
    opts = accel.AccelOptions(torch.float32, None, cuda_graphs=True, start_from_device=False)
    predictor = accel.AccelPredictor(model, loader, post, opts, CPU, max_batch=6)
    runner = predictor.runner = _EagerRunner(model)
    assert predictor.buckets == (1, 2, 4, 6)
    got = predictor([4, 1, 7])
    assert runner.sizes == [4] and sorted(runner.graphs) == [4]
    expected = Predictor(model, loader, post, "fp32", CPU)([4, 1, 7])
    assert len(got) == 3 and all(np.array_equal(g, e) for g, e in zip(got, expected))
    predictor([1, 2, 3, 4, 5])
    assert runner.sizes == [4, 6]


class _ReplayEager:
    """Stands in for a captured CUDA graph on the CPU: replay() reruns the step into fixed outputs."""

    def __init__(self, runner, static):
        self.runner, self.static = runner, static
        self.outputs = tuple(t.clone() for t in runner._body({k: v.clone() for k, v in static.items()}))

    def replay(self):
        for out, value in zip(self.outputs, self.runner._body(self.static)):
            out.copy_(value)


def test_rnnt_step_decoder_matches_the_eager_greedy_decoder():
    model, loader, post = build("rnnt", "tiny", seed=0)
    runner = accel.runner_for(model, CPU)
    assert isinstance(runner, accel.DecoderGraphRunner)
    inputs = loader(list(range(8)))
    with torch.inference_mode():
        static = runner.static_buffers(8, inputs)
        graph = _ReplayEager(runner, static)
        runner.graphs[8] = (graph, static, graph.outputs)
        got = runner(8, inputs)
        expected = model(*inputs)
    assert got.shape == expected.shape and torch.equal(got, expected)
    assert (got >= 0).sum() > 8  # the tiny model does emit symbols


def test_lstm_step_is_one_step_of_nn_lstm():
    torch.manual_seed(0)
    from pytest_mig.workload.models.rnnt import lstm_step

    lstm = torch.nn.LSTM(6, 5, 2, batch_first=True)
    x, h, c = torch.randn(3, 6), torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    out, (h1, c1) = lstm(x[:, None, :], (h, c))
    got, (h2, c2) = lstm_step(lstm, x, h, c)
    torch.testing.assert_close(got, out[:, 0])
    torch.testing.assert_close((h2, c2), (h1, c1))


def test_start_from_device_gathers_batches_from_resident_samples_in_the_compute_dtype_and_layout():
    model, loader, post = build("resnet50", "tiny", seed=0)
    opts = accel.AccelOptions(torch.bfloat16, torch.channels_last, cuda_graphs=False, start_from_device=True)
    predictor = accel.AccelPredictor(model, loader, post, opts, CPU, 4)
    loader.load([0, 1, 2])
    assert predictor.resident_inputs and len(loader.resident_set) == 3
    (image,) = predictor._inputs([2, 0, 2])
    assert image.dtype == torch.bfloat16 and image.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(image, accel.prepare_input(loader([2, 0, 2])[0], opts))
    # The host copy stays as generated: the FP32 reference reads it.
    assert loader.sample(0)["image"].dtype == torch.float32
    loader.unload([0, 1])
    assert len(loader.resident_set) == 1 and not loader.resident_set.holds([0, 2])
    loader.load([5])  # takes a freed row
    (again,) = predictor._inputs([5, 2])
    assert torch.equal(again, accel.prepare_input(loader([5, 2])[0], opts))
    loader.unload([2, 5])
    assert loader.loaded == 0 and len(loader.resident_set) == 0


def test_rnnt_samples_stay_per_sample_on_the_device_path():
    model, loader, post = build("rnnt", "tiny", seed=0)
    opts = accel.AccelOptions(torch.bfloat16, None, cuda_graphs=False, start_from_device=True)
    predictor = accel.AccelPredictor(model, loader, post, opts, CPU, 4)
    loader.load([0, 1])
    assert not predictor.resident_inputs  # padded batches: not a plain stack
    assert loader.sample(0)["features"].dtype == torch.bfloat16
    loader.unload([0, 1])


def test_launch_queues_the_batch_and_finish_gives_the_rows_call_gives():
    model, loader, post = build("ssd-mobilenet", "tiny", seed=0)
    opts = accel.options_for("ssd-mobilenet", "fp32", cuda_graphs=False, channels_last=False, start_from_device=True)
    from pytest_mig.workload.models import reduce_for

    predictor = accel.AccelPredictor(model, loader, post, opts, CPU, 4, reduce=reduce_for("ssd-mobilenet", "tiny"))
    loader.load(range(6))
    output = predictor.launch([0, 1, 2, 3, 4])()
    assert len(output) == 5 and output.counts is not None
    arrays = output.arrays()
    reference = post(model(*loader([0, 1, 2, 3, 4])))
    assert [a.tobytes() for a in arrays] == [r.tobytes() for r in reference]
    assert any(a.size for a in arrays)  # the tiny detector does detect


def test_retained_samples_survive_unload():
    loader = build("dlrm", "tiny", seed=0).make_inputs
    loader.retain = True
    loader.load([0, 1])
    loader.unload([0, 1])
    assert loader.loaded == 2


def _start(log_dir: Path, *args: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "pytest_mig.workload", "--log-dir", str(log_dir), *args]
    return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def test_until_stopped_runs_tests_back_to_back_and_exits_0_on_sigterm(tmp_path):
    proc = _start(tmp_path, "--benchmark", "resnet50", "--scenario", "Offline", "--mode", "performance",
                  "--min-duration-ms", "200", "--device", "cpu", "--until-stopped", "--start-from-device")
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if lines[-1] == READY:
                time.sleep(2.5)
                proc.send_signal(signal.SIGTERM)
                break
            assert time.monotonic() < deadline, "\n".join(lines)
        rest, _ = proc.communicate(timeout=60)
        lines += rest.splitlines()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = "\n".join(lines[-30:])
    assert proc.returncode == 0, log
    assert lines.count(READY) == 1
    assert ("[pytest-mig loadgen] --start-from-device: the device is the CPU, where QSL samples "
            "already live (no-op)") in lines
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) >= 2, log  # 2 s of 200 ms tests
    assert {p.name for p in runs} == {f"run-{k}" for k in range(len(runs))}
    assert f"[pytest-mig loadgen] stopped after {len(runs)} test(s); " in "\n".join(lines)
    published = (tmp_path / "mlperf_log_summary.txt").read_text()
    last_two = [(tmp_path / f"run-{k}" / "mlperf_log_summary.txt").read_text() for k in (len(runs) - 2, len(runs) - 1)]
    assert published in last_two  # the last test completed on its own (the cut-short one is not copied)
    summary = parse_summary(tmp_path / "mlperf_log_summary.txt")
    assert summary.scenario == "Offline" and summary.mode == "PerformanceOnly" and summary.valid
    assert summary.test_parameters["min_duration (ms)"] == "200"
    assert (tmp_path / "mlperf_log_detail.txt").exists()


def test_until_stopped_needs_performance_mode(tmp_path):
    proc = _start(tmp_path, "--benchmark", "dlrm", "--scenario", "Offline", "--mode", "accuracy",
                  "--min-duration-ms", "0", "--until-stopped")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "--until-stopped runs performance tests; use --mode performance" in out
