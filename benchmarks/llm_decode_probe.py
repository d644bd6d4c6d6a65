"""Decode-step probe of the built-in llama3.1-8b (full size, seeded fp8 weights) on one CUDA
device: the numbers behind the LLM's roofline goals, without LoadGen.

    python3 benchmarks/llm_decode_probe.py OUT.json [--batches 16,64] [--contexts 640,1152]

Measures, on whatever share of the GPU this process has (whole GPU, or an MPS share set by
CUDA_MPS_ACTIVE_THREAD_PERCENTAGE / CUDA_MPS_PINNED_DEVICE_MEM_LIMIT):
- fp8 check: torch._scaled_mm against the dequantised math on one real layer (max relative error);
- weight-read time: one reduction kernel over every matrix a decode step reads (best of 5);
- decode step (CUDA graph replay, greedy argmax included) per batch and attended context,
  for --precision fp8 (fp8 x fp8) and bf16 (weights upcast per matmul: the old path), median
  of 20 replays; bytes read per step and that as GB/s;
- prefill: one packed pass of the engine's budget, tokens/s;
- the decode batch the memory left would hold (llm.plan_slots).
Every figure is one run on one device; the JSON names the device.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import torch

    from pytest_mig.workload import llm, roofline, serving
    from pytest_mig.workload.models import build
    from pytest_mig.workload.models.llama import Segment, quantize_rows

    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("--batches", default="16,64")
    p.add_argument("--contexts", default="640,1152")
    p.add_argument("--upcast", action="store_true", help="also time the bf16 upcast path")
    args = p.parse_args()
    device = torch.device("cuda")
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    model = build("llama3.1-8b", "full", 0, device).model
    torch.cuda.synchronize()
    res: dict = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                 "mps_thread_percentage": os.environ.get("CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"),
                 "mps_memory_limit": os.environ.get("CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"),
                 "effective_sms": llm.effective_sms(device), "build_s": round(time.perf_counter() - t0, 1)}
    band = roofline.slice_bandwidth(res["device"])
    res["gpu_bandwidth_gbs"] = band.gbs if band else None

    # fp8 check on a real layer
    lin = model.layers[0].gate_up
    x = torch.randn(16, lin.cin, device=device, dtype=torch.bfloat16)
    got = lin.fp8(x).float()
    q, sx = quantize_rows(x)
    want = (q.float() * sx) @ (lin.weight.float() * lin.scale[:, None]).t()
    res["fp8_max_rel_err"] = float(((got - want).abs().max() / want.abs().max()).item())
    res["fp8_scaled_mm"] = bool(llm.fp8_gemm_on(device))

    # weight-read time: one reduction over every matrix a decode step reads
    mats = [b for name, b in model.named_buffers() if b.dtype == torch.float8_e4m3fn and not name.startswith("embed.")]
    wbytes = model.matrix_bytes()

    def read_all() -> None:
        for m in mats:
            torch.sum(m.view(torch.bfloat16), dtype=torch.float32)

    read_all()
    times = []
    for _ in range(5):
        torch.cuda.synchronize()
        s = time.perf_counter()
        read_all()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - s)
    res["weight_bytes"] = wbytes
    res["weight_read_ms"] = round(min(times) * 1e3, 3)
    res["weight_read_gbs"] = round(wbytes / min(times) / 1e9, 1)

    steps: list[dict] = []
    for fp8 in ([True, False] if args.upcast else [True]):
        for batch in [int(b) for b in args.batches.split(",")]:
            engine = serving.Engine(model, batch, torch.bfloat16, fp8, 256, graphs=True)
            for context in [int(c) for c in args.contexts.split(",")]:
                bucket = engine.bucket(context)
                engine.positions.fill_(context - 1)
                engine.tokens.fill_(5)
                graph, out = engine._graph(bucket)
                graph.replay()
                torch.cuda.synchronize()
                ms = []
                for _ in range(20):
                    s = time.perf_counter()
                    graph.replay()
                    out.tolist()
                    ms.append((time.perf_counter() - s) * 1e3)
                step = statistics.median(ms)
                bytes_read = engine.weight_bytes + batch * bucket * engine.token_kv_bytes
                steps.append({"gemm": "fp8" if fp8 else "bf16-upcast", "batch": batch, "context": bucket,
                              "step_ms": round(step, 3), "bytes_per_step": bytes_read,
                              "gbs": round(bytes_read / step / 1e6, 1),
                              "step_over_weight_read": round(step / res["weight_read_ms"], 2),
                              "tokens_per_s": round(batch / step * 1e3, 1)})
                print(json.dumps(steps[-1]), flush=True)
            if fp8 and batch == int(args.batches.split(",")[0]):
                # prefill: one packed pass of 1024 tokens (4 prompts of 256), then of the engine's budget
                for n in (256, 1024, 2048):
                    segs = [Segment(i % batch, 0, 256) for i in range(n // 256)]
                    toks = torch.randint(1, 1000, (n,), device=device)
                    pos = torch.arange(256, device=device).repeat(n // 256)
                    with torch.inference_mode():
                        model.prefill(toks, pos, segs, engine.cache, torch.bfloat16, True)
                        torch.cuda.synchronize()
                        s = time.perf_counter()
                        model.prefill(toks, pos, segs, engine.cache, torch.bfloat16, True)
                        torch.cuda.synchronize()
                    took = time.perf_counter() - s
                    res[f"prefill_{n}_tokens_ms"] = round(took * 1e3, 2)
                    res[f"prefill_{n}_tokens_per_s"] = round(n / took, 1)
            del engine
            torch.cuda.empty_cache()
    res["steps"] = steps
    slots, record = llm.plan_slots(model, torch.bfloat16, device, None, "Offline")
    res["memory_sized_batch"] = record
    args.out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps({k: v for k, v in res.items() if k != "steps"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
