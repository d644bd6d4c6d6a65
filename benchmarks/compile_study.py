"""torch.compile study of the built-in harness: each benchmark's harness path against torch.compile's
modes, model-loop samples/s and time-to-ready (cold and warm compile cache), within a wall budget.

Run through `harness_throughput.py --compile-study` (see benchmarks/gpu_compile.sh). Method:
- Two worker processes per benchmark, a few at a time (compile is CPU work); every timed window
  holds an exclusive GPU lock (flock), so workers compile in parallel but time alone:
  worker A: harness path as today (eager kernels in harness CUDA graphs), then the harness compiled
            path `reduce-overhead` (inductor default kernels captured in harness graphs; timed also
            without graphs = torch.compile mode "default"), then plain torch.compile(mode="reduce-overhead");
  worker B: the harness path `max-autotune` (autotuned kernels in harness graphs; timed also without
            graphs = torch.compile mode "max-autotune-no-cudagraphs"), then torch.compile(mode="max-autotune").
  All on the model as the harness prepares it (bf16 / RNN-T fp16, channels-last), inputs resident on
  the GPU, the largest batch of harness_throughput.SWEEP; samples/s is the best of 3 windows.
- A worker past its cap (--compile-budget) or the study's deadline is killed; its unfinished parts
  read "not finished in N s". Cold time-to-ready of a harness part: its worker's setup (import,
  build, inputs) + compile + capture, empty cache, other workers compiling beside it.
- Then, one at a time, the real harness CLI (`python -m pytest_mig.workload`, Offline, 2 s)
  per benchmark with the winning mode and the warm cache the workers filled: warm `ready_s` from its
  harness_path.json and LoadGen's samples/s.
- Its ratio compares the harness with torch.compile of the harness's *own* model; what a
  practitioner would run instead (torchvision, transformers) is `peers.py`'s comparison. Timed
  windows hold the GPU lock, but the other workers' untimed GPU work (builds, captures,
  autotuning) runs meanwhile: its samples/s are lower bounds (peers.py times alone).
- The winner (the auto table, written to <out>/compile_modes.yaml): the fastest harness path, where a
  compiled mode must beat the uncompiled one by >= 3% (and max-autotune beat reduce-overhead by >= 3%).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

MARGIN = 1.03  # a compiled mode must be this much faster than the next cheaper choice
PARTS = {"A": ("harness", "harness+reduce-overhead", "torch:default", "torch:reduce-overhead"),
         "B": ("harness+max-autotune", "torch:max-autotune-no-cudagraphs", "torch:max-autotune")}
HARNESS_MODES = {"harness+reduce-overhead": "reduce-overhead", "harness+max-autotune": "max-autotune"}
# A harness mode's kernels timed without graphs are exactly this torch.compile mode.
WITHOUT_GRAPHS = {"reduce-overhead": "default", "max-autotune": "max-autotune-no-cudagraphs"}
WINDOWS = 3


def batch_for(name: str, device: str) -> int:
    """The largest batch of the throughput sweep (the best on the H100); models added since: the
    harness's CUDA default."""
    import harness_throughput as ht
    from pytest_mig.workload import slice_batch

    row = slice_batch.load_table().rows.get(name)
    sweep = ht.SWEEP.get(name) or ((row.full_gpu_batch if row else 8),)
    return sweep[-1] if device == "cuda" else min(sweep[0], 16)


def pool_for(name: str) -> int:
    import harness_throughput as ht

    return ht.POOL.get(name, 64)


def precision_for(name: str) -> str:
    import harness_throughput as ht

    return ht.PRECISION.get(name, "bf16")


def log(message: str) -> None:
    print(f"[compile-study] {message}", flush=True)


@contextlib.contextmanager
def gpu_lock(path: Path | None) -> Iterator[None]:
    """Exclusive use of the GPU for a timed window (no-op without a lock file)."""
    if path is None:
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --- worker (one process: one benchmark, parts A or B) ------------------------------------------

def emit(record: dict[str, Any]) -> None:
    print("RESULT " + json.dumps(record, default=str), flush=True)


