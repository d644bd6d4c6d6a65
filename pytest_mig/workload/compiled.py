"""torch.compile in the built-in harness: which mode a benchmark runs, its compile cache, the wrapper.

Rules:
- A setting is `off`, `auto` or a mode: `default`, `reduce-overhead`, `max-autotune`,
  `max-autotune-no-cudagraphs`; per benchmark through the harness option `compile.<benchmark>`.
- `auto` on CUDA reads the committed table `fixtures/compile_modes.yaml` (filled by
  `benchmarks/gpu_compile.sh`): the mode that won on the GPU, or `off` where the harness's own
  path won or compile failed. A benchmark the table does not list (a model added later) is `off`
  under `auto`; every model can still be compiled by naming a mode. On the CPU `auto` is `off`
  (inductor's C++ compile is slow there); a named mode compiles on the CPU too.
- Generic over models: a model compiles the methods named in its `COMPILE_METHODS` attribute
  (default `("forward",)`; RNN-T names its greedy-decoder step), replaced on the instance only,
  so `uncompile` restores the model as built.
- CUDA graphs stay the harness's: a mode's inductor settings are used without
  `triton.cudagraphs`, and the harness captures the compiled code in its own graphs (one pool,
  any thread may replay). So `reduce-overhead` runs inductor's default kernels in harness graphs
  and `max-autotune` runs autotuned kernels in harness graphs; `max-autotune-no-cudagraphs` runs
  the same kernels as `max-autotune` (both without graphs under `--no-cuda-graphs`).
- Shapes are static (`dynamic=False`): one compile per batch size the predictor runs.
- The compile cache is inductor's own (FX graph, AOT autograd, autotune, Triton kernels) in
  `<base>/<key>`, key = torch version / device / benchmark-size-precision-batch; base is
  `--compile-cache`, else $PYTEST_MIG_COMPILE_CACHE, else $XDG_CACHE_HOME (~/.cache)/pytest-mig/inductor.
  Workloads of a run and later runs with the same key share it (inductor writes atomically).
- Bottom layer of the harness: imports torch and pytest_mig.datadir only.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from pytest_mig.datadir import data_path

MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
SETTINGS = ("off", "auto", *MODES)
TABLE = "compile_modes.yaml"
CACHE_ENV = "PYTEST_MIG_COMPILE_CACHE"
# Each batch size is its own static-shape compile; dynamo's default limit (8) would silently
# drop to eager beyond it.
RECOMPILE_LIMIT = 64


@dataclass(frozen=True)
class CompileChoice:
    """What the harness runs for one benchmark: `mode` None means uncompiled (today's path)."""

    mode: str | None
    requested: str  # the setting as given (auto, off or a mode)
    reason: str  # where the choice came from, or why compile is off

    def describe(self) -> str:
        return f"compile={self.mode or 'off'} (requested {self.requested}: {self.reason})"


def check_setting(value: str) -> str:
    """A valid setting, or ValueError naming the allowed ones."""
    if value not in SETTINGS:
        raise ValueError(f"compile={value!r}: unknown setting; choose one of {', '.join(SETTINGS)}")
    return value


def load_table(path: Path | None = None) -> dict[str, str]:
    """benchmark -> mode or 'off', from the packaged (or --mig-data) table."""
    path = path or data_path(TABLE)
    raw = yaml.safe_load(path.read_text()) or {}
    modes = raw.get("modes") or {}
    if not isinstance(modes, dict):
        raise ValueError(f"{path}: 'modes' must map benchmark -> mode; fix the file")
    table: dict[str, str] = {}
    for bench, mode in modes.items():
        value = "off" if mode in (False, None) else str(mode)  # YAML 1.1 reads a bare off as False
        if value not in ("off", *MODES):
            raise ValueError(f"{path}: {bench}: unknown mode {value!r}; use off or one of {', '.join(MODES)}")
        table[str(bench)] = value
    return table


def choose(setting: str, benchmark: str, device: torch.device, table: dict[str, str] | None = None) -> CompileChoice:
    """The mode to run: the setting itself, or under `auto` the table's entry (CUDA only)."""
    check_setting(setting)
    if setting == "off":
        return CompileChoice(None, setting, "asked")
    if setting != "auto":
        return CompileChoice(setting, setting, "asked")
    if device.type != "cuda":
        return CompileChoice(None, setting, f"auto is off on {device.type} (slow compile there)")
    table = load_table() if table is None else table
    mode = table.get(benchmark)
    if mode is None:
        return CompileChoice(None, setting, f"{benchmark} not in {TABLE}")
    if mode == "off":
        return CompileChoice(None, setting, f"{TABLE}: the uncompiled path won or compile failed")
    return CompileChoice(mode, setting, f"{TABLE}")


def inductor_options(mode: str) -> dict[str, Any]:
    """The mode's inductor settings without inductor's own CUDA graphs (the harness captures)."""
    from torch._inductor import list_mode_options

    options = dict(list_mode_options(mode))
    options.pop("triton.cudagraphs", None)
    return options


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+_-]+", "_", text).strip("_") or "unknown"


def device_key(device: torch.device) -> str:
    if device.type == "cuda":
        return slug(torch.cuda.get_device_name(device))
    return device.type


def default_cache_base() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "pytest-mig" / "inductor"


def cache_dir(benchmark: str, size: str, precision: str, batch: int, device: torch.device,
              base: Path | None = None) -> Path:
    """The folder one model's compiled artefacts live in (created)."""
    path = ((base or default_cache_base()) / f"torch-{slug(torch.__version__)}" / device_key(device)
            / f"{slug(benchmark)}-{size}-{precision}-b{batch}")
    path.mkdir(parents=True, exist_ok=True)
    return path


def use_cache(path: Path) -> None:
    """Point inductor (and Triton, through inductor) at `path`, caches on; before the first compile."""
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    os.environ["TORCHINDUCTOR_FX_GRAPH_CACHE"] = "1"
    os.environ["TORCHINDUCTOR_AUTOGRAD_CACHE"] = "1"
    os.environ.pop("TRITON_CACHE_DIR", None)  # inductor then keeps Triton's kernels under `path`
    import torch._functorch.config as functorch_config
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    inductor_config.autotune_local_cache = True
    functorch_config.enable_autograd_cache = True


def compile_methods(model: torch.nn.Module) -> tuple[str, ...]:
    return tuple(getattr(model, "COMPILE_METHODS", ("forward",)))


def compile_model(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """Replace the model's compile methods (on the instance) by static-shape compiled ones."""
    import torch._dynamo.config as dynamo_config

    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), RECOMPILE_LIMIT))
    options = inductor_options(mode)
    for name in compile_methods(model):
        method = getattr(type(model), name).__get__(model)
        setattr(model, name, torch.compile(method, dynamic=False, options=options or None))
    return model


def uncompile(model: torch.nn.Module) -> torch.nn.Module:
    """Undo `compile_model`: the class's methods again (the weights were never touched)."""
    for name in compile_methods(model):
        model.__dict__.pop(name, None)
    return model
