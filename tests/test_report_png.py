"""The hand-written PNG encoder and the timeline chart: valid files (signature, IHDR, CRCs,
IDAT that inflates to the right size), pixels where they were drawn, a non-blank chart."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_mig.report.chart import render, write_chart
from pytest_mig.report.png import BLACK, WHITE, Canvas, encode_png, text_width
from pytest_mig.report.timeline import Timeline


@dataclass
class Decoded:
    width: int
    height: int
    pixels: bytes  # RGB rows without filter bytes
    colors: set[tuple[int, int, int]]

    def at(self, x: int, y: int) -> tuple[int, int, int]:
        i = (y * self.width + x) * 3
        return self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]


def decode_png(data: bytes) -> Decoded:
    """Strict decoder for what encode_png writes: checks every CRC and the IHDR fields."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF, f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + length
    assert pos == len(data)
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, color, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, color, comp, filt, interlace) == (8, 2, 0, 0, 0)
    assert width > 0 and height > 0
    raw = zlib.decompress(b"".join(b for k, b in chunks if k == b"IDAT"))
    stride = width * 3
    assert len(raw) == height * (stride + 1)
    rows = []
    for y in range(height):
        assert raw[y * (stride + 1)] == 0  # filter type None
        rows.append(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    pixels = b"".join(rows)
    colors = {tuple(pixels[i:i + 3]) for i in range(0, len(pixels), 3)}
    return Decoded(width, height, pixels, colors)


def test_encoded_canvas_decodes_to_the_same_pixels():
    c = Canvas(7, 5)
    c.set(0, 0, (255, 0, 0))
    c.rect(2, 1, 3, 2, (0, 0, 255))
    c.set(99, 99, BLACK)  # clipped, no error
    d = decode_png(encode_png(c))
    assert (d.width, d.height) == (7, 5)
    assert d.at(0, 0) == (255, 0, 0) and d.at(1, 0) == WHITE
    assert [d.at(x, y) for x, y in ((2, 1), (3, 1), (2, 2), (3, 2))] == [(0, 0, 255)] * 4
    assert d.at(4, 2) == WHITE and d.colors == {WHITE, (255, 0, 0), (0, 0, 255)}


def test_line_and_text_draw_where_expected():
    c = Canvas(40, 12)
    c.line(0, 0, 9, 9, BLACK)
    assert all(c.get(i, i) == BLACK for i in range(10)) and c.get(9, 0) == WHITE
    end = c.text(20, 2, "1", BLACK)
    assert end == 20 + text_width("1")
    # glyph "1": row 0 is 0x04 -> only the middle column of five is set
    assert [c.get(20 + col, 2) == BLACK for col in range(5)] == [False, False, True, False, False]
    assert c.get(20 + 2, 2 + 6) == BLACK  # bottom bar 0x0E


def test_canvas_size_must_be_positive():
    with pytest.raises(ValueError, match="canvas size must be positive, got 0x3"):
        Canvas(0, 3)


def _timeline(simulated: bool) -> Timeline:
    t = [i * 0.5 for i in range(21)]
    return Timeline(
        t=t, series={"gpu_util_pct": [None] * 21, "gpu_mem_used_mib": [1024.0 * (i % 5) for i in range(21)],
                     "power_w": [100 + 10 * i for i in range(21)], "sm_clock_mhz": [1980.0] * 21,
                     "temp_c": [40 + i / 2 for i in range(21)],
                     "mig_main_mem_used_mib": [512.0 * i for i in range(21)]},
        phases={"backgrounds_ready": 2.0, "main_start": 3.0, "main_end": 8.0},
        meta={"source": "SIMULATED (made up)" if simulated else "measured (real NVML)",
              "gpu": "0 H100-SXM5-80GB"})


def test_chart_marks_phases_and_draws_series(tmp_path: Path):
    tl = _timeline(simulated=True)
    assert tl.mig_labels() == ["main"]
    path = write_chart(tl, tmp_path / "timeline.png")
    d = decode_png(path.read_bytes())
    assert (d.width, d.height) == (960, 46 + 5 * (96 + 18) + 34)
    assert (30, 90, 220) in d.colors and (200, 40, 40) in d.colors and (0, 150, 70) in d.colors
    # the main_start line is dashed across the power panel at x = 78 + 3/10 * 862
    x = 78 + round(3.0 / 10.0 * 862)
    column = [d.at(x, y) for y in range(46 + 2 * 114 + 13, 46 + 2 * 114 + 13 + 80)]
    assert column.count((30, 90, 220)) > 30
    assert sum(1 for i in range(0, len(d.pixels), 3) if d.pixels[i:i + 3] != bytes(WHITE)) > 5000


def test_chart_of_measured_values_has_black_title_and_no_red_banner():
    c = render(_timeline(simulated=False))
    title_row = {c.get(x, y) for x in range(78, 500) for y in range(6, 20)}
    assert BLACK in title_row and (200, 40, 40) not in title_row
