"""Profile-sweep table and curves from one or more pytest-mig runs (results.json or run
folders), e.g. one run per batch size: `python3 benchmarks/sweep_table.py OUTDIR RUN...`.
Writes OUTDIR/sweep.md, OUTDIR/sweep.json and OUTDIR/sweep_<benchmark>.png."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from pytest_mig.report.plot_sweep import write_sweep_png
from pytest_mig.report.sweep import markdown, sweep_rows


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    records, backends = [], set()
    for arg in argv[1:]:
        path = Path(arg) / "results.json" if Path(arg).is_dir() else Path(arg)
        data = json.loads(path.read_text())
        backends.add(str((data.get("run") or {}).get("backend", "?")))
        records += data.get("tests", [])
    rows = sweep_rows(records)
    note = " (SIMULATED GPU)" if "simulated" in backends else ""
    (out / "sweep.md").write_text(markdown(rows))
    (out / "sweep.json").write_text(json.dumps([r.to_dict() for r in rows], indent=1))
    for bench in sorted({r.benchmark for r in rows}):
        write_sweep_png(rows, bench, out / f"sweep_{bench}.png", note)
    print(markdown(rows), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
