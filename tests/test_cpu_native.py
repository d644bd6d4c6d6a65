"""cpu_native: the CPU's native precision read from /proc/cpuinfo text, and how `auto` resolves."""
from __future__ import annotations

import pytest

from pytest_mig import cpu_native


def cpuinfo(model: str, *flags: str) -> str:
    return (f"processor\t: 0\nmodel name\t: {model}\nflags\t\t: fpu sse sse2 {' '.join(flags)}\n\n"
            f"processor\t: 1\nmodel name\t: {model}\nflags\t\t: fpu\n")


@pytest.mark.parametrize("flags, want", [
    (("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_bf16"), "fp16"),  # Sapphire Rapids
    (("avx2", "amx_fp16"), "fp16"),
    (("avx2", "avx512f", "avx512_bf16"), "bf16"),  # Zen 4, Cooper Lake
    (("avx2", "amx_bf16"), "bf16"),
    (("avx2", "avx512f", "avx512_vnni"), "fp32"),  # Ice Lake: VNNI is int8 only
    (("avx", "avx2", "fma"), "fp32"),
])
def test_native_precision_follows_the_flags(flags, want):
    native = cpu_native.from_cpuinfo(cpuinfo("Some CPU", *flags))
    assert native.precision == want
    assert native.cpu_model == "Some CPU"
    assert native.reason.startswith("Some CPU")
    assert native.as_record()["precision"] == want


def test_avx2_reason_says_what_is_missing_and_why_fp32():
    native = cpu_native.from_cpuinfo(cpuinfo("AMD EPYC", "avx", "avx2"))
    assert native.precision == "fp32"
    assert "has AVX2 but no AVX512_FP16/AMX_FP16 or AVX512_BF16/AMX_BF16" in native.reason
    assert native.as_record()["native_flags"] == []


def test_unreadable_cpuinfo_is_fp32():
    native = cpu_native.from_cpuinfo("")
    assert native.precision == "fp32" and "no x86 flags" in native.reason


def test_auto_resolves_named_cuda_and_accuracy_exceptions():
    bf16 = cpu_native.from_cpuinfo(cpuinfo("X", "avx512_bf16"))
    fp16 = cpu_native.from_cpuinfo(cpuinfo("X", "avx512_fp16"))
    assert cpu_native.resolve("int4", "cpu", "resnet50", bf16)[0] == "int4"  # named: as named
    assert cpu_native.resolve("auto", "cuda", "resnet50", bf16)[0] == "fp16"
    assert cpu_native.resolve("auto", "cpu", "resnet50", bf16) == ("bf16", f"auto: {bf16.reason}")
    precision, why = cpu_native.resolve("auto", "cpu", "ssd-resnet34", bf16)
    assert precision == "fp32" and "loses its accuracy target in bf16" in why
    assert cpu_native.resolve("auto", "cpu", "ssd-resnet34", fp16)[0] == "fp16"
    assert cpu_native.resolve("auto", "cpu", "rnnt", fp16)[0] == "fp32"
    assert cpu_native.resolve("auto", "cpu", "ssd-mobilenet", bf16)[0] == "fp32"
    assert cpu_native.resolve("auto", "cpu", "bert", bf16)[0] == "bf16"


def test_probe_reads_this_machine_once():
    assert cpu_native.probe() is cpu_native.probe()
    assert cpu_native.probe().precision in ("fp16", "bf16", "fp32")
