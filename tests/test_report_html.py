"""The run's index.html: rows, escaping, charts; then rendered by headless Chromium
(`--dump-dom` after scripts ran, `--screenshot` non-blank)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_mig.report.html import (accuracy_text, health_text, interference_text, render_index,
                                    write_index)
from pngread import read_png

HEADER = {"run_id": "20260101-000000-1", "backend": "simulated", "simulated": True,
          "driver": "580.1", "gpus": [{"index": 0, "model": "H100-SXM5-80GB"}],
          "harness": "loadgen"}


def record(case: str, benchmark: str, outcome: str, value: float | None, **extra) -> dict:
    return {"case": case, "benchmark": benchmark, "outcome": outcome,
            "result": None if value is None else {"metric": "Samples per second", "value": value,
                                                  "accuracy": None},
            "health": [{"name": "bg1-bert", "healthy": True, "problems": []}],
            "paths": {"dir": f"/x/test_hetero_{case}"}, **extra}


RECORDS = [
    record("resnet50-Offline-1g.10gb-performance", "resnet50", "passed", 2500.0,
           interference=0.125),
    record("resnet50-Offline-2g.20gb-performance", "resnet50", "failed", 4100.0),
    record("bert-Offline-1g.10gb-performance", "bert", "passed", 310.5),
    record("dlrm-Offline-1g.10gb-performance", "dlrm", "failed", None),
]
COMPARISONS = {"resnet50-Offline-2g.20gb-performance": [
    {"baseline": 5000.0, "change_pct": -18.0, "regressed": True}]}


def test_cells():
    assert interference_text(None) == "-" and interference_text(0.125) == "12.5%"
    assert interference_text({"slowdown": 0.5, "note": "x"}) == "slowdown=0.5, note=x"
    assert accuracy_text({"accuracy": 75.9, "accuracy_metric": "acc",
                          "accuracy_target": 75.69}) == "acc 75.9 (target 75.69)"
    assert accuracy_text({"accuracy": 22.0, "accuracy_metric": "mAP", "accuracy_target": 19.8},
                         0.99) == "mAP 22 (target 19.8 = 99.0% of reference 20)"
    assert accuracy_text({}) == "-"
    rec = {"health": [{"name": "bg1", "healthy": True, "problems": []},
                      {"name": "bg2", "healthy": False, "problems": ["exited with code 3"]}],
           "warnings": []}
    assert health_text(rec) == ("1/2 healthy: bg2: exited with code 3", False)
    assert health_text({"health": []}) == ("-", True)


def test_page_is_self_contained_with_rows_and_charts(tmp_path: Path):
    page = render_index(tmp_path, HEADER, RECORDS + [
        record("<script>alert(1)</script>", "x", "passed", 1.0)], COMPARISONS)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<link" not in page and "src=" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert page.count('<svg class="bars"') == 3  # bert, resnet50, x (dlrm has no metric)
    for rec in RECORDS:
        assert f'data-case="{rec["case"]}"' in page
    assert "12.5%" in page and '<span class="bad">-18.0% vs 5000</span>' in page
    assert "SIMULATED GPU" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--disable-sync"]


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian: apt-get install "
                                            "-y chromium chromium-driver; .ci/run installs it)")
def test_page_renders_in_headless_chromium(tmp_path: Path):
    run_dir = tmp_path / "reports" / HEADER["run_id"]
    for rec in RECORDS:
        (run_dir / Path(rec["paths"]["dir"]).name).mkdir(parents=True)
    (run_dir / "test_hetero_bert-Offline-1g.10gb-performance" / "timeline.png").write_bytes(b"")
    page = write_index(run_dir, HEADER, RECORDS, COMPARISONS)
    url = page.resolve().as_uri()

    dom = chromium(tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'data-ready="yes"' in html  # the inline script ran
    assert "4 case(s), 2 chart(s)" in html  # ... and counted the rows and SVG charts it saw
    for rec in RECORDS:
        assert f'<tr class="{rec["outcome"]}" data-case="{rec["case"]}">' in html
    assert html.count('<rect class="bar"') == 3  # 2 resnet50 + 1 bert; dlrm has no metric
    assert 'href="test_hetero_bert-Offline-1g.10gb-performance/timeline.png"' in html

    shot = tmp_path / "page.png"
    result = chromium(tmp_path, f"--screenshot={shot}", "--window-size=800,1000", url)
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    png = read_png(shot)
    assert png.width == 800 and png.height == 1000
    assert len(png.colors) > 20  # text, table borders, green and red bars: not a blank page
    assert (49, 163, 107) in png.colors and (214, 69, 69) in png.colors  # passed / failed bars




def test_the_baseline_tick_never_covers_the_value():
    import re

    from pytest_mig.report.html import bar_chart
    svg = bar_chart("t", [("case", 480.0, "passed", 500.86)])  # baseline beyond the bar's end
    (tick,) = re.findall(r'<line class="baseline" x1="([\d.]+)"', svg)
    (text_x, text) = re.findall(r'<text x="([\d.]+)" y="\d+" font-size="12">([^<]*)</text>', svg)[0]
    assert float(text_x) > float(tick)
    assert text == "480 (baseline 500.86)"
