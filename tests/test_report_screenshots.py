"""Screenshots of what a person opens after a run, taken in headless Chromium: the run's
index.html and the Allure 3 report of the same run. Each is a real picture (its size, many
colours, not a blank page) and the page it shows is honest about the simulated GPU (no
driver version). Skips, saying why, where chromium or the Allure 3 generator is absent
(.ci/run installs both)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pngread import read_png
from test_allure_trend import ALLURE3, CHROMIUM, _dom, _need

WIDTH, HEIGHT = 1280, 1600


def screenshot(url: str, out: Path, tmp: Path) -> Path:
    profile = tmp / "chromium-profile"
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
         f"--window-size={WIDTH},{HEIGHT}", "--virtual-time-budget=15000",
         f"--screenshot={out}", url],
        capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-2000:]
    return out


def _is_a_page(png_path: Path) -> None:
    png = read_png(png_path)
    assert (png.width, png.height) == (WIDTH, HEIGHT)
    assert len(png.colors) > 20, f"{png_path} is (nearly) blank: {len(png.colors)} colours"


@pytest.fixture
def one_run(mini):
    _need(CHROMIUM)
    r = mini.run({}, "-k", "resnet50", f"--alluredir={mini.path / 'allure'}")
    r.assert_outcomes(passed=1)
    return mini


def test_html_page_screenshot(one_run, tmp_path):
    page = one_run.run_dir() / "index.html"
    _is_a_page(screenshot(page.as_uri(), tmp_path / "index.png", tmp_path))
    dom = _dom(page.as_uri())
    assert "driver n/a (simulated GPU)" in dom and "580." not in dom


def test_allure_report_screenshot(one_run, tmp_path):
    _need(str(ALLURE3))
    out = tmp_path / "allure-report"
    proc = subprocess.run([str(ALLURE3), "allure2", str(one_run.path / "allure"), "-o", str(out),
                           "--single-file"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    _is_a_page(screenshot((out / "index.html").as_uri(), tmp_path / "allure.png", tmp_path))
