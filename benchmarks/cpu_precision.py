"""Which precision runs fastest on this CPU: the measurement behind `precision=auto` (cpu_native.py).

One thread (the main's share on a 2-core machine), median of timed repeats after a warm-up:

- ops: a 512x512 matrix product and a 3x3 convolution (64 channels, 56x56, batch 8) in fp32,
  fp16 and bf16 (torch's own kernels, as autocast runs them) and int8 through PyTorch's x86
  (fbgemm) quantized engine: quantized::linear / quantized::conv2d with prepacked weights,
  the kernels MLPerf's CPU submissions run;
- models: the built-in harness's tiny models (batch 8, the Server batch) in fp32, fp16 and
  bf16 autocast, and int8 where PyTorch's eager API quantizes them without rewriting the model
  (dynamic int8 of Linear/LSTM layers: bert, rnnt, dlrm), and the conv nets through FX graph
  static quantization (x86 engine), with its prepare+calibrate+convert time; a model that FX
  cannot trace (the SSD detection heads) says so.

    python benchmarks/cpu_precision.py --json benchmarks/results/cpu_precision_avx2.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_mig.cpu_native import probe  # noqa: E402

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def timed(fn, budget_s: float = 1.0, min_runs: int = 3) -> float:
    """Median seconds per call after two warm-up calls."""
    fn()
    fn()
    runs: list[float] = []
    start = time.perf_counter()
    while len(runs) < min_runs or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
        if len(runs) >= 200:
            break
    return statistics.median(runs)


def op_figures() -> dict[str, dict[str, float]]:
    torch.manual_seed(0)
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    flop = 2 * 512 ** 3
    mm = {name: flop / timed(lambda x=a.to(dt), y=b.to(dt): x @ y) / 1e9 for name, dt in DTYPES.items()}
    qa = torch.quantize_per_tensor(a, 0.05, 64, torch.quint8)
    packed = torch.ops.quantized.linear_prepack(torch.quantize_per_tensor(b.t().contiguous(), 0.05, 0, torch.qint8),
                                                None)
    mm["int8"] = flop / timed(lambda: torch.ops.quantized.linear(qa, packed, 0.1, 64)) / 1e9
    x, w = torch.randn(8, 64, 56, 56), torch.randn(64, 64, 3, 3)
    conv = {name: 1.0 / timed(lambda x=x.to(dt), w=w.to(dt): torch.nn.functional.conv2d(x, w, padding=1))
            for name, dt in DTYPES.items()}
    qconv = torch.ao.nn.quantized.Conv2d(64, 64, 3, padding=1)
    qconv.set_weight_bias(torch.quantize_per_tensor(w, 0.01, 0, torch.qint8), None)
    qx = torch.quantize_per_tensor(x, 0.05, 64, torch.quint8)
    conv["int8"] = 1.0 / timed(lambda: qconv(qx))
    return {"matmul_512_gflops": {k: round(v, 2) for k, v in mm.items()},
            "conv3x3_64ch_56px_b8_per_s": {k: round(v, 2) for k, v in conv.items()}}


def _fx_int8(model: nn.Module, inputs, batch: int) -> dict[str, float | str]:
    """Static int8 (x86 engine) through FX graph quantization: samples/s and the seconds to
    prepare, calibrate on the batch and convert (start-up time a workload would pay)."""
    import copy

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    t0 = time.perf_counter()
    try:
        prepared = prepare_fx(copy.deepcopy(model), get_default_qconfig_mapping("x86"), example_inputs=tuple(inputs))
        prepared(*inputs)
        quantized = convert_fx(prepared)
    except Exception as exc:  # noqa: BLE001 - the figure says why there is none
        return {"int8": f"fails: FX graph quantization: {type(exc).__name__}: {str(exc).splitlines()[0][:90]}"}
    return {"int8": round(batch / timed(lambda: quantized(*inputs)), 2),
            "int8_prepare_s": round(time.perf_counter() - t0, 1)}


def model_figures(benchmarks: list[str], batch: int) -> dict[str, dict[str, float | str]]:
    from pytest_mig.workload.models import autocast, build

    out: dict[str, dict[str, float | str]] = {}
    cpu = torch.device("cpu")
    for name in benchmarks:
        built = build(name, "tiny", 0, cpu)
        idx = list(range(batch))
        built.make_inputs.load(idx)
        inputs = built.make_inputs(idx)
        row: dict[str, float | str] = {}
        with torch.inference_mode():
            for prec in ("fp32", "fp16", "bf16"):
                def step(p=prec):
                    with autocast(p, cpu):
                        built.model(*inputs)
                try:
                    row[prec] = round(batch / timed(step), 2)
                except RuntimeError as exc:  # rnnt's LSTM has no fp16 oneDNN primitive on the CPU
                    row[prec] = f"fails: {str(exc).splitlines()[0][:100]}"
            layers = {m for m in built.model.modules() if isinstance(m, (nn.Linear, nn.LSTM))}
            convs = [m for m in built.model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d))]
            if layers and not convs:
                q = torch.ao.quantization.quantize_dynamic(built.model, {nn.Linear, nn.LSTM}, dtype=torch.qint8)
                try:
                    row["int8"] = round(batch / timed(lambda: q(*inputs)), 2)
                except (RuntimeError, AttributeError, TypeError) as exc:
                    row["int8"] = f"fails: {str(exc).splitlines()[0][:100]}"
            else:
                row.update(_fx_int8(built.model, inputs, batch))
        out[name] = row
        print(f"{name}: samples/s {row}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--models", default="ssd-resnet34,ssd-mobilenet,resnet50,bert,rnnt,dlrm,3d-unet")
    a = ap.parse_args()
    torch.set_num_threads(1)
    native = probe()
    ops = op_figures()
    print(json.dumps(ops), flush=True)
    models = model_figures([m for m in a.models.split(",") if m], a.batch)
    out = {"measured": "median seconds per call after 2 warm-ups, >=1 s of repeats, 1 thread; "
                       "figures: GFLOP/s (matmul), calls/s (conv), samples/s (models, batch %d)" % a.batch,
           "cpu": native.cpu_model, "native": {"precision": native.precision, "reason": native.reason,
                                               "flags": sorted(native.flags)},
           "torch": torch.__version__, "capability": torch.backends.cpu.get_cpu_capability(),
           "quantized_engine": torch.backends.quantized.engine, "python": platform.python_version(),
           "ops": ops, "models": models}
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "models"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
