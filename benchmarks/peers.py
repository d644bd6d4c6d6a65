"""The harness's model loop against what a practitioner would run instead, same GPU, same batch, one process.

Per benchmark (default resnet50, bert, retinanet at --size full, bf16):
- harness "graph": the model as the harness prepares it (bf16, channels-last, BN folded), its
  output reduction captured with it in one CUDA graph, replayed on a fixed batch (what the
  compile study called the harness path);
- harness "pipeline": what the SUT does per batch without LoadGen: gather the batch from the
  device-resident samples by index, replay, reduce, copy to pinned host memory, two in flight;
- peers: torchvision ResNet-50 (bf16, channels-last), transformers BERT-large for question
  answering (bf16, the harness's sequence length), torchvision RetinaNet-ResNet50-FPN (autocast
  bf16, images the harness's size; its own post-processing) each eager and under the
  torch.compile modes given (default: reduce-overhead for ResNet-50 and BERT; RetinaNet eager).
ratio = harness pipeline / best peer mode. Samples/s: best of WINDOWS timed windows after warm-up.
Nothing else runs on the GPU meanwhile (the compile study's parallel workers did: see README).

    python benchmarks/peers.py --json $OUT/peers.json                  # GPU
    python benchmarks/peers.py --device cpu --size tiny --seconds 0.3  # CPU check (peers if importable)

The last stdout line is the JSON report.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCH = {"resnet50": 1024, "bert": 256, "retinanet": 32}
PEER_MODES = {"resnet50": ("eager", "reduce-overhead"), "bert": ("eager", "reduce-overhead"),
              "retinanet": ("eager",)}
PEER_NAME = {"resnet50": "torchvision resnet50", "bert": "transformers BertForQuestionAnswering (BERT-large)",
             "retinanet": "torchvision retinanet_resnet50_fpn"}
WINDOWS = 3
POOL = 256  # distinct samples the harness batches are drawn from


def log(message: str) -> None:
    print(f"[peers] {message}", flush=True)


def rate(step: Callable[[], object], batch: int, seconds: float, sync: Callable[[], None]) -> float:
    """Best samples/s of WINDOWS windows of `step` after three warm-up calls."""
    for _ in range(3):
        step()
    sync()
    best = 0.0
    for _ in range(WINDOWS):
        calls, t0 = 0, time.perf_counter()
        while calls < 2 or time.perf_counter() - t0 < seconds / WINDOWS:
            step()
            calls += 1
        sync()
        best = max(best, calls * batch / (time.perf_counter() - t0))
    return round(best, 1)


def harness(name: str, size: str, batch: int, seconds: float, device: Any) -> dict[str, Any]:
    import torch

    from pytest_mig.workload import accel
    from pytest_mig.workload.models import build, reduce_for

    t0 = time.perf_counter()
    model, loader, post = build(name, size, 0, device)
    cuda = device.type == "cuda"
    opts = accel.options_for(name, "bf16", cuda_graphs=cuda, start_from_device=True)
    fast = accel.prepare_model(model, name, opts, copy_first=False)
    if cuda:
        accel.setup_cuda()
    predictor = accel.AccelPredictor(fast, loader, post, opts, device, batch, (batch,), reduce_for(name, size))
    pool = min(POOL, batch)
    loader.load(range(pool))
    indices = [i % pool for i in range(batch)]
    capture_s = predictor.capture(indices) if cuda else 0.0
    built_s = time.perf_counter() - t0

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    out: dict[str, Any] = {"built_s": round(built_s, 1), "capture_s": round(capture_s, 2)}
    if cuda:
        inputs = predictor._inputs(indices)
        runner = predictor.runner
        assert runner is not None
        with torch.inference_mode():
            out["graph"] = rate(lambda: runner(batch, inputs), batch, seconds, sync)
    pending: list[Callable[[], Any]] = []

    def pipelined() -> None:  # the SUT's pattern: launch the next, then finish the oldest
        pending.append(predictor.launch(indices))
        if len(pending) >= predictor.in_flight:
            pending.pop(0)()

    out["pipeline"] = rate(pipelined, batch, seconds, sync)
    while pending:
        pending.pop(0)()
    return out


def peer(name: str, size: str, batch: int, seconds: float, device: Any, modes: tuple[str, ...],
         deadline: float) -> dict[str, Any]:
    import torch

    from pytest_mig.workload.models import FAMILIES

    cfg = FAMILIES[name].configs[size]
    cuda = device.type == "cuda"
    autocast: Any = None
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50().eval().to(device, torch.bfloat16).to(memory_format=torch.channels_last)
        x = torch.randn(batch, 3, cfg.image, cfg.image, device=device, dtype=torch.bfloat16)
        args: tuple = (x.to(memory_format=torch.channels_last),)
    elif name == "bert":
        from transformers import BertConfig, BertForQuestionAnswering

        bert = BertConfig(vocab_size=cfg.vocab, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                          num_attention_heads=cfg.heads, intermediate_size=4 * cfg.hidden,
                          max_position_embeddings=cfg.max_positions)
        model = BertForQuestionAnswering(bert).eval().to(device, torch.bfloat16)
        ids = torch.randint(1000, cfg.vocab, (batch, cfg.seq), device=device)
        args = (ids, torch.ones_like(ids), torch.zeros_like(ids))
    else:
        import torchvision

        model = torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, min_size=cfg.image, max_size=cfg.image).eval().to(device)
        args = ([torch.rand(3, cfg.image, cfg.image, device=device) for _ in range(batch)],)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    out: dict[str, Any] = {"peer": PEER_NAME[name]}
    for mode in modes:
        if time.monotonic() > deadline:
            out[mode] = "skipped: peers deadline"
            continue
        try:
            t0 = time.perf_counter()
            fn = model if mode == "eager" else torch.compile(model, mode=mode)

            def step() -> None:
                with torch.inference_mode():
                    if autocast is not None:
                        with autocast:
                            fn(*args)
                    else:
                        fn(*args)
            step()
            sync()
            ready = time.perf_counter() - t0
            out[mode] = {"samples_per_s": rate(step, batch, seconds, sync), "first_call_s": round(ready, 1)}
        except Exception as exc:  # noqa: BLE001  (one mode failing must not hide the others)
            out[mode] = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        torch._dynamo.reset()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--benchmarks", default="resnet50,bert,retinanet")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--size", default="full")
    ap.add_argument("--batch", type=int, help="one batch for every benchmark (default: BATCH per benchmark)")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per figure (over WINDOWS windows)")
    ap.add_argument("--deadline", type=float, default=240.0, help="seconds for the whole script; later peers skip")
    args = ap.parse_args(argv)
    import torch

    device = torch.device(args.device)
    deadline = time.monotonic() + args.deadline
    report: dict[str, Any] = {"gpu": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                              "torch": torch.__version__, "size": args.size, "precision": "bf16",
                              "statistic": f"best of {WINDOWS} windows of {args.seconds / WINDOWS:.2f} s",
                              "results": []}
    for name in args.benchmarks.split(","):
        batch = args.batch or BATCH[name]
        row: dict[str, Any] = {"benchmark": name, "batch": batch}
        log(f"{name} batch {batch}: harness")
        try:
            row["harness"] = harness(name, args.size, batch, args.seconds, device)
        except Exception as exc:  # noqa: BLE001
            row["harness"] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        log(f"{name}: peer {PEER_NAME[name]}")
        try:
            row["peer"] = peer(name, args.size, batch, args.seconds, device, PEER_MODES[name], deadline)
        except Exception as exc:  # noqa: BLE001  (e.g. torchvision/transformers missing on a CPU check)
            row["peer"] = {"error": f"{type(exc).__name__}: {exc}"}
        peer_rates = {m: v["samples_per_s"] for m, v in row["peer"].items() if isinstance(v, dict)}
        if peer_rates and isinstance(row["harness"].get("pipeline"), float):
            best_mode = max(peer_rates, key=peer_rates.__getitem__)
            row["best_peer_mode"] = best_mode
            row["ratio"] = round(row["harness"]["pipeline"] / peer_rates[best_mode], 3)
        log(json.dumps(row))
        report["results"].append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
