"""Find LoadGen outputs in the two folder layouts MLPerf results come in; no parsing here.

- NVIDIA's LOG_DIR layout: `[<timestamp>/]<system>/<benchmark>/<scenario>/mlperf_log_*.txt`.
- The submission layout (what `mlcommons/inference_results_v*` publishes):
  `results/<system>/<benchmark>/<scenario>/{performance/run_N,accuracy}/...` and
  `compliance/<system>/<benchmark>/<scenario>/TESTnn/...`.
Rules: scenario folders match case-insensitively (submitters write `offline`); a benchmark
folder matches its variants (`bert` finds `bert-99` and `bert-99.9`, `resnet` is `resnet50`);
when several variants exist the wanted one (`variant_name`) wins, never the first found.
Round quirks: a summary directly under `performance/` (no `run_N`, e.g. v4.0) is that
scenario's run when no `run_N` holds one; v5.0 keeps Interactive as `<bench>-interactive-99[.9]`
folders holding a `Server` scenario (`RunFolder.effective_scenario` says Interactive); v6.0
keeps compliance `TESTnn` folders inside `results/<system>/<bench>/<scenario>/`; a root of
`results/<system>` (or `results/`) also finds the verdicts of the sibling `compliance/` tree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from pytest_mig.mlperf_names import ACCURACY_FILE, SUMMARY_FILE, normalize_benchmark
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

    @property
    def effective_scenario(self) -> str:
        """The scenario the run stands for: v5.0's `llama2-70b-interactive-99/Server` is Interactive."""
        return effective_scenario(self.benchmark_dir, self.scenario)


def effective_scenario(benchmark_dir: str, scenario_dir: str) -> str:
    """'Interactive' for a Server folder under a `<bench>-interactive[-99]` folder (v5.0), else the folder's name."""
    if "-interactive" in benchmark_dir.lower() and scenario_dir.lower() == "server":
        return "Interactive"
    return scenario_dir


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
    direct: dict[tuple[str, str, str], Path] = {}  # summaries right under performance/ (no run_N)
    for summary in sorted(root.rglob(SUMMARY_FILE)):
        rel = summary.relative_to(root).parts[:-1]
        if "compliance" in rel or any(TEST_DIR.match(p) for p in rel):
            continue
        if len(rel) >= 4 and RUN_DIR.match(rel[-1]) and rel[-2] == "performance":
            scenario_at = len(rel) - 3
        elif len(rel) >= 3 and rel[-1] == "performance":
            direct.setdefault(_key(root, rel, len(rel) - 2), summary.parent)
            continue
        else:
            continue
        key = _key(root, rel, scenario_at)
        found.setdefault(key, {"performance": None, "accuracy": None})
        if found[key]["performance"] is None:  # run_1 sorts first
            found[key]["performance"] = summary.parent
    for key, folder in direct.items():
        found.setdefault(key, {"performance": None, "accuracy": None})
        if found[key]["performance"] is None:
            found[key]["performance"] = folder
    for acc in sorted(root.rglob(ACCURACY_FILE)):
        rel = acc.relative_to(root).parts[:-1]
        if len(rel) >= 3 and rel[-1] == "accuracy" and not any(TEST_DIR.match(p) for p in rel):
            found.setdefault(_key(root, rel, len(rel) - 2), {"performance": None, "accuracy": None})
            found[_key(root, rel, len(rel) - 2)]["accuracy"] = acc.parent
    compliance = _compliance(root)
    for sibling, system in _sibling_compliance(root):
        for (s, b, sc), tests in _compliance(sibling, system).items():
            merged = compliance.setdefault((s, b, sc), {})
            for test, folder in tests.items():
                merged.setdefault(test, folder)
    return [RunFolder(system=s, benchmark_dir=b, scenario=sc, performance=v["performance"],
                      accuracy=v["accuracy"], compliance=compliance.get((s, b, sc.lower()), {}))
            for (s, b, sc), v in sorted(found.items())]


def _key(root: Path, rel: tuple[str, ...], scenario_at: int) -> tuple[str, str, str]:
    bench_at = scenario_at - 1
    system = rel[bench_at - 1] if bench_at >= 1 else root.name
    return system, rel[bench_at], rel[scenario_at]


def _sibling_compliance(root: Path) -> list[tuple[Path, str | None]]:
    """The compliance tree beside a `results/<system>` or `results/` root: (folder, system name or None)."""
    if root.parent.name == "results" and (root.parent.parent / "compliance" / root.name).is_dir():
        return [(root.parent.parent / "compliance" / root.name, root.name)]
    if root.name == "results" and (root.parent / "compliance").is_dir():
        return [(root.parent / "compliance", None)]
    return []


def _compliance(root: Path, system_name: str | None = None) -> dict[tuple[str, str, str], dict[str, Path]]:
    """(system, benchmark dir, scenario lower) -> {TESTnn: folder} from compliance/<system>/<bench>/<scenario>/TESTnn
    (or, v6.0, results/<system>/<bench>/<scenario>/TESTnn); `system_name` names a root that is one system."""
    out: dict[tuple[str, str, str], dict[str, Path]] = {}
    for verify in sorted(root.rglob("verify_*.txt")):
        rel = verify.relative_to(root).parts[:-1]
        at = next((i for i, p in enumerate(rel) if TEST_DIR.match(p)), None)
        if at is None or at < 2:
            continue
        system = rel[at - 3] if at >= 3 else (system_name or root.name)
        test = rel[at][:6].upper()
        out.setdefault((system, rel[at - 2], rel[at - 1].lower()), {}).setdefault(test, verify.parent)
    return out
