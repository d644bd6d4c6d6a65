"""Reading PNGs back in tests: size from the IHDR, every colour via matplotlib's reader."""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

# Imported once, at collection: an in-process pytester run restores sys.modules afterwards,
# and numpy's C core cannot be loaded a second time in one process.
try:
    import matplotlib.image as mpimg
    import numpy as np
except ImportError:  # the plots extra is absent: tests that read PNGs skip
    mpimg = np = None


@dataclass
class Decoded:
    width: int
    height: int
    pixels: bytes  # RGB rows
    colors: set[tuple[int, int, int]]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def read_png(path: Path) -> Decoded:
    """Any PNG (RGB/RGBA, any filter) via matplotlib; alpha dropped."""
    import pytest
    if mpimg is None:
        pytest.skip("matplotlib not installed: pip install -e '.[plots]'")
    img = mpimg.imread(str(path))
    rgb = (np.asarray(img)[:, :, :3] * 255).round().astype("uint8")
    h, w = rgb.shape[:2]
    colors = {tuple(int(c) for c in px) for px in np.unique(rgb.reshape(-1, 3), axis=0)}
    return Decoded(w, h, rgb.tobytes(), colors)


def has_color_near(colors: set[tuple[int, int, int]], want: tuple[int, int, int],
                   tol: int = 3) -> bool:
    return any(all(abs(a - b) <= tol for a, b in zip(c, want)) for c in colors)
