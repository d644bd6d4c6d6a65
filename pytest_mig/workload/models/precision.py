"""Reduced precision: autocast for bf16/fp16, fake-quantised weights and activations for int8/int4.

int8 is W8A8; int4 is W4A8 (4-bit weights, 8-bit activations), the usual int4 inference recipe.
"""
from __future__ import annotations

import contextlib
import copy
from typing import ContextManager

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4", "fp8")
LLM_ONLY = ("fp8",)  # fp8 x fp8 matmuls: the LLM's (workload/llm.py); other models refuse it
INT_BITS = {"int8": (8, 8), "int4": (4, 8)}  # (weight bits, activation bits)
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
QUANTISED_LAYERS = (nn.Conv2d, nn.Conv3d, nn.ConvTranspose3d, nn.Linear)


def fake_quantize(tensor: torch.Tensor, bits: int, per_row: bool) -> torch.Tensor:
    """Symmetric round-to-nearest onto 2^(bits-1)-1 levels each side; one scale per row or per tensor."""
    levels = 2 ** (bits - 1) - 1
    if per_row and tensor.dim() > 1:
        amax = tensor.detach().abs().reshape(tensor.shape[0], -1).amax(dim=1)
        amax = amax.reshape(-1, *([1] * (tensor.dim() - 1)))
    else:
        amax = tensor.detach().abs().amax()
    scale = amax.clamp(min=1e-12) / levels
    return torch.clamp(torch.round(tensor / scale), -levels, levels) * scale


def _quantize_input_hook(bits: int):
    def hook(module: nn.Module, args: tuple) -> tuple:
        if args and isinstance(args[0], torch.Tensor) and args[0].is_floating_point():
            # One scale per sample (dim 0): results never depend on what else is in the batch.
            return (fake_quantize(args[0], bits, per_row=True), *args[1:])
        return args
    return hook


def quantize_model(model: nn.Module, weight_bits: int, activation_bits: int) -> nn.Module:
    """Quantise weights (per output channel / table row) and layer inputs (per sample) in place."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (*QUANTISED_LAYERS, nn.Embedding)):
                module.weight.copy_(fake_quantize(module.weight, weight_bits, per_row=True))
            elif isinstance(module, nn.LSTM):
                for name, param in module.named_parameters():
                    if name.startswith("weight"):
                        param.copy_(fake_quantize(param, weight_bits, per_row=True))
            if isinstance(module, (*QUANTISED_LAYERS, nn.LSTM)):
                module.register_forward_pre_hook(_quantize_input_hook(activation_bits))
    return model


def apply_precision(model: nn.Module, precision: str, keep_reference: bool) -> tuple[nn.Module, nn.Module | None]:
    """(model to run, FP32 reference or None). Integer precisions work on a copy when a reference is kept."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision in LLM_ONLY:
        raise ValueError(f"precision {precision} is the LLM's (fp8 x fp8 matmuls); this model runs "
                         f"{', '.join(p for p in PRECISIONS if p not in LLM_ONLY)}")
    reference = model if keep_reference else None
    if precision in INT_BITS:
        target = copy.deepcopy(model) if keep_reference else model
        return quantize_model(target, *INT_BITS[precision]), reference
    return model, reference


def autocast(precision: str, device: torch.device) -> ContextManager:
    """Mixed-precision context for bf16/fp16; a no-op for fp32 and the (fake) integer precisions."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