def worker(group: str, name: str, batch: int, seconds: float, size: str, device_name: str,
           cache_base: Path, lock: Path | None, started: float) -> None:
    import torch

    import harness_throughput as ht
    from pytest_mig.workload import accel, compiled
    from pytest_mig.workload.models import build

    device = torch.device(device_name)
    cuda = device.type == "cuda"
    precision = precision_for(name)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def best_rate(step: Callable[[int], object]) -> dict[str, float]:
        with gpu_lock(lock), torch.inference_mode():
            runs = [ht.time_loop(step, batch, seconds / WINDOWS) for _ in range(WINDOWS)]
        return max(runs, key=lambda r: r["samples_per_s"])

    def first_calls(step: Callable[[int], object], calls: int = 3) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for k in range(calls):
                step(k)
        sync()
        return time.perf_counter() - t0

    def since_start() -> float:
        return round(time.time() - started, 2)

    model, loader, _ = build(name, size, 0, device)
    pool = [accel.resident_sample(loader.sample(i), device, torch.float32) for i in range(pool_for(name))]
    if group == "A":
        flops, _ = ht.count_flops(model, loader.batch(pool[:1]))
        emit({"part": "model", "flops_per_sample": flops, "built_s": since_start()})
    opts = accel.options_for(name, precision, cuda_graphs=cuda, start_from_device=True)
    fast = accel.prepare_model(model, name, opts, copy_first=False)
    raw = [loader.batch([pool[(k * batch + j) % len(pool)] for j in range(batch)]) for k in range(2)]
    data = [tuple(accel.prepare_input(t, opts) for t in b) for b in raw]
    del raw, pool
    setup_s = since_start()  # import, build, prepare, inputs: what every cold start pays before compiling
    cache = compiled.cache_dir(name, size, precision, batch, device, cache_base)
    compiled.use_cache(cache)
    accel.setup_cuda()

    def harness_part(part: str, mode: str | None) -> None:
        log(f"{name}: START {part} at {since_start()} s")
        compile_s = 0.0
        if mode is not None:
            compiled.compile_model(fast, mode)
            if not hasattr(type(fast), "COMPILE_METHODS"):  # whole-forward models: torch.compile without graphs
                compile_s = first_calls(lambda k: fast(*data[k % 2]), 1)
                rate = best_rate(lambda k: fast(*data[k % 2]))
                plain = "torch:" + WITHOUT_GRAPHS[mode]
                emit({"part": plain, "compile_s": round(compile_s, 2), **rate})
        record: dict[str, Any] = {"part": part, "mode": mode, "setup_s": setup_s, "compile_s": round(compile_s, 2)}
        t0 = time.perf_counter()
        if cuda:  # (a step-compiled model, RNN-T, compiles inside the capture)
            runner = accel.runner_for(fast, device)
            runner.capture(batch, data[0])
            sync()
            record["capture_s"] = round(time.perf_counter() - t0, 2)
            step: Callable[[int], object] = lambda k: runner(batch, data[k % 2])  # noqa: E731
        else:  # the CPU check: no graphs
            first_calls(lambda k: fast(*data[k % 2]), 1)
            record["capture_s"] = round(time.perf_counter() - t0, 2)
            step = lambda k: fast(*data[k % 2])  # noqa: E731
        # Cold time-to-ready of this path alone: a fresh process with an empty cache pays these.
        record["ready_s"] = round(setup_s + compile_s + record["capture_s"], 2)
        record.update(best_rate(step))
        if cuda:
            del runner, step
        emit(record)
        compiled.uncompile(fast)
        torch._dynamo.reset()
        if cuda:
            torch.cuda.empty_cache()

    def torch_part(mode: str) -> None:
        part = f"torch:{mode}"
        log(f"{name}: START {part} at {since_start()} s")
        compiled_model = torch.compile(fast, mode=mode, dynamic=False)
        compile_s = first_calls(lambda k: compiled_model(*data[k % 2]))
        rate = best_rate(lambda k: compiled_model(*data[k % 2]))
        emit({"part": part, "compile_s": round(compile_s, 2), **rate})
        torch._dynamo.reset()

    if group == "A":
        harness_part("harness", None)
        harness_part("harness+reduce-overhead", "reduce-overhead")
        torch_part("reduce-overhead")
    else:
        harness_part("harness+max-autotune", "max-autotune")
        torch_part("max-autotune")


# --- parent -------------------------------------------------------------------------------------

