"""RNN-T speech recognition: LSTM encoder with time stacking, LSTM prediction net, joint net, greedy decode."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import datasets
from .common import Family, Inputs, Sample

# MLPerf RNN-T's 28 characters; index 28 is the blank (also the prediction net's start symbol).
LABELS = (" ",) + tuple(chr(ord("a") + i) for i in range(26)) + ("'",)
SPACE, BLANK = 0, len(LABELS)
BLANK_SHARE, SPACE_SHARE = 0.7, 0.2  # how often a calibrated joint emits blank / space (letters)
FIT_ROUNDS = 3
LSTM_INPUT_GAIN = 3.0


@dataclass(frozen=True)
class RNNTConfig:
    features: int  # stacked filterbank features per frame (240 real)
    enc_hidden: int
    pred_hidden: int
    joint_hidden: int
    min_frames: int
    max_frames: int
    max_symbols: int  # symbols the greedy decoder may emit per encoder step
    pre_layers: int = 2
    post_layers: int = 3
    pred_layers: int = 2
    stack: int = 2  # encoder time-stacking factor between the two LSTM stacks


CONFIGS = {
    "tiny": RNNTConfig(features=32, enc_hidden=64, pred_hidden=32, joint_hidden=64,
                       min_frames=16, max_frames=32, max_symbols=4),
    "small": RNNTConfig(features=240, enc_hidden=256, pred_hidden=128, joint_hidden=256,
                        min_frames=100, max_frames=200, max_symbols=8),
    "full": RNNTConfig(features=240, enc_hidden=1024, pred_hidden=320, joint_hidden=512,
                       min_frames=100, max_frames=500, max_symbols=30),
}

State = tuple[torch.Tensor, torch.Tensor]


def run_lstm(lstm: nn.LSTM, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
    """LSTM call that falls back to fp32 where oneDNN has no fp16 LSTM (CPU autocast fp16).

    Inputs and state follow the weights' dtype, so a model cast to bf16/fp16 runs too; outputs are fp32.
    """
    if (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.float16):
        with torch.autocast("cpu", enabled=False):
            out, (h, c) = lstm(x.float(), state)
    else:
        dtype = lstm.weight_ih_l0.dtype
        if state is not None:
            state = (state[0].to(dtype), state[1].to(dtype))
        out, (h, c) = lstm(x.to(dtype), state)
    return out.float(), (h.float(), c.float())


def lstm_step(lstm: nn.LSTM, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, State]:
    """One time step of a multi-layer LSTM from its weights: plain matmuls, so a CUDA graph can hold it.

    `x` is [B, in]; `h`, `c` are [layers, B, hidden]; PyTorch's gate order (input, forget, cell, output).
    """
    hs, cs = [], []
    inp = x
    for layer in range(lstm.num_layers):
        gates = (F.linear(inp, getattr(lstm, f"weight_ih_l{layer}"), getattr(lstm, f"bias_ih_l{layer}"))
                 + F.linear(h[layer], getattr(lstm, f"weight_hh_l{layer}"), getattr(lstm, f"bias_hh_l{layer}")))
        i, f, g, o = gates.chunk(4, dim=1)
        c_new = torch.sigmoid(f) * c[layer] + torch.sigmoid(i) * torch.tanh(g)
        inp = torch.sigmoid(o) * torch.tanh(c_new)
        hs.append(inp)
        cs.append(c_new)
    return inp, (torch.stack(hs), torch.stack(cs))


class RNNT(nn.Module):
    # What `harness.compiled` compiles: the fixed-shape greedy step the GPU path graphs
    # (the encoder's sequence length changes with every batch).
    COMPILE_METHODS = ("decode_step",)

    def __init__(self, cfg: RNNTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.pre = nn.LSTM(cfg.features, cfg.enc_hidden, cfg.pre_layers, batch_first=True)
        self.post = nn.LSTM(cfg.enc_hidden * cfg.stack, cfg.enc_hidden, cfg.post_layers, batch_first=True)
        self.embed = nn.Embedding(len(LABELS) + 1, cfg.pred_hidden)
        self.pred = nn.LSTM(cfg.pred_hidden, cfg.pred_hidden, cfg.pred_layers, batch_first=True)
        self.joint_enc = nn.Linear(cfg.enc_hidden, cfg.joint_hidden)
        self.joint_pred = nn.Linear(cfg.pred_hidden, cfg.joint_hidden)
        self.joint_out = nn.Linear(cfg.joint_hidden, len(LABELS) + 1)
        for lstm in (self.pre, self.post, self.pred):
            for name, param in lstm.named_parameters():
                # PyTorch's default init makes a 5-layer stack forget its input; keep the signal alive.
                if name.startswith("weight_ih"):
                    nn.init.normal_(param, std=LSTM_INPUT_GAIN / math.sqrt(param.shape[1]))
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(param)

    def encode(self, features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, _ = run_lstm(self.pre, features)
        batch, frames, hidden = x.shape
        steps = frames // self.cfg.stack
        lengths = lengths // self.cfg.stack
        x = x[:, :steps * self.cfg.stack].reshape(batch, steps, hidden * self.cfg.stack)
        # Zero the padding so per-sample statistics never see other samples' lengths.
        x = x * (torch.arange(steps, device=x.device)[None, :] < lengths[:, None])[..., None]
        x, _ = run_lstm(self.post, x)
        return x, lengths

    def predict(self, tokens: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        out, state = run_lstm(self.pred, self.embed(tokens)[:, None, :], state)
        return out[:, 0], state

    def joint(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        dtype = self.joint_enc.weight.dtype  # the decoder keeps fp32 state; a cast model computes in its own
        return self.joint_out(torch.relu(self.joint_enc(f.to(dtype)) + self.joint_pred(g.to(dtype)))).float()

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Greedy transcripts as label ids [B, steps], -1 where nothing was emitted."""
        enc, enc_len = self.encode(features, lengths)
        return self.greedy(enc, enc_len)

    def decode_step(self, f: torch.Tensor, g: torch.Tensor, h: torch.Tensor, c: torch.Tensor,
                    active: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One symbol of `greedy` for the whole batch with fixed shapes and no host sync (graph-capturable).

        Returns (token or -1 per sample, emitted mask, and g, h, c advanced where a sample emitted).
        """
        best = torch.argmax(self.joint(f, g), dim=1)
        emit = active & (best != BLANK)
        dtype = self.pred.weight_ih_l0.dtype
        x = self.embed(torch.where(emit, best, BLANK)).to(dtype)
        g_new, (h_new, c_new) = lstm_step(self.pred, x, h.to(dtype), c.to(dtype))
        keep = emit[None, :, None]
        return (torch.where(emit, best, -1), emit, torch.where(emit[:, None], g_new.float(), g),
                torch.where(keep, h_new.float(), h), torch.where(keep, c_new.float(), c))

    def greedy(self, enc: torch.Tensor, enc_len: torch.Tensor,
               visited: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> torch.Tensor:
        """Batched greedy RNN-T decoding; `visited` collects the (f, g) pairs the joint saw."""
        batch = enc.shape[0]
        tokens = torch.full((batch,), BLANK, dtype=torch.long, device=enc.device)
        g, state = self.predict(tokens, None)
        emitted: list[torch.Tensor] = []
        for t in range(enc.shape[1]):
            active = t < enc_len
            f = enc[:, t]
            for _ in range(self.cfg.max_symbols):
                if visited is not None:
                    visited.append((f[active], g[active]))
                best = torch.argmax(self.joint(f, g), dim=1)
                emit = active & (best != BLANK)
                if not bool(emit.any()):
                    break
                emitted.append(torch.where(emit, best, -1))
                g_new, (h_new, c_new) = self.predict(torch.where(emit, best, BLANK), state)
                g = torch.where(emit[:, None], g_new, g)
                keep = emit[None, :, None]
                state = (torch.where(keep, h_new, state[0]), torch.where(keep, c_new, state[1]))
                active = emit
        if not emitted:
            return torch.full((batch, 0), -1, dtype=torch.long, device=enc.device)
        return torch.stack(emitted, dim=1)


def transcript(tokens: np.ndarray) -> str:
    return "".join(LABELS[int(t)] for t in tokens if 0 <= int(t) < len(LABELS))


def _fit(model: nn.Module, batches: Sequence[Inputs]) -> None:
    """Balance the joint's labels, then bias blank and space so words come out of plausible length.

    Decoding changes the prediction state the joint sees, so the biases are refitted
    on the states a few rounds of greedy decoding actually visit.
    """
    assert isinstance(model, RNNT)
    out = model.joint_out
    with torch.no_grad():
        encoded = [model.encode(features, lengths) for features, lengths in batches]
        for round_ in range(FIT_ROUNDS):
            visited: list[tuple[torch.Tensor, torch.Tensor]] = []
            for enc, enc_len in encoded:
                model.greedy(enc, enc_len, visited)
            f = torch.cat([v[0] for v in visited])
            g = torch.cat([v[1] for v in visited])
            if round_ == 0:  # standardise every label's logit so no single letter dominates
                logits = model.joint(f, g)
                mean, std = logits.mean(dim=0), logits.std(dim=0).clamp(min=1e-6)
                out.weight /= std[:, None]
                out.bias.copy_((out.bias - mean) / std)
            logits = model.joint(f, g)
            # A bias b on a label makes it win where b exceeds its gap to the best rival.
            best_letter = logits[:, 1:BLANK].max(dim=1).values
            space_bias = torch.quantile(best_letter - logits[:, SPACE], SPACE_SHARE)
            best_symbol = torch.maximum(best_letter, logits[:, SPACE] + space_bias)
            out.bias[SPACE] += space_bias
            out.bias[BLANK] += torch.quantile(best_symbol - logits[:, BLANK], BLANK_SHARE)


def _make_sample(gen: torch.Generator, cfg: RNNTConfig) -> Sample:
    return datasets.speech(gen, cfg.min_frames, cfg.max_frames, cfg.features)


def _collate(samples: Sequence[Sample]) -> Inputs:
    lengths = torch.stack([s["length"] for s in samples])
    first = samples[0]["features"]  # on the GPU already when samples are device-resident
    padded = torch.zeros(len(samples), int(lengths.max()), first.shape[1], dtype=first.dtype, device=first.device)
    for i, s in enumerate(samples):
        padded[i, :s["features"].shape[0]] = s["features"]
    return padded, lengths


def _postprocess(tokens: torch.Tensor, cfg: RNNTConfig) -> list[np.ndarray]:
    rows = tokens.cpu().numpy()
    return [np.ascontiguousarray(row[row >= 0], dtype="int32") for row in rows]


RNNT_FAMILY = Family(name="rnnt", configs=CONFIGS, construct=RNNT, make_sample=_make_sample, collate=_collate,
                     postprocess=_postprocess, fit=_fit, output_dtype="int32", output_row=1)
