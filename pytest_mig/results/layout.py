"""Find LoadGen outputs in the two folder layouts MLPerf results come in; no parsing here.

- NVIDIA's LOG_DIR layout: `[<timestamp>/]<system>/<benchmark>/<scenario>/mlperf_log_*.txt`.
- The submission layout (what `mlcommons/inference_results_v*` publishes):
  `results/<system>/<benchmark>/<scenario>/{performance/run_N,accuracy}/...` and
  `compliance/<system>/<benchmark>/<scenario>/TESTnn/...`.
Rules: scenario folders match case-insensitively (submitters write `offline`); a benchmark
folder matches its variants (`bert` finds `bert-99` and `bert-99.9`, `resnet` is `resnet50`);
when several variants exist the wanted one (`variant_name`) wins, never the first found.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pytest_mig.results.accuracy import normalize_benchmark

LOADGEN_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "accuracy.txt")
RUN_DIR = re.compile(r"^run_\d+$")
TEST_DIR = re.compile(r"^TEST\d\d", re.IGNORECASE)


@dataclass(frozen=True)
class RunFolder:
    """One benchmark x scenario of one system: where its performance and accuracy files are."""

    system: str
    benchmark_dir: str  # as the folder is named, e.g. "bert-99.9", "resnet"
    scenario: str  # as the folder is named
    performance: Path | None  # folder holding the performance mlperf_log_summary.txt
    accuracy: Path | None  # folder holding accuracy.txt
    compliance: dict[str, Path] = field(default_factory=dict)  # "TEST01" -> its folder


def benchmark_matches(dir_name: str, benchmark: str) -> bool:
    """'bert-99' and 'bert-99.9' are `bert`; 'resnet' is `resnet50`; 'ssd-resnet34' is not `ssd-mobilenet`."""
    return dir_name.lower() == benchmark.lower() or normalize_benchmark(dir_name) == normalize_benchmark(benchmark)


def variant_name(benchmark: str, accuracy_fraction: float | None) -> str:
    """The submission folder name for a target: ('bert', 0.999) -> 'bert-99.9'; ('bert', 0.99) -> 'bert-99'."""
    base = normalize_benchmark(benchmark)
    if accuracy_fraction is None:
        return base
    return f"{base}-99.9" if accuracy_fraction >= 0.999 else f"{base}-99"


def prefer_variant(dir_names: list[str], variant: str) -> list[str]:
    """`dir_names` ordered so the exact variant comes first, then the plain name, then the rest."""
    def rank(name: str) -> int:
        low = name.lower()
        return 0 if low == variant.lower() else 1 if low == normalize_benchmark(variant) else 2
    return sorted(dir_names, key=rank)


def submission_runs(root: Path) -> list[RunFolder]:
    """Every results/<system>/<benchmark>/<scenario> under `root` (root may be the system folder itself)."""
    found: dict[tuple[str, str, str], dict] = {}
    for summary in sorted(root.rglob("mlperf_log_summary.txt")):
        rel = summary.relative_to(root).parts[:-1]
        if "compliance" in rel or any(TEST_DIR.match(p) for p in rel):
            continue
        if len(rel) >= 4 and RUN_DIR.match(rel[-1]) and rel[-2] == "performance":
            scenario_at = len(rel) - 3
        else:
            continue
        key = _key(root, rel, scenario_at)
        found.setdefault(key, {"performance": None, "accuracy": None})
        if found[key]["performance"] is None:  # run_1 sorts first
            found[key]["performance"] = summary.parent
    for acc in sorted(root.rglob("accuracy.txt")):
        rel = acc.relative_to(root).parts[:-1]
        if len(rel) >= 3 and rel[-1] == "accuracy" and not any(TEST_DIR.match(p) for p in rel):
            found.setdefault(_key(root, rel, len(rel) - 2), {"performance": None, "accuracy": None})
            found[_key(root, rel, len(rel) - 2)]["accuracy"] = acc.parent
    compliance = _compliance(root)
    return [RunFolder(system=s, benchmark_dir=b, scenario=sc, performance=v["performance"],
                      accuracy=v["accuracy"], compliance=compliance.get((s, b, sc.lower()), {}))
            for (s, b, sc), v in sorted(found.items())]


def _key(root: Path, rel: tuple[str, ...], scenario_at: int) -> tuple[str, str, str]:
    bench_at = scenario_at - 1
    system = rel[bench_at - 1] if bench_at >= 1 else root.name
    return system, rel[bench_at], rel[scenario_at]


def _compliance(root: Path) -> dict[tuple[str, str, str], dict[str, Path]]:
    """(system, benchmark dir, scenario lower) -> {TESTnn: folder} from compliance/<system>/<bench>/<scenario>/TESTnn."""
    out: dict[tuple[str, str, str], dict[str, Path]] = {}
    for verify in sorted(root.rglob("verify_*.txt")):
        rel = verify.relative_to(root).parts[:-1]
        at = next((i for i, p in enumerate(rel) if TEST_DIR.match(p)), None)
        if at is None or at < 2:
            continue
        system = rel[at - 3] if at >= 3 else root.name
        test = rel[at][:6].upper()
        out.setdefault((system, rel[at - 2], rel[at - 1].lower()), {}).setdefault(test, verify.parent)
    return out
