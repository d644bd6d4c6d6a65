"""The timeline chart: stacked panels (utilisation, memory, power, SM clock, temperature)
with the run's phases as dashed vertical lines, drawn with report/png.py.
"""
from __future__ import annotations

import math
from pathlib import Path

from pytest_mig.report.png import (BLACK, DARK, GREY, WHITE, Canvas, Color, encode_png,
                                   text_width)
from pytest_mig.report.timeline import Timeline

WIDTH = 960
LEFT, RIGHT = 78, 20
TOP = 46  # title and phase legend
PANEL_H, GAP = 96, 18
BOTTOM = 34

PHASE_COLORS: dict[str, Color] = {
    "backgrounds_started": (150, 150, 150), "backgrounds_ready": (0, 150, 70),
    "main_start": (30, 90, 220), "main_end": (200, 40, 40)}
PHASE_TEXT = {"backgrounds_started": "BG STARTED", "backgrounds_ready": "BG READY",
              "main_start": "MAIN START", "main_end": "MAIN END"}
LINE_COLORS: list[Color] = [(30, 90, 220), (220, 120, 0), (0, 150, 70), (170, 40, 170),
                            (200, 40, 40), (0, 150, 170), (120, 90, 40), (100, 100, 100)]
MIB_PER_GIB = 1024.0


def _panels(tl: Timeline) -> list[tuple[str, list[tuple[str, list[float | None]]], str]]:
    """(title, [(legend, values)], note when there is nothing to plot)."""
    gib = [("GPU", [None if v is None else v / MIB_PER_GIB
                    for v in tl.series.get("gpu_mem_used_mib", [])])]
    for label in tl.mig_labels():
        gib.append((label, [None if v is None else v / MIB_PER_GIB
                            for v in tl.series[f"mig_{label}_mem_used_mib"]]))
    return [
        ("GPU UTILISATION %", [("GPU", tl.series.get("gpu_util_pct", []))],
         "N/A: NVML REPORTS NO UTILISATION IN MIG MODE OR PER MIG DEVICE"),
        ("MEMORY USED GIB", gib, "NO MEMORY SAMPLES"),
        ("POWER W", [("GPU", tl.series.get("power_w", []))], "N/A: NOT REPORTED BY NVML"),
        ("SM CLOCK MHZ", [("GPU", tl.series.get("sm_clock_mhz", []))], "N/A: NOT REPORTED BY NVML"),
        ("TEMPERATURE C", [("GPU", tl.series.get("temp_c", []))], "N/A: NOT REPORTED BY NVML"),
    ]


def _nice_step(span: float, ticks: int = 8) -> float:
    raw = max(span, 1e-9) / ticks
    base = 10 ** math.floor(math.log10(raw))
    return next(m * base for m in (1, 2, 5, 10) if m * base >= raw)


def _label(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.1f}"


def render(tl: Timeline) -> Canvas:
    panels = _panels(tl)
    height = TOP + len(panels) * (PANEL_H + GAP) + BOTTOM
    c = Canvas(WIDTH, height)
    source = "SIMULATED - VALUES MADE UP, NOT MEASURED" if tl.simulated else "MEASURED (NVML)"
    title = f"GPU {tl.meta.get('gpu', '?')} - {source}"
    c.text(LEFT, 6, title, (200, 40, 40) if tl.simulated else BLACK, scale=2)
    x = LEFT
    for name in sorted(tl.phases, key=tl.phases.get):
        color = PHASE_COLORS.get(name, DARK)
        c.rect(x, 30, x + 14, 36, color)
        x = c.text(x + 18, 30, PHASE_TEXT.get(name, name.upper()), color) + 14
    t_end = max(tl.t[-1] if tl.t else 0.0, max(tl.phases.values(), default=0.0), 1e-3)
    plot_w = WIDTH - LEFT - RIGHT

    def px(t: float) -> int:
        return LEFT + round(max(0.0, min(t, t_end)) / t_end * plot_w)

    for k, (title_text, lines, note) in enumerate(panels):
        y0 = TOP + k * (PANEL_H + GAP) + 12
        y1 = y0 + PANEL_H - 12
        c.text(LEFT, y0 - 11, title_text, BLACK)
        c.frame(LEFT, y0, WIDTH - RIGHT, y1, GREY)
        values = [v for _, vs in lines for v in vs if v is not None]
        for name, t in tl.phases.items():
            c.vdash(px(t), y0 + 1, y1 - 1, PHASE_COLORS.get(name, DARK))
        if not values:
            ny = (y0 + y1) // 2 - 3
            c.rect(LEFT + 6, ny - 3, LEFT + 14 + text_width(note), ny + 9, WHITE)
            c.text(LEFT + 10, ny, note, DARK)
        else:
            lo, hi = min(values), max(values)
            floor = 0.0 if lo >= 0 else -math.inf  # no negative axis for non-negative data
            if hi - lo < 1e-9:
                lo, hi = lo - 1.0, hi + 1.0
            pad = (hi - lo) * 0.08
            lo, hi = max(floor, lo - pad), hi + pad
            c.text(LEFT - 6 - text_width(_label(hi)), y0 + 1, _label(hi), DARK)
            c.text(LEFT - 6 - text_width(_label(lo)), y1 - 7, _label(lo), DARK)

            def py(v: float) -> int:
                return y1 - round((v - lo) / (hi - lo) * (y1 - y0))

            lx = WIDTH - RIGHT - 4 - sum(text_width(name) + 16 for name, _ in lines)
            for n, (legend, vs) in enumerate(lines):
                color = LINE_COLORS[n % len(LINE_COLORS)]
                prev: tuple[int, int] | None = None
                for t, v in zip(tl.t, vs):
                    if v is None:
                        prev = None
                        continue
                    point = (px(t), py(v))
                    if prev is not None:
                        c.line(*prev, *point, color, width=2)
                    else:
                        c.rect(point[0], point[1], point[0] + 1, point[1] + 1, color)
                    prev = point
                if len(lines) > 1:
                    c.rect(lx, y0 - 11, lx + 8, y0 - 5, color)  # legend on the title row
                    lx = c.text(lx + 11, y0 - 11, legend, color) + 5
    axis_y = TOP + len(panels) * (PANEL_H + GAP) + 2
    step = _nice_step(t_end)
    tick = 0.0
    while tick <= t_end + 1e-9:
        x = px(tick)
        c.rect(x, axis_y - 6, x, axis_y - 2, BLACK)
        label = f"{tick:g}S"
        c.text(x - text_width(label) // 2, axis_y + 2, label, DARK)
        tick += step
    c.text(WIDTH - RIGHT - text_width("TIME SINCE SAMPLING STARTED"), axis_y + 14,
           "TIME SINCE SAMPLING STARTED", DARK)
    return c


def write_chart(tl: Timeline, path: Path) -> Path:
    """Render `tl` and write it atomically as a PNG."""
    data = encode_png(render(tl))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path

