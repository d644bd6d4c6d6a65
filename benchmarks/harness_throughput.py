"""Built-in harness throughput on one GPU: our optimised path vs a plain eager FP32 loop, per benchmark.

For each of the seven benchmarks at --size full this times the model loop directly (inputs already
in GPU memory; no LoadGen, no post-processing), so the model is what is measured:
  optimised: weights cast to bf16/fp16, channels-last conv nets, one CUDA graph per batch size,
             samples resident on the device in the compute dtype; best batch of a small sweep;
  eager fp32: the same model and weights as built, same batch size, no graphs, PyTorch defaults.
It counts model FLOPs per sample (torch.utils.flop_counter on one sample, LSTMs analytically),
reports achieved FLOP/s against the bf16 dense peak (datasheet and an 8192^3 matmul measured here),
runs one real LoadGen Offline test for resnet50 through the harness CLI to show its overhead,
and optionally checks accuracy mode of the GPU path against the FP32 reference.

    python benchmarks/harness_throughput.py --out benchmarks/results [--only resnet50,bert]
Writes h100_harness_throughput.json and .csv (named after --name) and prints a markdown table.

With --compile-study it instead measures the torch.compile columns and cold/warm time-to-ready
(compile_study.py: harness path vs torch.compile's modes, the auto table) within --deadline seconds:
    python benchmarks/harness_throughput.py --compile-study --out "$OUT"   (benchmarks/gpu_compile.sh)
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_mig.workload import accel  # noqa: E402
from pytest_mig.workload.models import BENCHMARKS, build  # noqa: E402

PEAK_BF16_TFLOPS = 989.4  # H100 SXM dense bf16 (datasheet, without sparsity)
# LSTMs run in fp16: cuDNN's fp16 RNN kernels are the mature ones; everything else in bf16.
PRECISION = {b: "bf16" for b in BENCHMARKS} | {"rnnt": "fp16"}
SWEEP = {"resnet50": (128, 256, 512, 1024), "ssd-resnet34": (8, 16, 32), "ssd-mobilenet": (128, 256, 512),
         "bert": (64, 128, 256), "rnnt": (1024, 2048, 4096), "dlrm": (64, 256, 1024), "3d-unet": (2, 4, 8)}
POOL = {"resnet50": 256, "ssd-resnet34": 24, "ssd-mobilenet": 256, "bert": 512, "rnnt": 256, "dlrm": 512,
        "3d-unet": 6}  # distinct samples batches are drawn from
# NVIDIA's published H100-SXM-80GB MLPerf Inference Offline results, per GPU (8-GPU system / 8),
# approximate; TensorRT with INT8/FP8/FP16 engines and real trained weights.
PUBLISHED = {
    "resnet50": (88_000, "~v3.0/v3.1, INT8"),
    "bert": (7_800, "~v3.0/v3.1, bert-99"),
    "3d-unet": (6.8, "~v3.0/v3.1, 3d-unet-99"),
    "rnnt": (23_000, "~v3.0/v3.1"),
    "dlrm": (54_000, "v3.0, DLRM v1 (dlrm-99); a sample is up to 700 user-item pairs, ours 270"),
    "ssd-resnet34": (None, "n/a: replaced by RetinaNet from v2.1"),
    "ssd-mobilenet": (None, "n/a: edge suite only"),
}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def log(message: str) -> None:
    print(f"[harness-throughput] {message}", flush=True)


def lstm_flops(model: nn.Module) -> tuple[list[torch.utils.hooks.RemovableHandle], dict[str, float]]:
    """Forward hooks adding up each LSTM's multiply-adds by module name, for when FlopCounterMode
    sees only a fused RNN kernel (cuDNN, oneDNN) rather than the matmuls inside."""
    totals: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.LSTM):
            def hook(mod: nn.LSTM, args: tuple, out: Any, name: str = name) -> None:
                x = args[0]
                batch, steps = (x.shape[0], x.shape[1]) if mod.batch_first else (x.shape[1], x.shape[0])
                width = mod.input_size
                for _ in range(mod.num_layers):
                    totals[name] = totals.get(name, 0.0) + 2.0 * batch * steps * 4 * mod.hidden_size * (
                        width + mod.hidden_size)
                    width = mod.hidden_size
            handles.append(module.register_forward_hook(hook))
    return handles, totals


def count_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple[float, dict[str, float]]:
    """FLOPs of one forward on `inputs` (one sample) and the counted ops, by name.

    An LSTM adds its analytic count only where the counter saw no FLOPs inside that module
    (whether the matmuls are visible depends on the backend the LSTM dispatched to).
    """
    handles, lstm = lstm_flops(model)
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        for h in handles:
            h.remove()
    counts = counter.get_flop_counts()
    ops = {str(op): float(n) for op, n in counts.get("Global", {}).items()}
    seen = {key.split(".", 1)[1] for key, per_op in counts.items() if "." in key and sum(per_op.values()) > 0}
    unseen = sum(flops for name, flops in lstm.items() if name not in seen)
    if unseen:
        ops["lstm (analytic)"] = unseen
    return float(counter.get_total_flops()) + unseen, ops


def time_loop(step: Callable[[int], object], batch: int, seconds: float, min_iters: int = 3) -> dict[str, float]:
    """Samples/s of `step(k)` (k alternates input batches) after two warm-up calls; synchronised timing."""
    for k in range(2):
        step(k)
    sync()
    iters, started = 0, time.perf_counter()
    while iters < min_iters or time.perf_counter() - started < seconds:
        step(iters)
        iters += 1
        if iters % 4 == 0:
            sync()
    sync()
    elapsed = time.perf_counter() - started
    return {"samples_per_s": iters * batch / elapsed, "iters": iters, "batch_ms": 1e3 * elapsed / iters}


def matmul_tflops() -> float:
    """Measured bf16 dense rate: 8192^3 matmul on random data, mean of 10 after warm-up."""
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        a @ b
    torch.cuda.synchronize()
    return 10 * 2 * 8192 ** 3 / (time.perf_counter() - started) / 1e12


def measure(name: str, seconds: float, sweep: tuple[int, ...], size: str = "full",
            device: torch.device = torch.device("cuda")) -> dict[str, Any]:
    t0 = time.perf_counter()
    model, loader, _ = build(name, size, 0, device)
    built_s = time.perf_counter() - t0
    samples = [loader.sample(i) for i in range(POOL[name])]
    pool = [accel.resident_sample(s, device, torch.float32) for s in samples]
    del samples

    def batches(size: int) -> list[tuple[torch.Tensor, ...]]:
        return [loader.batch([pool[(k * size + j) % len(pool)] for j in range(size)]) for k in range(2)]

    flops, ops = count_flops(model, loader.batch(pool[:1]))
    precision = PRECISION[name]
    opts = accel.options_for(name, precision, cuda_graphs=device.type == "cuda", start_from_device=True)
    fast = accel.prepare_model(model, name, opts, copy_first=True)
    out: dict[str, Any] = {"benchmark": name, "size": size, "precision": precision,
                           "optimised": opts.describe(), "build_s": round(built_s, 2),
                           "params": sum(p.numel() for p in model.parameters()),
                           "flops_per_sample": flops, "counted_ops": ops, "sweep": {}}
    accel.setup_cuda()
    for size in sweep:
        try:
            data = [tuple(accel.prepare_input(t, opts) for t in b) for b in batches(size)]
            if opts.cuda_graphs:
                runner = accel.runner_for(fast, device)
                t1 = time.perf_counter()
                runner.capture(size, data[0])
                capture_s = time.perf_counter() - t1
                result = time_loop(lambda k: runner(size, data[k % 2]), size, seconds)
                result["capture_s"] = round(capture_s, 2)
                del runner
            else:
                with torch.inference_mode():
                    result = time_loop(lambda k: fast(*data[k % 2]), size, seconds)
            out["sweep"][size] = result
            log(f"{name} optimised batch {size}: {result['samples_per_s']:.1f} samples/s")
        except torch.OutOfMemoryError as exc:
            out["sweep"][size] = {"error": f"out of memory: {str(exc).splitlines()[0]}"}
            log(f"{name} optimised batch {size}: out of memory")
        finally:
            data = []
            torch.cuda.empty_cache()
    ok = {b: r for b, r in out["sweep"].items() if "samples_per_s" in r}
    best = max(ok, key=lambda b: ok[b]["samples_per_s"])
    out["batch_size"] = best
    out["optimised_samples_per_s"] = ok[best]["samples_per_s"]
    del fast
    torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = False  # plain PyTorch defaults for the baseline
    data = batches(best)
    with torch.inference_mode():
        base = time_loop(lambda k: model(*data[k % 2]), best, seconds)
    out["eager_fp32_samples_per_s"] = base["samples_per_s"]
    out["eager_fp32"] = base
    out["speedup"] = out["optimised_samples_per_s"] / base["samples_per_s"]
    out["achieved_tflops"] = flops * out["optimised_samples_per_s"] / 1e12
    out["eager_fp32_tflops"] = flops * base["samples_per_s"] / 1e12
    out["published_per_gpu"], out["published_note"] = PUBLISHED[name]
    log(f"{name}: best batch {best}, optimised {out['optimised_samples_per_s']:.1f}/s, eager fp32 "
        f"{base['samples_per_s']:.1f}/s, {flops / 1e9:.2f} GFLOP/sample, {out['achieved_tflops']:.1f} TFLOP/s")
    del model, data, pool
    torch.cuda.empty_cache()
    return out


def loadgen_resnet50(batch: int, expected_qps: float, out_dir: Path, seconds: float) -> dict[str, Any]:
    """One real LoadGen Offline run through the harness CLI (its own process), same settings."""
    from pytest_mig.results.summary import parse_summary

    log_dir = out_dir / "loadgen-resnet50"
    argv = [sys.executable, "-m", "pytest_mig.workload", "--benchmark", "resnet50", "--scenario",
            "Offline", "--mode", "performance", "--size", "full", "--precision", "bf16", "--device", "cuda",
            "--start-from-device", "--batch-size", str(batch), "--min-duration-ms", str(int(seconds * 1000)),
            "--target-qps", f"{expected_qps:.0f}", "--log-dir", str(log_dir)]
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[pytest-mig loadgen]")]
    result: dict[str, Any] = {"argv": argv[1:], "exit_code": proc.returncode, "wall_s": time.perf_counter() - started,
                              "harness_lines": lines}
    if proc.returncode != 0:
        result["stderr_tail"] = proc.stderr[-3000:]
        return result
    summary = parse_summary(log_dir / "mlperf_log_summary.txt")
    result.update(result_valid=summary.valid, samples_per_s=summary.headline_value,
                  summary=(log_dir / "mlperf_log_summary.txt").read_text())
    return result


def accuracy_check(out_dir: Path, names: list[str]) -> list[dict[str, Any]]:
    """Accuracy mode of the GPU path (bf16 cast, graphs, channels-last, resident) vs the FP32 reference."""
    from pytest_mig.workload import sut

    rows = []
    for name in names:
        cfg = sut.RunConfig(benchmark=name, scenario="Offline", mode="accuracy", log_dir=out_dir / f"acc-{name}",
                            min_duration_ms=0, sample_count=64, size="small", precision=PRECISION[name],
                            device="cuda", start_from_device=True, batch_size=16)
        try:
            outcome = sut.run(cfg)
            assert outcome.accuracy is not None
            rows.append({"benchmark": name, "size": "small", "precision": PRECISION[name],
                         "metric": outcome.accuracy.metric, "value": outcome.accuracy.value,
                         "fields": outcome.accuracy.fields})
        except Exception as exc:  # noqa: BLE001  (record and go on: one failure must not hide the others)
            rows.append({"benchmark": name, "error": f"{type(exc).__name__}: {exc}",
                         "traceback": traceback.format_exc()[-2000:]})
        torch.cuda.empty_cache()
    return rows


def table(report: dict[str, Any]) -> str:
    peak, measured = PEAK_BF16_TFLOPS, report.get("matmul_bf16_tflops") or float("nan")
    head = ("| benchmark | precision | batch | optimised samples/s | eager FP32 samples/s | speedup | "
            "GFLOP/sample | TFLOP/s | % of 989 TFLOP/s | % of measured matmul | NVIDIA published (per GPU) |")
    lines = [head, "|" + "---|" * 11]
    for r in report["results"]:
        if "error" in r:
            lines.append(f"| {r['benchmark']} | error: {r['error'][:80]} |" + " |" * 9)
            continue
        pub = r["published_per_gpu"]
        pub_text = f"~{pub:,.1f} ({r['published_note']})" if pub is not None else r["published_note"]
        if pub is not None and pub >= 100:
            pub_text = f"~{pub:,.0f} ({r['published_note']})"
        lines.append(
            f"| {r['benchmark']} | {r['precision']} | {r['batch_size']} | {r['optimised_samples_per_s']:,.1f} | "
            f"{r['eager_fp32_samples_per_s']:,.1f} | {r['speedup']:.2f}x | {r['flops_per_sample'] / 1e9:,.2f} | "
            f"{r['achieved_tflops']:,.1f} | {100 * r['achieved_tflops'] / peak:.1f}% | "
            f"{100 * r['achieved_tflops'] / measured:.1f}% | {pub_text} |")
    return "\n".join(lines)


def write(report: dict[str, Any], out_dir: Path, stem: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    fields = ["benchmark", "precision", "batch_size", "optimised_samples_per_s", "eager_fp32_samples_per_s",
              "speedup", "flops_per_sample", "achieved_tflops", "eager_fp32_tflops", "published_per_gpu",
              "published_note", "optimised"]
    with open(out_dir / f"{stem}.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in report["results"]:
            if "error" not in r:
                writer.writerow(r)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", default="h100_harness_throughput", help="file stem of the JSON and CSV")
    p.add_argument("--work", type=Path, help="LoadGen log folders (default: <out>/work)")
    p.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks")
    p.add_argument("--seconds", type=float, default=1.0, help="timed seconds per measurement")
    p.add_argument("--loadgen-seconds", type=float, default=8.0, help="min duration of the LoadGen run (0: skip)")
    p.add_argument("--accuracy-check", action="store_true", help="also run accuracy mode of the GPU path")
    p.add_argument("--merge", action="store_true", help="keep earlier results of benchmarks not re-run")
    p.add_argument("--dry-run-cpu", action="store_true",
                   help="check the script on the CPU: tiny models, one batch size, no graphs, no LoadGen")
    study = p.add_argument_group("torch.compile study (compile_study.py)")
    study.add_argument("--compile-study", action="store_true",
                       help="measure harness vs torch.compile modes and cold/warm time-to-ready instead")
    study.add_argument("--compile-budget", type=float, default=240.0,
                       help="seconds one worker (one benchmark, one group of modes) may take before it is killed")
    study.add_argument("--deadline", type=float, default=480.0, help="seconds for the whole study")
    study.add_argument("--ready-reserve", type=float, default=150.0,
                       help="seconds of --deadline kept for the warm time-to-ready runs at the end")
    study.add_argument("--parallel", type=int, default=5, help="workers at once (their timed windows take turns)")
    study.add_argument("--compile-cache-dir", type=Path,
                       help="empty folder for the compile cache (default: a fresh temporary folder)")
    args = p.parse_args(argv)
    if args.compile_study:
        return compile_study_main(args)
    if args.dry_run_cpu:
        report = {"results": [measure(n, 0.05, SWEEP[n][:1], "tiny", torch.device("cpu"))
                              for n in args.only.split(",")], "matmul_bf16_tflops": float("nan")}
        print(table(report))
        return 0
    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    props = torch.cuda.get_device_properties(0)
    report: dict[str, Any] = {
        "device": props.name, "sms": props.multi_processor_count, "torch": torch.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(), "host_cpus": os.cpu_count(),
        "peak_bf16_tflops_datasheet": PEAK_BF16_TFLOPS, "method": __doc__.strip().splitlines()[2:9],
        "results": []}
    previous = args.out / f"{args.name}.json"
    if args.merge and previous.exists():
        old = json.loads(previous.read_text())
        report["results"] = [r for r in old.get("results", []) if r.get("benchmark") not in names]
        for key in ("loadgen_resnet50", "accuracy_check", "matmul_bf16_tflops_readings"):
            if key in old:
                report[key] = old[key]
    readings = report.setdefault("matmul_bf16_tflops_readings", [])
    readings.append(matmul_tflops())
    report["matmul_bf16_tflops"] = readings[0]  # the first run's, which most rows were measured beside
    log(f"{props.name}: 8192^3 bf16 matmul {readings[-1]:.1f} TFLOP/s")
    work = args.work or args.out / "work"
    for name in names:
        try:
            report["results"].append(measure(name, args.seconds, SWEEP[name]))
        except Exception as exc:  # noqa: BLE001  (record and go on to the next benchmark)
            report["results"].append({"benchmark": name, "error": f"{type(exc).__name__}: {exc}",
                                      "traceback": traceback.format_exc()[-3000:]})
            log(f"{name} failed: {type(exc).__name__}: {exc}")
        torch.cuda.empty_cache()
        write(report, args.out, args.name)
    order = {b: i for i, b in enumerate(BENCHMARKS)}
    report["results"].sort(key=lambda r: order[r["benchmark"]])
    resnet = next((r for r in report["results"] if r["benchmark"] == "resnet50" and "error" not in r), None)
    if args.loadgen_seconds > 0 and resnet is not None and "resnet50" in names:
        report["loadgen_resnet50"] = loadgen_resnet50(
            resnet["batch_size"], 1.05 * resnet["optimised_samples_per_s"], work, args.loadgen_seconds)
        lg_rate = report["loadgen_resnet50"].get("samples_per_s")
        if lg_rate:
            report["loadgen_resnet50"]["fraction_of_model_loop"] = lg_rate / resnet["optimised_samples_per_s"]
    write(report, args.out, args.name)
    print(table(report))
    if "loadgen_resnet50" in report:
        r = report["loadgen_resnet50"]
        print(f"\nLoadGen Offline resnet50 through the harness: {r.get('samples_per_s')} samples/s "
              f"(valid={r.get('result_valid')}, exit {r['exit_code']}, "
              f"{100 * r.get('fraction_of_model_loop', 0):.1f}% of the model loop)")
    if args.accuracy_check:  # last: a failing SUT worker ends the process, after the results are saved
        threads = torch.get_num_threads()
        checked = accuracy_check(work, names)
        report["accuracy_check"] = [r for r in report.get("accuracy_check", []) if r["benchmark"] not in names]
        report["accuracy_check"] = sorted(report["accuracy_check"] + checked,
                                          key=lambda r: BENCHMARKS.index(r["benchmark"]))
        torch.set_num_threads(threads)
        write(report, args.out, args.name)
    for row in report.get("accuracy_check", []):
        print(f"accuracy {row['benchmark']}: {row.get('metric')} {row.get('value')} {row.get('error', '')}")
    return 0


def compile_study_main(args: argparse.Namespace) -> int:
    """The --compile-study path: report header, matmul peak, then compile_study.study()."""
    import compile_study

    names = [n for n in args.only.split(",") if n]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"error: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}",
              file=sys.stderr)
        return 2
    cpu = args.dry_run_cpu
    if not cpu and not torch.cuda.is_available():
        print("error: the compile study needs a CUDA GPU (or --dry-run-cpu to check it)", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"torch": torch.__version__, "host_cpus": os.cpu_count(),
                              "peak_bf16_tflops_datasheet": PEAK_BF16_TFLOPS}
    if not cpu:
        props = torch.cuda.get_device_properties(0)
        report.update(device=props.name, sms=props.multi_processor_count, cuda=torch.version.cuda,
                      matmul_bf16_tflops=matmul_tflops())
        log(f"{props.name}: 8192^3 bf16 matmul {report['matmul_bf16_tflops']:.1f} TFLOP/s")
        torch.cuda.empty_cache()
    else:
        report["device"] = "cpu (dry run)"
    result = compile_study.study(
        names, args.out, size="tiny" if cpu else "full", device="cpu" if cpu else "cuda",
        seconds=0.3 if cpu else max(args.seconds, 1.5), budget_s=args.compile_budget, deadline_s=args.deadline,
        parallel=args.parallel, ready_reserve_s=args.ready_reserve, peak_tflops=PEAK_BF16_TFLOPS, report=report,
        cache_base=args.compile_cache_dir)
    report["compile_study"] = result
    (args.out / "compile_study_report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(compile_study.markdown(result["rows"], PEAK_BF16_TFLOPS))
    log(f"study took {result['settings']['wall_s']} s; files in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