def run_job(argv: list[str], cap_s: float, env: dict[str, str]) -> tuple[list[dict[str, Any]], str, float]:
    """(RESULT records, how it ended, seconds) of one worker, killed (whole group) after `cap_s`."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, start_new_session=True)
    records: list[dict[str, Any]] = []
    tail: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RESULT "):
                records.append(json.loads(line[7:]))
            else:
                if line.startswith("[compile-study]"):
                    print(line, end="", flush=True)  # the worker's progress, in the study's log
                tail.append(line.rstrip())
                del tail[:-40]

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=max(1.0, cap_s))
        how = "ok" if code == 0 else f"exit {code}: " + " | ".join(tail[-6:])[-800:]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        how = f"not finished in {cap_s:.0f} s"
    reader.join(5)
    return records, how, time.perf_counter() - started


def choose(parts: dict[str, dict[str, Any]]) -> tuple[str, str]:
    """(winning harness mode or 'off', why) from one benchmark's parts."""
    def rate(part: str) -> float:
        return float(parts.get(part, {}).get("samples_per_s") or 0.0)

    base, ro, ma = rate("harness"), rate("harness+reduce-overhead"), rate("harness+max-autotune")
    if not base:
        return "off", "the uncompiled harness path was not measured"
    best, why = "off", f"uncompiled {base:,.1f}/s"
    if ro >= MARGIN * base:
        best, why = "reduce-overhead", f"reduce-overhead {ro:,.1f}/s vs uncompiled {base:,.1f}/s"
    floor = max(base, ro if best == "reduce-overhead" else 0.0)
    if ma >= MARGIN * floor:
        best, why = "max-autotune", f"max-autotune {ma:,.1f}/s vs {floor:,.1f}/s"
    return best, why


def ready_child(name: str, mode: str, batch: int, qps: float, size: str, device: str, cache_base: Path,
                work: Path, timeout_s: float, precision: str) -> dict[str, Any]:
    """The real harness CLI once (warm cache): its harness_path.json and LoadGen's samples/s."""
    from pytest_mig.results.summary import parse_summary

    log_dir = work / f"ready-{name}-{mode}"
    argv = [sys.executable, "-m", "pytest_mig.workload", "--benchmark", name, "--scenario", "Offline",
            "--mode", "performance", "--size", size, "--precision", precision, "--device", device,
            "--start-from-device", "--batch-size", str(batch), "--min-duration-ms", "2000",
            "--target-qps", f"{max(qps, 1.0):.0f}", "--log-dir", str(log_dir), "--compile", mode,
            "--compile-cache", str(cache_base)]
    started = time.perf_counter()
    try:
        proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                              start_new_session=True)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "error": f"not finished in {timeout_s:.0f} s"}
    out: dict[str, Any] = {"mode": mode, "exit_code": proc.returncode, "wall_s": round(time.perf_counter() - started, 2)}
    path = log_dir / "harness_path.json"
    if path.exists():
        out["path"] = json.loads(path.read_text())
        out["ready_s"] = out["path"].get("ready_s")
    if proc.returncode != 0:
        out["error"] = (proc.stdout + proc.stderr)[-1500:]
        return out
    summary = parse_summary(log_dir / "mlperf_log_summary.txt")
    out.update(loadgen_samples_per_s=summary.headline_value, valid=summary.valid)
    return out


def yaml_table(rows: list[dict[str, Any]], device: str, torch_version: str) -> str:
    lines = ["# Which torch.compile mode `compile=auto` runs per benchmark on CUDA (pytest_mig/workload/compiled.py).",
             "# Written by benchmarks/gpu_compile.sh (compile_study.py); copy to fixtures/compile_modes.yaml.",
             f"# Rule: a mode is listed where it beat the uncompiled harness path by >= {100 * (MARGIN - 1):.0f}%",
             "# (max-autotune: beat reduce-overhead by as much too); failed or unfinished compiles stay off.",
             f'measured_on: "{device}, torch {torch_version}, {time.strftime("%Y-%m-%d")}"',
             "modes:"]
    for r in rows:
        lines.append(f'  {r["benchmark"]}: "{r["auto"]}"  # {r["auto_reason"]}')
    return "\n".join(lines) + "\n"


