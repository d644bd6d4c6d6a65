"""Saturation table: per case of one or more pytest-mig runs, the batch, samples/s and how busy
the main kept its slice: `python3 benchmarks/saturation_table.py OUT.md RUN...` (results.json
files or run folders). Writes OUT.md and OUT.json beside it; prints the table.

busy = the case's `gpu_busy.value` where results.json has it; otherwise computed here the same
way from `activity` (GPM SM activity of the whole GPU / the profile's SM share, from the GPU
table in fixtures/gpus/), labelled "activity / SM share (computed here)".
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def sm_shares(gpu: str) -> dict[str, float]:
    path = ROOT / "fixtures" / "gpus" / f"{gpu}.yaml"
    if not path.is_file():
        return {}
    table = yaml.safe_load(path.read_text())
    total = float(table["total_sms"])
    return {p["name"]: p["sm_count"] / total for p in table.get("profiles", [])}


def batch_of(test: dict[str, Any], path: dict[str, Any]) -> Any:
    if path.get("batch_size"):
        return path["batch_size"]
    argv = (test.get("commands") or {}).get("main") or []
    return argv[argv.index("--batch-size") + 1] if "--batch-size" in argv else "?"


def row(test: dict[str, Any]) -> dict[str, Any]:
    result = test.get("result") or {}
    path = result.get("harness_path") or {}
    activity = ((test.get("activity") or {}).get("gpu") or {})
    sm = activity.get("sm_util_pct")
    busy, source = None, ""
    if isinstance(test.get("gpu_busy"), dict) and test["gpu_busy"].get("value") is not None:
        busy, source = test["gpu_busy"]["value"], str(test["gpu_busy"].get("source", "gpu_busy"))
    elif isinstance(sm, (int, float)) and sm == sm:
        share = sm_shares(str(test.get("gpu_model", ""))).get(str(test.get("profile", "")))
        if share:
            busy, source = min(1.0, sm / 100.0 / share), "activity / SM share (computed here)"
    return {"benchmark": test.get("benchmark"), "profile": test.get("profile"), "batch": batch_of(test, path),
            "batch_rule": path.get("batch_rule", ""), "samples_per_s": result.get("value"),
            "valid": result.get("valid"), "sm_util_pct": sm, "tensor_util_pct": activity.get("tensor_util_pct"),
            "busy": None if busy is None else round(float(busy), 3), "busy_source": source,
            "ready_s": path.get("ready_s"), "inputs": path.get("inputs", ""), "outcome": test.get("outcome")}


def markdown(rows: list[dict[str, Any]]) -> str:
    head = "| benchmark | profile | batch | samples/s | valid | SM activity % (GPU) | busy on its slice | ready s |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sps = f"{r['samples_per_s']:,.1f}" if isinstance(r["samples_per_s"], (int, float)) else "-"
        sm = f"{r['sm_util_pct']:.1f}" if isinstance(r["sm_util_pct"], (int, float)) else "-"
        busy = f"{r['busy']:.0%}" if r["busy"] is not None else "-"
        lines.append(f"| {r['benchmark']} | {r['profile']} | {r['batch']} | {sps} | {r['valid']} | {sm} | "
                     f"{busy} | {r['ready_s'] if r['ready_s'] is not None else '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[0])
    rows = []
    for arg in argv[1:]:
        path = Path(arg) / "results.json" if Path(arg).is_dir() else Path(arg)
        rows += [row(t) for t in json.loads(path.read_text()).get("tests", [])]
    rows.sort(key=lambda r: (str(r["benchmark"]), str(r["profile"]), int(r["batch"]) if str(r["batch"]).isdigit() else 0))
    text = markdown(rows)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
