"""The precision a CPU computes natively: what `precision=auto` of the built-in harness runs there.

Rules:
- Read once per process from /proc/cpuinfo's flags (standard library only: the plugin's run
  header and the workload child both call `probe`, so both name the same choice).
- fp16 where the CPU has fp16 arithmetic (AVX512-FP16 or AMX-FP16); else bf16 where it has
  bf16 arithmetic (AVX512-BF16 or AMX-BF16); else fp32 (AVX2 and older x86, other CPUs). On an
  AVX2 CPU torch's fp16/bf16 kernels are emulated (the tiny models 2.5-20x slower than fp32).
  int8 through PyTorch's x86/fbgemm kernels is 1.8-2.3x fp32 per operation there, but not per
  model: dynamic int8 ran bert and dlrm 0.8-0.9x fp32, static int8 (FX) ran resnet50 1.18x and
  3d-unet 0.25x, and FX cannot trace the SSD models; so fp32
  (benchmarks/cpu_precision.py, benchmarks/results/cpu_precision_avx2.json).
- A benchmark whose seeded (untrained) model loses its accuracy target at the native precision
  (LOSES_ACCURACY) runs fp32 under `auto`, with the reason said.
- `auto` on CUDA is fp16 (the GPU path's tuned dtype); a named precision is always run as named
  (a suite's `precision`, `--mig-harness-opt precision=...`): auto is the default, not a rule.
"""
from __future__ import annotations

import functools
import platform
from dataclasses import dataclass
from pathlib import Path

AUTO = "auto"
CUDA_AUTO = "fp16"
FALLBACK = "fp32"
# (precision, the cpuinfo flags that each give it natively), best first.
NATIVE_FLAGS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fp16", ("avx512_fp16", "amx_fp16")),
    ("bf16", ("avx512_bf16", "amx_bf16")),
)
# Seeded tiny models that fall below 99 % of their FP32 reference in that precision: `auto` runs
# them in fp32. bf16, Offline accuracy on 64 samples (2026-12-07): ssd-mobilenet 93.8 % mAP,
# retinanet 95.7 %; resnet50 100 %, bert F1 100 %, dlrm AUC 99.99 % hold; ssd-resnet34, 3d-unet
# and rnnt per the suites' comments. fp16: rnnt (the suites' comment), retinanet 98.8 %.
LOSES_ACCURACY: dict[str, tuple[str, ...]] = {
    "bf16": ("ssd-resnet34", "ssd-mobilenet", "3d-unet", "rnnt", "retinanet"),
    "fp16": ("rnnt", "retinanet"),
}
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class Native:
    """The CPU's native precision and why, with what it was read from."""

    precision: str
    reason: str
    cpu_model: str
    flags: frozenset[str]

    def as_record(self) -> dict:
        return {"precision": self.precision, "reason": self.reason, "cpu": self.cpu_model,
                "native_flags": sorted(f for _, names in NATIVE_FLAGS for f in names if f in self.flags)}


def _read(text: str) -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def from_cpuinfo(text: str) -> Native:
    """The choice for a CPU described by /proc/cpuinfo's text."""
    model, flags = _read(text)
    model = model or platform.processor() or "unknown CPU"
    for precision, names in NATIVE_FLAGS:
        have = [n for n in names if n in flags]
        if have:
            return Native(precision, f"{model} computes {precision} natively ({', '.join(have)})",
                          model, flags)
    if not flags:
        return Native(FALLBACK, f"{model}: no x86 flags readable in {CPUINFO}; fp32 is safe everywhere",
                      model, flags)
    simd = "AVX2" if "avx2" in flags else ("AVX" if "avx" in flags else "SSE")
    wanted = " or ".join("/".join(n.upper() for n in names) for _, names in NATIVE_FLAGS)
    return Native(FALLBACK, f"{model} has {simd} but no {wanted}: fp16/bf16 would be emulated "
                            "(2.5-20x slower than fp32 here), int8 (x86/fbgemm) gains too little per model",
                  model, flags)


@functools.lru_cache(maxsize=1)
def probe() -> Native:
    """This machine's choice (read once)."""
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        text = ""
    return from_cpuinfo(text)


def resolve(precision: str, device_type: str, benchmark: str,
            native: Native | None = None) -> tuple[str, str]:
    """(precision to run, reason): a named precision as named; `auto` as the rules say."""
    if precision != AUTO:
        return precision, "named (suite or --mig-harness-opt precision)"
    if device_type == "cuda":
        return CUDA_AUTO, f"auto on CUDA: {CUDA_AUTO}"
    native = native or probe()
    if benchmark in LOSES_ACCURACY.get(native.precision, ()):
        return FALLBACK, (f"auto: {native.reason}, but {benchmark}'s seeded model loses its "
                          f"accuracy target in {native.precision}: fp32")
    return native.precision, f"auto: {native.reason}"