def markdown(rows: list[dict[str, Any]], peak: float) -> str:
    def rate(r: dict[str, Any], part: str) -> str:
        p = r["parts"].get(part, {})
        if "samples_per_s" in p:
            took = float(p.get("compile_s") or 0) + (float(p.get("capture_s") or 0) if p.get("mode") else 0.0)
            extra = f" (compile {took:.0f} s)" if took >= 0.5 else ""
            return f"{p['samples_per_s']:,.1f}{extra}"
        return p.get("error", "-")

    head = ("| benchmark | batch | harness (uncompiled) | harness + reduce-overhead | harness + max-autotune | "
            "torch.compile default | torch.compile reduce-overhead | torch.compile max-autotune | "
            "torch.compile max-autotune-no-cudagraphs | auto | harness / best torch.compile of its own model | "
            "% of bf16 peak | "
            "ready cold / warm (s) |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r['benchmark']} | {r['batch']} | {rate(r, 'harness')} | {rate(r, 'harness+reduce-overhead')} | "
            f"{rate(r, 'harness+max-autotune')} | {rate(r, 'torch:default')} | {rate(r, 'torch:reduce-overhead')} | "
            f"{rate(r, 'torch:max-autotune')} | "
            f"{rate(r, 'torch:max-autotune-no-cudagraphs')} | {r['auto']} | {r.get('ratio_text', '-')} | "
            f"{r.get('peak_pct_text', '-')} | {r.get('ready_text', '-')} |")
    return "\n".join(lines) + f"\n\n(bf16 dense peak used: {peak:.1f} TFLOP/s)\n"


