"""The built-in llama3.1-8b: its shape, greedy generation, and LoadGen's token-latency mode end to end."""
from __future__ import annotations

import json
import subprocess
import time
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pytest_mig.workload import accel, serving
from pytest_mig.workload.llm import generate
from pytest_mig.workload.models import build
from pytest_mig.workload.models.llama import CONFIGS, FP8, FP8Linear, Llama, prompt_of, quantize_rows, scaled_mm
from pytest_mig.workload.scoring import rouge_l, rouge_n
from pytest_mig.results.accuracy import parse_accuracy
from pytest_mig.results.summary import parse_summary, token_throughput

REPO = Path(__file__).resolve().parents[1]
READY = "[pytest-mig loadgen] Starting running actual test."


def test_full_size_has_llama31_8b_shape_and_fits_16_gib_of_fp8_weights():
    with torch.device("meta"):
        model = Llama(CONFIGS["full"])
    weights = sum(b.numel() for b in model.buffers() if b.dtype == FP8)
    assert 8.0e9 < weights < 8.1e9  # Llama-3.1-8B: 8.03 G parameters
    assert weights / 2 ** 30 < 7.5  # one byte each: the docstring's 7.48 GiB
    cfg = CONFIGS["full"]
    assert (cfg.layers, cfg.hidden, cfg.heads, cfg.kv_heads, cfg.intermediate, cfg.vocab) == \
        (32, 4096, 32, 8, 14336, 128256)
    assert CONFIGS["tiny"].layers < cfg.layers and CONFIGS["tiny"].heads // CONFIGS["tiny"].kv_heads == 4


@pytest.fixture(scope="module")
def tiny():
    return build("llama3.1-8b", "tiny", seed=0)


def test_seeded_weights_and_batch_independent_answers_of_their_own_length(tiny):
    again = build("llama3.1-8b", "tiny", seed=0)
    assert torch.equal(tiny.model.head.weight.float(), again.model.head.weight.float())
    other = build("llama3.1-8b", "tiny", seed=1)
    assert not torch.equal(tiny.model.head.weight.float(), other.model.head.weight.float())
    samples = [tiny.make_inputs.sample(i) for i in range(6)]
    prompts, new = [prompt_of(s) for s in samples], [int(s["max_new"]) for s in samples]
    batch = generate(tiny.model, prompts, new, torch.float32)
    assert [len(a) for a in batch] == new
    for prompt, n, answer in zip(prompts, new, batch):
        assert np.array_equal(generate(tiny.model, [prompt], [n], torch.float32)[0], answer)
    assert len({tuple(a) for a in batch}) == len(batch)  # different prompts, different answers


