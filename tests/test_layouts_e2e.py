"""Layout comparison on the simulated A100 (one pytest run): the same mix (resnet50 on every
slice, bert as the mix's second workload) under 3x2g+1g and 1x7g, created by --mig-manage
on an empty GPU and removed at the end. Every slice runs real LoadGen
(tests/programs/loadgen_sleeper.py); layouts.tsv / layouts.json carry each slice's samples/s
and the aggregate per layout, which must equal the sum of the slices."""
from __future__ import annotations

import csv
import json
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from pngread import has_color_near, read_png

SLEEPER = Path(__file__).resolve().parent / "programs" / "loadgen_sleeper.py"
sys.path.insert(0, str(SLEEPER.parent))
from loadgen_sleeper import RATES  # noqa: E402

pytest.importorskip("mlperf_loadgen")

# An empty simulated GPU with MIG on, as an admin would leave it for --mig-manage.
CONFTEST = textwrap.dedent("""
    from pytest_mig.surface.case_fixtures import SESSION_KEY
    from pytest_mig.gpu.sim.simulator import SimulatedNvml

    def pytest_configure(config):
        s = config.stash[SESSION_KEY]
        s.ensure_run_dir()
        SimulatedNvml(s.run_dir / "simulated-gpu.json", model=s.settings.sim_gpu, layout={})
""")


def test_two_layouts_compared_slice_by_slice_with_the_aggregate(mini_project):
    project = mini_project("compare")
    project.pytester.makeconftest(CONFTEST)
    project.command = (f"{shlex.quote(sys.executable)} {shlex.quote(str(SLEEPER))} --benchmark "
                       "{benchmark} --log-dir {log_dir} --min-duration-ms {min_duration_ms}")
    reports = project.reports
    project.flags = [f"--mig-reports={reports}", "--mig-sample-interval=0", "--mig-manage"]
    result = project.run(None, "-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines([
        "*resnet50-Offline-2g.20gb-performance-3x2g+1g* PASSED*",
        "*resnet50-Offline-7g.80gb-performance-1x7g* PASSED*",
        "pytest-mig: 2 MIG reconfiguration(s) (optimal: 2 distinct layouts)",
        "pytest-mig: layout comparison: *layouts.tsv (2 case(s) over 2 layout(s))"])
    (run,) = [p for p in reports.iterdir() if p.is_dir()]

    rows = json.loads((run / "layouts.json").read_text())["layouts"]
    assert [(r["layout"], r["instances"]) for r in rows] == [
        ("3x2g+1g", "3 x 2g.20gb + 1g.10gb"), ("1x7g", "7g.80gb")]
    mixed, whole = rows
    # the main on the largest instance, the mix in turn on the others (smallest last)
    assert [(s["name"], s["profile"]) for s in mixed["slices"]] == [
        ("main", "2g.20gb"), ("bg1-bert", "2g.20gb"), ("bg2-resnet50", "2g.20gb"),
        ("bg3-bert", "1g.10gb")]
    assert [(s["name"], s["profile"]) for s in whole["slices"]] == [("main", "7g.80gb")]
    for row in rows:
        for s in row["slices"]:  # each slice's own figure: the sleeper's rate per benchmark
            assert s["samples_per_s"] == pytest.approx(RATES[s["benchmark"]], rel=0.35), s
        for bench, rate in row["aggregate"].items():
            assert rate == pytest.approx(sum(s["samples_per_s"] for s in row["slices"]
                                             if s["benchmark"] == bench))
        if len(row["aggregate"]) == 1:  # a total only for one model
            assert row["total_samples_per_s"] == pytest.approx(
                sum(s["samples_per_s"] for s in row["slices"]))
        else:
            assert row["total_samples_per_s"] is None
    assert set(mixed["aggregate"]) == {"resnet50", "bert"} and set(whole["aggregate"]) == {
        "resnet50"}
    assert mixed["aggregate"]["resnet50"] == pytest.approx(2 * RATES["resnet50"], rel=0.35)
    assert mixed["aggregate"]["bert"] == pytest.approx(2 * RATES["bert"], rel=0.35)

    # the records agree with the table: the same figures, the case's own aggregate
    tests = {t["case"]: t for t in json.loads((run / "results.json").read_text())["tests"]}
    for row in rows:
        agg = tests[row["case"]]["slices"]
        assert tests[row["case"]]["layout"] == row["layout"]
        assert agg["total_samples_per_s"] == (None if row["total_samples_per_s"] is None else
                                              pytest.approx(row["total_samples_per_s"]))

    with open(run / "layouts.tsv", newline="") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    for layout in ("3x2g+1g", "1x7g"):
        lines = [t for t in table if t["layout"] == layout]
        slices = [float(t["samples_per_s"]) for t in lines if t["role"] != "aggregate"]
        totals = [float(t["samples_per_s"]) for t in lines if t["slice"] == "aggregate"]
        per_bench = [float(t["samples_per_s"]) for t in lines
                     if t["slice"].startswith("aggregate:")]
        assert sum(per_bench) == pytest.approx(sum(slices), rel=1e-5)
        # a total line only for a one-model layout (3x2g+1g mixes resnet50 and bert)
        assert totals == ([] if layout == "3x2g+1g" else [pytest.approx(sum(slices), rel=1e-5)])
    png = run / "layouts.png"
    if png.exists():  # drawn with matplotlib; without it the run says so
        pic = read_png(png)
        assert pic.width > 300 and pic.height > 300
        # one colour per benchmark of the stacks (matplotlib's tab10: blue, orange)
        assert has_color_near(pic.colors, (31, 119, 180)) and has_color_near(
            pic.colors, (255, 127, 14))
    else:
        result.stdout.fnmatch_lines(["*layout comparison picture not drawn: matplotlib*"])
    state = json.loads((run / "simulated-gpu.json").read_text())
    assert state["gpus"][0]["gpu_instances"] == []  # the run's instances removed at its end
