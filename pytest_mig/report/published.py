"""Published MLPerf results as `--mig-compare PATH` baselines.

PATH may be a submission folder as `mlcommons/inference_results_v*` publishes it (a
`closed/<submitter>` folder, its `results/`, or one `results/<system>`): the baseline of a
case is the published run of the same benchmark and scenario. Rules:
- The benchmark variant follows the case's accuracy target: 0.999 -> `bert-99.9`, else
  `bert-99`, else the plain folder (`resnet50`, or `resnet` in v0.5); never the first found.
- The headline is compared when both are of one kind (throughput or latency): v1.1's
  `Scheduled samples per second` baselines today's `Completed samples per second`; a
  pre-1.0 MultiStream `Samples per query` baselines nothing. Accuracy comes from the
  published `accuracy/accuracy.txt`.
- An LLM's token rate baselines only a token rate (LoadGen 4.0 Server runs print it under
  Additional Stats; the summary parser makes it the headline), never samples/s.
- Interactive is found as an `Interactive` scenario folder (v5.1, v6.0) or as v5.0's
  `<bench>-interactive-99[.9]/Server`; a Server case never takes an interactive folder.
- `verdicts()` gives the run's compliance verdicts from either folder level: TESTnn folders
  inside `results/<system>/<bench>/<scenario>` (v6.0) or the sibling `compliance/<system>` tree.
- An INVALID published run is no baseline. A PATH holding several systems is refused with
  their names: point it at one `results/<system>`.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pytest_mig.errors import ConfigError, ResultParseError
from pytest_mig.mlperf_names import ACCURACY_FILE, SUMMARY_FILE
from pytest_mig.report.history import HistoryEntry
from pytest_mig.results.accuracy import parse_accuracy
from pytest_mig.results.audit import AuditVerdict, parse_audit
from pytest_mig.results.folders import RunFolder, benchmark_matches, prefer_variant, submission_runs, variant_name
from pytest_mig.results.summary import parse_summary



def metric_kind(name: str) -> str:
    """'token throughput' (LLM tokens/s), 'throughput' (samples or queries/s), 'latency' or 'metric'."""
    low = name.lower()
    if "tokens per second" in low:
        return "token throughput"
    return "throughput" if "per second" in low else "latency" if "latency" in low else "metric"


def is_submission(path: Path) -> bool:
    """True when `path` is a folder holding the submission layout's performance/run_N summaries."""
    return path.is_dir() and any(r.performance is not None for r in submission_runs(path))


class PublishedBaselines:
    """The published runs of one system, looked up per case."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: list[RunFolder] = submission_runs(root)
        systems = sorted({r.system for r in self.runs})
        if len(systems) > 1:
            shown = ", ".join(systems[:6]) + (", ..." if len(systems) > 6 else "")
            example = next(r.performance or r.accuracy for r in self.runs if r.system == systems[0])
            system_dir = next(p for p in example.parents if p.name == systems[0])
            raise ConfigError(f"--mig-compare={root}: holds published results of {len(systems)} systems "
                              f"({shown}); point it at one system folder, e.g. --mig-compare={system_dir}")
        self.system = systems[0] if systems else ""

    def find(self, benchmark: str, scenario: str, accuracy_fraction: float | None) -> RunFolder | None:
        """The published run of `benchmark` x `scenario`, right variant first."""
        runs = [r for r in self.runs if r.effective_scenario.lower() == scenario.lower()
                and benchmark_matches(r.benchmark_dir, benchmark)]
        if not runs:
            return None
        order = prefer_variant([r.benchmark_dir for r in runs], variant_name(benchmark, accuracy_fraction))
        return min(runs, key=lambda r: order.index(r.benchmark_dir))

    def verdicts(self, benchmark: str, scenario: str, accuracy_fraction: float | None) -> dict[str, AuditVerdict]:
        """The compliance verdicts of the published run ('TEST01' -> its verdict; a test with
        several verify files, e.g. TEST01's accuracy and performance, keys them 'TEST01 accuracy'),
        found inside results/<system> (v6.0) or in the compliance/<system> tree beside it."""
        run = self.find(benchmark, scenario, accuracy_fraction)
        out: dict[str, AuditVerdict] = {}
        for test, folder in sorted((run.compliance if run else {}).items()):
            files = sorted(folder.glob("verify_*.txt"))
            for verify in files:
                try:
                    verdict = parse_audit(verify, test)
                except ResultParseError:
                    continue
                out[test if len(files) == 1 else f"{test} {verdict.kind}"] = verdict
        return out

    def lookup(self, entry: HistoryEntry) -> HistoryEntry | None:
        """A history entry standing for the published run that baselines `entry`, or None."""
        run = self.find(entry.benchmark, entry.scenario, entry.accuracy_fraction)
        if run is None:
            return None
        base = HistoryEntry(case=entry.case, run_id=f"published:{run.system}/{run.benchmark_dir}/{run.scenario}",
                            timestamp="", outcome="passed", gpu_model=entry.gpu_model, backend=entry.backend,
                            benchmark=run.benchmark_dir, scenario=run.scenario)
        if run.performance is not None:
            try:
                summary = parse_summary(run.performance / SUMMARY_FILE)
            except ResultParseError:
                summary = None
            if summary is not None and summary.valid:
                metric = summary.headline_name
                if entry.metric and metric_kind(entry.metric) == metric_kind(metric) != "metric":
                    metric = entry.metric  # same quantity under this LoadGen's name
                base = replace(base, metric=metric, value=summary.headline_value,
                               p99_ns=summary.latencies_ns.get("p99"), latencies_ns=dict(summary.latencies_ns))
        if run.accuracy is not None and (run.accuracy / ACCURACY_FILE).is_file():
            try:
                acc = parse_accuracy(run.accuracy / ACCURACY_FILE, run.benchmark_dir)
                base = replace(base, accuracy_metric=acc.metric, accuracy=acc.value)
            except ResultParseError:
                pass
        return base if base.value is not None or base.accuracy is not None else None
