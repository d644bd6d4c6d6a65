"""Find what NVIDIA's closed-division code leaves in its LOG_DIR layout and read it.

NVIDIA writes LoadGen logs to `<log_dir>/<system id>/<benchmark>/<scenario>/`, where
`log_dir` is `$LOG_DIR` (or `build/logs/<timestamp>` when unset) and the benchmark folder
carries the submission name (`bert-99`, `dlrm-99.9`). Audits leave `verify_*.txt` verdicts
in `TESTnn` folders beside them (or under `build/compliance_logs`). The submission layout
(`results/<system>/<benchmark>/<scenario>/performance/run_N/`) is found too, and when
`bert-99` and `bert-99.9` both hold logs the wanted variant comes first (results/folders.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_mig.errors import ResultParseError
from pytest_mig.mlperf_names import LOADGEN_FILES, SUMMARY_FILE
from pytest_mig.results.audit import TEST_NAME, parse_audit
from pytest_mig.results.folders import RUN_DIR, benchmark_matches, effective_scenario, prefer_variant
from pytest_mig.types import BenchmarkResult

# Which verdict files each audit leaves behind.
AUDIT_KINDS = {"TEST01": ("accuracy", "performance"), "TEST04": ("performance",),
               "TEST05": ("performance",)}
# Slack for file systems with coarse mtimes when telling this run's files from older ones.
MTIME_SLACK_S = 2.0


@dataclass(frozen=True)
class RunLogs:
    """One `<system id>/<benchmark>/<scenario>` folder holding LoadGen outputs."""

    directory: Path
    timestamp: str  # the folder above the system id ("2021.08.10-06.16.59"), "" if none
    system_id: str
    benchmark_dir: str  # NVIDIA's name, e.g. "bert-99"
    newest_mtime: float


def find_run_logs(log_dir: Path, benchmark: str, scenario: str, variant: str = "") -> list[RunLogs]:
    """Every folder under `log_dir` with LoadGen outputs of benchmark/scenario, newest first.

    Both NVIDIA's `<system>/<benchmark>/<scenario>/` and the submission layout's
    `<system>/<benchmark>/<scenario>/performance/run_N/` (or `performance/` alone) count; a
    `<benchmark>-interactive-99/Server` folder (v5.0) is Interactive, never Server. `variant` ("bert-99.9") puts
    that benchmark folder ahead of its siblings whatever their age.
    """
    if not log_dir.is_dir():
        return []
    dirs = {f.parent for name in LOADGEN_FILES for f in log_dir.rglob(name) if f.is_file()}
    runs = []
    for d in dirs:
        scen = d
        if RUN_DIR.match(d.name) and d.parent.name in ("performance", "accuracy"):
            scen = d.parent.parent
        elif d.name in ("accuracy", "performance") and d.parent.name.lower() in (scenario.lower(), "server"):
            scen = d.parent  # accuracy/, or a summary right under performance/ (v4.0)
        if (effective_scenario(scen.parent.name, scen.name).lower() != scenario.lower()
                or not benchmark_matches(scen.parent.name, benchmark)):
            continue
        parts = scen.relative_to(log_dir).parts
        mtimes = [f.stat().st_mtime for name in LOADGEN_FILES if (f := d / name).is_file()]
        runs.append(RunLogs(directory=d, timestamp=parts[-4] if len(parts) >= 4 else "",
                            system_id=parts[-3] if len(parts) >= 3 else "",
                            benchmark_dir=scen.parent.name, newest_mtime=max(mtimes)))
    # NVIDIA's timestamps (YYYY.MM.DD-HH.MM.SS) sort as text; mtime breaks ties.
    runs.sort(key=lambda r: (r.timestamp, r.newest_mtime), reverse=True)
    if variant:
        order = prefer_variant(sorted({r.benchmark_dir for r in runs}), variant)
        runs.sort(key=lambda r: order.index(r.benchmark_dir))  # stable: newest first within a variant
    return runs


def describe_missing(log_dir: Path, benchmark: str, scenario: str) -> str:
    """Where we looked for a run's logs, and what was there instead."""
    where = (f"no LoadGen logs for {benchmark} {scenario} under {log_dir} (looked for "
             f"[<timestamp>/]<system id>/{benchmark}[-99|-99.9]/{scenario}/"
             f"{{{','.join(LOADGEN_FILES)}}})")
    if not log_dir.is_dir():
        return where + f"; {log_dir} does not exist: the harness never wrote there (is LOG_DIR honoured?)"
    others = sorted(str(f.parent.relative_to(log_dir)) for f in log_dir.rglob(LOADGEN_FILES[0]))
    if others:
        return where + "; found instead: " + ", ".join(others[:5])
    return where + f"; {log_dir} holds no {SUMMARY_FILE} at all"


def find_audit_files(roots: list[Path], benchmark: str, scenario: str, test: str,
                     since: float) -> dict[str, Path]:
    """kind ('accuracy' | 'performance') -> newest fresh `verify_<kind>.txt` of `test` for the run."""
    best: dict[str, tuple[float, Path]] = {}
    for root in roots:
        if not root.is_dir():
            continue
        for f in root.rglob("verify_*.txt"):
            kind = f.stem.removeprefix("verify_")
            if kind not in ("accuracy", "performance") or not f.is_file():
                continue
            mtime = f.stat().st_mtime
            if mtime < since - MTIME_SLACK_S or not _belongs(f.relative_to(root).parts[:-1],
                                                              benchmark, scenario, test):
                continue
            if kind not in best or mtime > best[kind][0]:
                best[kind] = (mtime, f)
    return {kind: path for kind, (_, path) in sorted(best.items())}


def _belongs(dirs: tuple[str, ...], benchmark: str, scenario: str, test: str) -> bool:
    """The folders name the benchmark, then the scenario, and no TESTnn other than `test`."""
    bench_at = next((i for i, d in enumerate(dirs) if benchmark_matches(d, benchmark)), None)
    if bench_at is None or scenario.lower() not in (d.lower() for d in dirs[bench_at + 1:]):
        return False
    named = {m.group(1).upper() for d in dirs if (m := TEST_NAME.fullmatch(d))}
    return not named or named == {test}


def apply_audits(res: BenchmarkResult, files: dict[str, Path], test: str, looked_in: list[Path]) -> None:
    """Fold audit verdicts into `res`: a failing or missing verdict makes it INVALID."""
    problems = []
    passed = 0
    for kind in AUDIT_KINDS[test]:
        path = files.get(kind)
        if path is None:
            problems.append(f"{test}: no verify_{kind}.txt written since the run started under "
                            f"{', '.join(map(str, looked_in))}: the audit's verification step did not "
                            "run or wrote elsewhere (set the harness option compliance_dir=DIR)")
            continue
        res.files[f"audit_{kind}"] = path
        try:
            verdict = parse_audit(path, test)
        except ResultParseError as exc:
            problems.append(str(exc))
            continue
        if verdict.passed:
            passed += 1
        elif verdict.reference_score is not None and verdict.test_score is not None:
            problems.append(f"{test} FAIL: reference score {verdict.reference_score:g} vs test score "
                            f"{verdict.test_score:g} ({path})")
        else:
            problems.append(f"{test} FAIL: {kind} check failed ({path})")
    if problems:
        res.valid = False
        res.result_text = "INVALID"
        res.invalid_reasons = problems + res.invalid_reasons
    elif res.valid is None and passed:
        # An audit run's own LoadGen logs may live elsewhere; its verdicts are the result.
        res.valid = True
        res.result_text = "VALID"
