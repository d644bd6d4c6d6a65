"""Choose the NVML a run talks to: the real driver, or the simulator when there is none."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pynvml

from pytest_mig.errors import ConfigError, GpuError
from pytest_mig.gpu.layouts import Layout, resolve_layout
from pytest_mig.gpu.nvml import Nvml, error_name
from pytest_mig.gpu.sim.simulator import SimulatedNvml

CHOICES = ("auto", "nvml", "simulated")
DEFAULT_SIM_LAYOUT = "hetero-1g"  # fixtures/layouts/pytest-mig.yaml: smallest slices per model
# nvmlInit errors that mean "no NVIDIA driver here" (auto then simulates).
NO_DRIVER = (pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED)


def _open_real() -> tuple[Nvml | None, pynvml.NVMLError | None]:
    """(Nvml on the driver, None) or (None, the nvmlInit error)."""
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return None, exc
    return Nvml(pynvml, initialised=True), None


def open_simulated(state_path: Path, sim_model: str = "A100-SXM4-80GB", sim_gpus: int = 1,
                   sim_layout: str | Mapping[str, int] | Layout | None = None) -> Nvml:
    """The simulator on `state_path` (created with that model, count and layout if missing).

    `sim_layout`: None for the default layout, a mig-parted spec 'NAME' or 'FILE:NAME',
    a Layout, or a {profile: count} mapping ({} for a GPU without instances).
    """
    layout: Any = sim_layout
    if sim_layout is None:
        layout = resolve_layout(DEFAULT_SIM_LAYOUT)
    elif isinstance(sim_layout, str):
        layout = resolve_layout(sim_layout)
    return Nvml(SimulatedNvml(state_path, model=sim_model, gpu_count=sim_gpus, layout=layout))


def open_backend(choice: str, state_path: Path, sim_model: str = "A100-SXM4-80GB",
                 sim_gpus: int = 1,
                 sim_layout: str | Mapping[str, int] | Layout | None = None) -> Nvml:
    """auto: the real NVML when a driver answers with GPUs, else the simulator."""
    if choice not in CHOICES:
        raise ConfigError(f"--mig-backend={choice}: choose one of {', '.join(CHOICES)}")
    if choice in ("auto", "nvml"):
        nvml, exc = _open_real()
        if nvml is not None:
            if choice == "nvml" or nvml.gpus():
                return nvml
            nvml.close()  # a driver without GPUs: nothing to run on, simulate
        elif choice == "nvml" or exc.value not in NO_DRIVER:
            raise GpuError(
                f"--mig-backend={choice}: the NVIDIA driver did not start (nvmlInit: "
                f"{error_name(exc)}). Fix the driver (nvidia-smi must work), or run without "
                "hardware with --mig-backend=simulated")
    return open_simulated(Path(state_path), sim_model, sim_gpus, sim_layout)
