"""matplotlib, optional: the one place that imports it (Agg backend, no display needed).

Rules: pictures are an extra (`pip install 'pytest-mig[plots]'`); without matplotlib every
caller gets `None` from `pyplot()` and says `MISSING` instead of drawing, and the run goes on.
Files are written atomically (a temporary name, then a rename). Latencies are shown in ms.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_mig.io import atomic_path

MISSING = "matplotlib not installed: pip install 'pytest-mig[plots]' to draw pictures"
PHASE_COLORS = {"backgrounds_started": "#969696", "backgrounds_ready": "#009646",
                "main_start": "#1e5adc", "main_end": "#c82828"}
PHASE_TEXT = {"backgrounds_started": "backgrounds started",
              "backgrounds_ready": "backgrounds ready", "main_start": "main start",
              "main_end": "main end"}
SIMULATED_COLOR = "#c82828"


def pyplot() -> Any | None:
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig: Any, path: Path, dpi: int = 100) -> Path:
    """Write `fig` to `path` atomically and close it."""
    plt = pyplot()
    path = Path(path)
    try:
        with atomic_path(path, mode=0o666, fsync=False) as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path