def test_rouge_on_token_ids():
    assert rouge_n([1, 2, 3, 4], [1, 2, 3, 4], 1) == 1.0
    assert rouge_n([1, 2, 3, 4], [1, 2, 9, 9], 1) == pytest.approx(0.5)
    assert rouge_n([1, 2, 3], [3, 2, 1], 2) == 0.0
    assert rouge_l([1, 9, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.75)


def harness(log_dir: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "pytest_mig.workload", "--benchmark", "llama3.1-8b",
            "--log-dir", str(log_dir), *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)


def test_offline_is_valid_and_scored_in_tokens_per_second(tmp_path):
    run = harness(tmp_path, "--scenario", "Offline", "--mode", "performance", "--min-duration-ms", "500",
                  "--precision", "fp16")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert READY in run.stdout.splitlines()
    summary = parse_summary(tmp_path / "mlperf_log_summary.txt")
    assert summary.valid, summary.invalid_reasons
    name, value = token_throughput(summary)
    assert (name, value) == (summary.headline_name, summary.headline_value)  # tokens/s is the scored headline
    assert value > summary.metrics["Samples per second"]  # several tokens per sample
    assert summary.test_parameters["ttft_latency (ns)"]  # token-latency mode was on
    record = json.loads((tmp_path / "harness_path.json").read_text())
    assert record["decode_batch"] == CONFIGS["tiny"].max_batch and record["decode_batch_from"] == "config"
    assert record["decode_steps"] > 0 and record["decode_step_ms"] > 0
    # bytes per step: the matrices once plus the attended K/V of every slot
    assert record["decode_bytes_per_step"] > record["weight_bytes"] > 0
    assert record["decode_gbytes_per_s"] > 0 and "decode:" in run.stdout


def test_single_stream_reports_first_token_and_per_token_latencies(tmp_path):
    run = harness(tmp_path, "--scenario", "SingleStream", "--mode", "performance", "--min-duration-ms", "200",
                  "--precision", "fp16")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = parse_summary(tmp_path / "mlperf_log_summary.txt")
    assert summary.valid, summary.invalid_reasons
    lat = summary.latencies_ns
    assert 0 < lat["ttft_p50"] <= lat["ttft_p99"] and 0 < lat["tpot_p50"] <= lat["tpot_p99"]
    assert lat["ttft_max"] < lat["max"]  # the first token comes before the whole answer
    assert "TTFT 90.0th percentile" in summary.early_stopping_estimates


# fp8: activations quantised per token to fp8 too (fp8 x fp8 matmuls): 96.2 at tiny, 64 prompts.
@pytest.mark.parametrize("precision, at_least", [("fp16", 100.0), ("bf16", 99.0), ("fp8", 95.0)])
def test_accuracy_compares_generated_tokens_with_the_fp32_reference(tmp_path, precision, at_least):
    run = harness(tmp_path, "--scenario", "Offline", "--mode", "accuracy", "--min-duration-ms", "0",
                  "--sample-count", "64", "--precision", precision)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = parse_accuracy(tmp_path / "accuracy.txt", "llama3.1-8b")
    assert result.metric == "rouge1" and result.value >= at_least
    assert result.fields["gen_num"] == 64
    logged = json.loads((tmp_path / "mlperf_log_accuracy.json").read_text())
    assert sum(len(bytes.fromhex(e["data"])) // 4 for e in logged) == result.fields["gen_len"]


def test_integer_precisions_are_refused_with_one_line(tmp_path):
    run = harness(tmp_path, "--scenario", "Offline", "--mode", "performance", "--min-duration-ms", "0",
                  "--precision", "int8")
    assert run.returncode == 2
    assert "weights are fp8 already" in run.stderr and "Traceback" not in run.stderr


def test_batches_of_different_prompt_lengths_have_one_shape_and_unchanged_logits(tiny):
    # The compile study captured a CUDA graph on one batch and replayed another whose prompts
    # were shorter: "size of tensor a (993) must match ... (865)" in accel.py. Every batch now
    # has the config's padded length, and the padding changes no answer.
    loader, cfg = tiny.make_inputs, CONFIGS["tiny"]
    lengths = [int(loader.sample(i)["length"]) for i in range(16)]
    short = sorted(range(16), key=lambda i: lengths[i])[:4]
    long = sorted(range(16), key=lambda i: lengths[i])[-4:]
    assert max(lengths[i] for i in short) < max(lengths[i] for i in long)
    a, b = loader(short), loader(long)
    assert [t.shape for t in a] == [t.shape for t in b] and a[0].shape == (4, cfg.prompt_max)
    with torch.inference_mode():
        padded = tiny.model(*a)
        for row, i in enumerate(short):
            prompt = prompt_of(loader.sample(i))
            own = tiny.model(prompt[None], torch.tensor([len(prompt)]))
            torch.testing.assert_close(padded[row], own[0], rtol=1e-4, atol=1e-4)


def test_a_graph_refuses_a_batch_of_another_shape_in_one_line():
    static = (torch.zeros(4, 993, dtype=torch.long), torch.zeros(4, dtype=torch.long))
    accel.check_static_shapes(static, (torch.zeros(4, 993, dtype=torch.long), torch.ones(4, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"input 0 has shape \(4, 865\) but the CUDA graph was captured "
                                         r"for \(4, 993\)") as err:
        accel.check_static_shapes(static, (torch.zeros(4, 865, dtype=torch.long), torch.zeros(4, dtype=torch.long)))
    assert "\n" not in str(err.value)


def test_answers_do_not_depend_on_slots_or_prefill_chunks(tiny):
    samples = [tiny.make_inputs.sample(i) for i in range(9)]
    prompts, new = [prompt_of(s) for s in samples], [int(s["max_new"]) for s in samples]
    whole = serving.generate(tiny.model, prompts, new, torch.float32)
    # 2 slots (continuous batching refills them), prompts cut into 7-token chunks
    chunked = serving.generate(tiny.model, prompts, new, torch.float32, slots=2, prefill_tokens=7)
    assert all(np.array_equal(a, b) for a, b in zip(whole, chunked))


def test_fp8_matmul_off_hopper_is_the_dequantised_math():
    torch.manual_seed(0)
    lin = FP8Linear(64, 32)
    lin.set_weight(torch.randn(32, 64))
    x = torch.randn(5, 64)
    q, sx = quantize_rows(x)
    assert q.dtype == FP8 and sx.shape == (5, 1)
    expected = (q.float() * sx) @ (lin.weight.float() * lin.scale[:, None]).t()
    assert torch.equal(lin.fp8(x), expected)
    # the tensor-core call (torch._scaled_mm, rows padded to 16) is that math up to bf16 rounding
    torch.testing.assert_close(scaled_mm(q, sx, lin.weight, lin.scale).float(), expected, rtol=0.02, atol=0.02)
    assert torch.allclose(lin.fp8(x), lin(x), rtol=0.1, atol=0.1 * lin(x).abs().max().item())
    assert (q.float() * sx - x).abs().max() <= 0.07 * x.abs().amax(dim=1, keepdim=True).max()  # e4m3: 3 bits


class FakeEngine:
    """Records what `serving.serve` asks of an engine; answers token 7 for everything."""

    def __init__(self, slots: int, prefill_tokens: int) -> None:
        self.slots, self.prefill_tokens = slots, prefill_tokens
        self.events: list[tuple[str, int]] = []

    def prefill(self, plan):
        self.events.append(("prefill", sum(seg.count for _, seg in plan)))
        return [7 if seq.prefilled + seg.count == len(seq.prompt) else None for seq, seg in plan]

    def decode(self, decoding):
        self.events.append(("decode", len(decoding)))
        return [7] * self.slots


def test_continuous_batching_keeps_the_batch_full_and_prefill_never_starves_decode():
    engine = FakeEngine(slots=3, prefill_tokens=10)
    queue = [serving.Request(i, torch.ones(4 + i, dtype=torch.long), 2 + i % 3) for i in range(8)]
    pending = list(queue)
    sched = serving.Scheduler(3, 10)
    sched.add([pending.pop(0)])

    def refill(room):
        taken = pending[:room]
        del pending[:room]
        return taken

    firsts, done = [], []
    serving.serve(engine, sched, refill, firsts.append, done.append)
    assert sorted(s.request for s in done) == list(range(8)) and len(firsts) == 8
    assert all(len(s.out) == s.max_new for s in queue)
    assert all(n <= 10 for kind, n in engine.events if kind == "prefill")  # the budget holds
    # a decode step follows every prefill pass while sequences are decoding (no starving)
    kinds = [k for k, _ in engine.events]
    assert "prefill prefill" not in " ".join(kinds[kinds.index("decode"):])
    # while requests wait, every slot is busy: decoding or being prefilled
    assert max(n for kind, n in engine.events if kind == "decode") == 3


def test_the_decode_batch_grows_with_the_memory_left():
    slot = 144 * 2 ** 20  # one full-size sequence's K/V
    small = serving.kv_slots(8 * 2 ** 30, slot)
    large = serving.kv_slots(120 * 2 ** 30, slot)
    assert 1 <= small < large <= serving.MAX_SLOTS
    assert serving.kv_slots(2 ** 20, slot) == 1  # at least one sequence


def test_the_roofline_credits_a_slice_with_its_profiles_share_of_the_bandwidth():
    from pytest_mig.workload import roofline
    from pytest_mig.workload_contract import SLICE_ENV

    whole = roofline.slice_bandwidth("NVIDIA H200", {})
    assert whole is not None and whole.gbs == 4800
    share = roofline.slice_bandwidth("NVIDIA H200", {SLICE_ENV: "mps:1g.18gb"})
    assert share is not None and share.gbs == 600 and "1/8" in share.what
    assert roofline.slice_bandwidth("NVIDIA H200 MIG 3g.71gb", {SLICE_ENV: "mig:3g.71gb"}).gbs == 2400
    assert roofline.slice_bandwidth("NVIDIA H100 80GB HBM3", {SLICE_ENV: "none:1g.10gb"}).gbs == 3350
    assert roofline.slice_bandwidth("Some Other GPU", {}) is None
    assert roofline.fraction(300.0, share) == 0.5 and roofline.fraction(300.0, None) is None


def test_the_llm_runs_until_stopped_as_a_session_background(tmp_path):
    import os
    import signal

    proc = subprocess.Popen([sys.executable, "-m", "pytest_mig.workload", "--benchmark", "llama3.1-8b",
                             "--scenario", "Offline", "--mode", "performance", "--min-duration-ms", "300",
                             "--precision", "fp8", "--until-stopped", "--log-dir", str(tmp_path)],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if lines[-1] == READY:
                break
        deadline = time.monotonic() + 120  # until a first test has completed on its own
        while not (tmp_path / "run-1").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        lines += rest.splitlines()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log = "\n".join(lines[-30:])
    assert proc.returncode == 0, log
    assert lines.count(READY) == 1
    summary = parse_summary(tmp_path / "mlperf_log_summary.txt")  # the completed test's, published
    assert summary.valid, log
    record = json.loads((tmp_path / "harness_path.json").read_text())
    assert record["tests"] >= 2 and record["decode_steps"] > 0
