"""Profile sweep rows (MIGProfiler's table) from run records: benchmark x MIG profile x batch
size -> samples/s, p99 latency (ms), peak GPU memory used during the main (GiB).

Rules: the batch size is the main's `--batch-size` argument (absent: "default"); memory comes
from the case's timeline.csv between main_start and main_end (None without one); a record
without a throughput headline gives a row with None figures, never a made-up number.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from pytest_mig.report.timeline import CSV_NAME, read_timeline


@dataclass(frozen=True)
class SweepRow:
    benchmark: str
    profile: str
    batch: str
    samples_per_s: float | None
    p99_ms: float | None
    mem_gib: float | None
    valid: bool | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _batch(argv: list[str]) -> str:
    return argv[argv.index("--batch-size") + 1] if "--batch-size" in argv[:-1] else "default"


def _peak_mem_gib(test_dir: str | None) -> float | None:
    if not test_dir or not (Path(test_dir) / CSV_NAME).exists():
        return None
    tl = read_timeline(Path(test_dir) / CSV_NAME)
    lo = tl.phases.get("main_start", float("-inf"))
    hi = tl.phases.get("main_end", float("inf"))
    vals = [v for t, v in zip(tl.t, tl.series.get("gpu_mem_used_mib", []))
            if lo <= t <= hi and v is not None]
    return round(max(vals) / 1024, 3) if vals else None


def sweep_rows(records: Iterable[dict[str, Any]]) -> list[SweepRow]:
    rows = []
    for r in records:
        if "case" not in r:
            continue
        res = r.get("result") or {}
        metric = str(res.get("metric") or "")
        p99 = (res.get("latencies_ns") or {}).get("p99")
        rows.append(SweepRow(
            benchmark=r.get("benchmark", ""), profile=r.get("profile", ""),
            batch=_batch(list((r.get("commands") or {}).get("main") or [])),
            samples_per_s=res.get("value") if "per second" in metric.lower() else None,
            p99_ms=None if p99 is None else p99 / 1e6,
            mem_gib=_peak_mem_gib((r.get("paths") or {}).get("dir")), valid=res.get("valid")))
    return sorted(rows, key=lambda x: (x.benchmark, _profile_key(x.profile), batch_key(x.batch)))


def _profile_key(profile: str) -> tuple[int, str]:
    head = profile.split("g.", 1)[0]
    return (int(head) if head.isdigit() else 99, profile)


def batch_key(batch: str) -> tuple[int, str]:
    """Sort key of a batch label: numbers in numeric order (others first, by name)."""
    return (int(batch) if batch.isdigit() else 0, batch)


def markdown(rows: list[SweepRow]) -> str:
    def f(v: float | None, digits: str = ".4g") -> str:
        return "n/a" if v is None else format(v, digits)
    lines = ["| benchmark | profile | batch | samples/s | p99 ms | peak GPU memory GiB | valid |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.benchmark} | {r.profile} | {r.batch} | {f(r.samples_per_s)} | "
              f"{f(r.p99_ms)} | {f(r.mem_gib)} | {r.valid} |" for r in rows]
    return "\n".join(lines) + "\n"