def study(names: list[str], out_dir: Path, *, size: str, device: str, seconds: float, budget_s: float,
          deadline_s: float, parallel: int, ready_reserve_s: float, peak_tflops: float,
          report: dict[str, Any], cache_base: Path | None = None) -> dict[str, Any]:
    """Run the workers and the warm-ready children; returns report['compile_study'] (also written).

    `cache_base` must start empty (cold figures); default a fresh temporary folder, kept out of
    `out_dir` because compiled artefacts run to hundreds of MB.
    """
    import tempfile

    t_start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "work"
    work.mkdir(exist_ok=True)
    cache_base = cache_base or Path(tempfile.mkdtemp(prefix="pytest-mig-compile-study-"))
    report["compile_cache_base"] = str(cache_base)
    lock = out_dir / "gpu.lock"
    env = dict(os.environ)
    env.setdefault("TORCHINDUCTOR_COMPILE_THREADS", str(max(1, (os.cpu_count() or 2) // max(1, parallel))))
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    batches = {n: batch_for(n, device) for n in names}
    jobs = [(g, n) for g in ("A", "B") for n in names]
    results: dict[str, dict[str, dict[str, Any]]] = {n: {} for n in names}
    jobs_log: list[dict[str, Any]] = []
    jobs_end = deadline_s - ready_reserve_s
    lock_jobs = threading.Lock()

    def run_next() -> None:
        while True:
            with lock_jobs:
                if not jobs:
                    return
                group, name = jobs.pop(0)
            left = jobs_end - (time.perf_counter() - t_start)
            if left < 20:
                for part in PARTS[group]:
                    results[name].setdefault(part, {"error": f"skipped: study deadline ({deadline_s:.0f} s)"})
                continue
            cap = min(budget_s, left)
            argv = [sys.executable, str(Path(__file__).resolve()), "--worker", group, "--benchmark", name,
                    "--batch", str(batches[name]), "--seconds", str(seconds), "--size", size, "--device", device,
                    "--cache-base", str(cache_base), "--lock", str(lock), "--started", str(time.time())]
            log(f"{name} {group}: start (cap {cap:.0f} s)")
            records, how, took = run_job(argv, cap, env)
            for rec in records:
                results[name][rec["part"]] = rec
            for part in PARTS[group]:
                results[name].setdefault(part, {"error": how if how != "ok" else "not measured"})
            jobs_log.append({"benchmark": name, "group": group, "ended": how, "wall_s": round(took, 1)})
            log(f"{name} {group}: {how} after {took:.0f} s")

    threads = [threading.Thread(target=run_next, daemon=True) for _ in range(max(1, parallel))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = []
    for name in names:
        parts = results[name]
        auto, why = choose(parts)
        row: dict[str, Any] = {"benchmark": name, "batch": batches[name], "precision": precision_for(name),
                               "parts": parts, "auto": auto, "auto_reason": why}
        flops = parts.get("model", {}).get("flops_per_sample")
        harness_best = max((float(parts.get(p, {}).get("samples_per_s") or 0) for p in
                            ("harness", *HARNESS_MODES)), default=0.0)
        chosen = {"off": "harness", **{m: p for p, m in HARNESS_MODES.items()}}[auto]
        chosen_rate = float(parts.get(chosen, {}).get("samples_per_s") or 0.0)
        torch_best = max((float(parts.get(p, {}).get("samples_per_s") or 0) for p in parts if p.startswith("torch:")),
                         default=0.0)
        if chosen_rate and torch_best:
            row["ratio"] = chosen_rate / torch_best
            row["ratio_text"] = f"{row['ratio']:.2f}x"
        if flops and chosen_rate:
            row["achieved_tflops"] = flops * chosen_rate / 1e12
            row["peak_pct_text"] = f"{100 * row['achieved_tflops'] / peak_tflops:.1f}%"
        row["harness_best_samples_per_s"] = harness_best
        row["cold_ready_s"] = parts.get(chosen, {}).get("ready_s")
        rows.append(row)
    (out_dir / "compile_modes.yaml").write_text(yaml_table(rows, report.get("device", device),
                                                           report.get("torch", "")))
    (out_dir / "compile_study.json").write_text(json.dumps({"rows": rows, "jobs": jobs_log, "partial": True},
                                                           indent=2, default=str) + "\n")  # if killed later
    for row in rows:  # warm time-to-ready through the real harness, one at a time
        left = deadline_s - (time.perf_counter() - t_start)
        if left < 15:
            row["warm"] = {"error": f"skipped: study deadline ({deadline_s:.0f} s)"}
            continue
        rate = float(row["parts"].get({"off": "harness", **{m: p for p, m in HARNESS_MODES.items()}}[row["auto"]],
                                      {}).get("samples_per_s") or 1.0)
        row["warm"] = ready_child(row["benchmark"], row["auto"], row["batch"], 1.05 * rate, size, device,
                                  cache_base, work, min(120.0, left), row["precision"])
        cold, warm = row.get("cold_ready_s"), row["warm"].get("ready_s")
        row["ready_text"] = f"{cold if cold is not None else '-'} / {warm if warm is not None else '-'}"
        log(f"{row['benchmark']}: warm ready {warm} s, LoadGen {row['warm'].get('loadgen_samples_per_s')}/s")
    result = {"rows": rows, "jobs": jobs_log, "settings": {
        "size": size, "device": device, "seconds": seconds, "budget_s": budget_s, "deadline_s": deadline_s,
        "parallel": parallel, "wall_s": round(time.perf_counter() - t_start, 1), "method": __doc__.strip()}}
    (out_dir / "compile_study.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
    (out_dir / "compile_study.md").write_text(markdown(rows, peak_tflops))
    with open(out_dir / "compile_study.csv", "w") as fh:
        cols = ["benchmark", "batch", "precision", *PARTS["A"], *PARTS["B"], "auto", "ratio", "achieved_tflops",
                "cold_ready_s", "warm_ready_s"]
        fh.write(",".join(cols) + "\n")
        for r in rows:
            vals = [r["benchmark"], r["batch"], r["precision"],
                    *[r["parts"].get(p, {}).get("samples_per_s", "") for p in (*PARTS["A"], *PARTS["B"])],
                    r["auto"], r.get("ratio", ""), r.get("achieved_tflops", ""), r.get("cold_ready_s", ""),
                    r.get("warm", {}).get("ready_s", "")]
            fh.write(",".join(str(v) for v in vals) + "\n")
    return result


def worker_main(argv: list[str]) -> int:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--worker", choices=("A", "B"), required=True)
    p.add_argument("--benchmark", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--size", default="full")
    p.add_argument("--device", default="cuda")
    p.add_argument("--cache-base", type=Path, required=True)
    p.add_argument("--lock", type=Path)
    p.add_argument("--started", type=float, default=time.time())
    a = p.parse_args(argv)
    worker(a.worker, a.benchmark, a.batch, a.seconds, a.size, a.device, a.cache_base, a.lock, a.started)
    return 0


if __name__ == "__main__":
    sys.exit(worker_main(sys.argv[1:]))
