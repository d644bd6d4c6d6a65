"""Is there an NVIDIA driver library at all? A cheap answer that imports neither pynvml nor
the simulator, so collection on a machine without a GPU needs no NVML start-up.

Rule: this only says "no driver for sure"; a loadable library still goes through the real
backend choice (gpu/backend.py), which may yet fall back to the simulator.
"""
from __future__ import annotations

import ctypes
import functools
import sys

# pynvml's own library name on Linux; Windows has nvml.dll (always probed the full way).
NVML_LIBRARY = "libnvidia-ml.so.1"


@functools.lru_cache(maxsize=1)
def nvml_library_loads() -> bool:
    """True when the NVML library can be loaded (a driver may answer), or off Linux."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return False
    return True
