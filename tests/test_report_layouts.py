"""report/layouts.py: the per-layout table from run records (slices, sums, n/a), and the run
going on without matplotlib (it says so instead of drawing)."""
from __future__ import annotations

import csv
import json

from pytest_mig.report import plotting
from pytest_mig.report.layouts import layout_rows, markdown, read_rows, write_layouts


def record(layout: str, case: str, slices: list[tuple[str, str, str, float | None]]) -> dict:
    return {"case": case, "layout": layout, "benchmark": "resnet50", "gpu_model": "H200-141GB",
            "outcome": "passed", "slices": {"slices": [
                {"name": n, "role": "main" if n == "main" else "background", "benchmark": b,
                 "profile": p, "samples_per_s": v, "basis": "" if v is None else "main run"}
                for n, b, p, v in slices]}}


RECORDS = [
    {"case": "plain-case", "layout": None, "slices": None},  # not a layout case: left out
    record("/x/compare.yaml:3x2g+1g", "r-3x2g", [
        ("main", "resnet50", "2g.35gb", 100.0), ("bg1-bert", "bert", "2g.35gb", 40.0),
        ("bg2-resnet50", "resnet50", "2g.35gb", 90.0), ("bg3-bert", "bert", "1g.18gb", None)]),
    record("1x7g", "r-1x7g", [("main", "resnet50", "7g.141gb", 250.0)]),
]


def test_rows_sum_each_benchmark_and_leave_missing_figures_out():
    mixed, whole = layout_rows(RECORDS)
    assert (mixed.layout, mixed.instances) == ("3x2g+1g", "3 x 2g.35gb + 1g.18gb")
    assert mixed.aggregate == {"resnet50": 190.0, "bert": 40.0}
    assert mixed.total_samples_per_s is None  # resnet50 + bert samples/s: not one quantity
    assert (whole.layout, whole.instances, whole.total_samples_per_s) == ("1x7g", "7g.141gb",
                                                                          250.0)
    md = markdown([mixed, whole])
    assert "| 3x2g+1g | r-3x2g | 3 x 2g.35gb + 1g.18gb | main 2g.35gb 100, bg1-bert" in md
    assert "| resnet50 190, bert 40 | " in md
    assert layout_rows([{"case": "x", "layout": "7x1g", "slices": None}])[0] \
        .total_samples_per_s is None


def test_files_written_and_read_back_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setattr("pytest_mig.report.plot_layouts.pyplot", lambda: None)
    lines = write_layouts(tmp_path, RECORDS)
    assert lines == [f"layout comparison: {tmp_path / 'layouts.tsv'} (2 case(s) over 2 "
                     "layout(s))", f"layout comparison picture not drawn: {plotting.MISSING}"]
    assert not (tmp_path / "layouts.png").exists()
    with open(tmp_path / "layouts.tsv", newline="") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    mixed = [t for t in table if t["layout"] == "3x2g+1g"]
    assert [t["slice"] for t in mixed] == ["main", "bg1-bert", "bg2-resnet50", "bg3-bert",
                                           "aggregate:resnet50", "aggregate:bert"]  # no total
    assert mixed[3]["samples_per_s"] == "n/a" and mixed[-1]["samples_per_s"] == "40"
    whole = [t for t in table if t["layout"] == "1x7g"]
    assert whole[-1]["slice"] == "aggregate" and whole[-1]["samples_per_s"] == "250"
    assert [r.to_dict() for r in read_rows(tmp_path / "layouts.json")] == \
        json.loads((tmp_path / "layouts.json").read_text())["layouts"]
    assert write_layouts(tmp_path / "none", RECORDS[:1]) == []  # no layout case: nothing
