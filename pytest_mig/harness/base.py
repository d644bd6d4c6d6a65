"""The harness protocol and the result collection every LoadGen-based backend shares."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Protocol

from pytest_mig.errors import MigError, ResultParseError
from pytest_mig.io import UnsafeFile, read_text
from pytest_mig.mlperf_names import ACCURACY_FILE, DETAIL_FILE, SUMMARY_FILE
from pytest_mig.results.accuracy import parse_accuracy
from pytest_mig.results.summary import parse_summary, token_throughput
from pytest_mig.types import ACCURACY, BenchmarkResult, Finished, LaunchSpec, Partition, WorkSpec
from pytest_mig.workload_contract import PATH_RECORD

# NVIDIA's harnesses print "Starting running actual test." when LoadGen's timed phase starts.
READY_PATTERN = r"running actual test\.\s*$"


class Harness(Protocol):
    name: str
    # True: a workload stopped by pytest-mig (SIGTERM) must exit 0; False: any end that
    # answers the stop is fine (health.stop_problem still flags crash signals).
    stop_exit_zero: bool

    def launch(self, work: WorkSpec, partition: Partition, env: dict[str, str],
               log_path: Path) -> LaunchSpec: ...

    def collect(self, work: WorkSpec, finished: Finished, result_dir: Path) -> BenchmarkResult: ...


def unusable_metric(value: float | None) -> str:
    """Why a headline value is no measurement ('NaN', 'infinite', 'zero', 'negative'), or ''."""
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "infinite"
    return "zero" if value == 0 else "negative" if value < 0 else ""


def collect_loadgen_outputs(work: WorkSpec, result_dir: Path) -> BenchmarkResult:
    """Read LoadGen's summary (and accuracy output in accuracy mode) from `result_dir`."""
    res = BenchmarkResult(benchmark=work.benchmark, scenario=work.scenario, mode=work.mode,
                          result_dir=result_dir)
    summary_path = result_dir / SUMMARY_FILE
    detail_path = result_dir / DETAIL_FILE
    if detail_path.exists():
        res.files["detail"] = detail_path
    if summary_path.exists():
        res.files["summary"] = summary_path
    path_record = result_dir / PATH_RECORD
    if path_record.exists():
        try:
            res.harness_path = dict(json.loads(read_text(path_record, 1 << 20)))
        except (UnsafeFile, OSError) as exc:  # a FIFO, /dev/zero: refused, never waited on
            res.errors.append(str(exc) if isinstance(exc, UnsafeFile) else
                              f"{path_record}: unreadable ({exc.strerror or exc})")
        except (ValueError, TypeError) as exc:
            res.errors.append(f"{path_record}: unreadable ({exc}); the workload wrote it before its ready line")
    if work.mode == ACCURACY:
        pass  # LoadGen's AccuracyOnly summary holds only warning/error counts: no verdict
    elif not summary_path.exists():
        res.errors.append(f"no {SUMMARY_FILE} in {result_dir}")
    else:
        try:
            s = parse_summary(summary_path)
        except ResultParseError as exc:
            res.errors.append(str(exc))
        else:
            res.valid = s.valid
            res.result_text = s.result
            res.invalid_reasons = list(s.invalid_reasons)
            # LLM runs are scored by tokens per second (MLPerf's metric for them).
            res.metric_name, res.metric_value = token_throughput(s) or (s.headline_name, s.headline_value)
            res.latencies_ns = dict(s.latencies_ns)
            bad = unusable_metric(s.headline_value)
            if bad:  # a NaN, infinite, zero or negative headline is no measurement
                res.valid = False
                res.invalid_reasons.insert(0, f"metric is {bad}: {s.headline_name} = "
                                              f"{s.headline_value!r} is not a measurement")
    if work.mode == ACCURACY:
        acc_path = result_dir / ACCURACY_FILE
        if not acc_path.exists():
            res.errors.append(f"accuracy mode but no {ACCURACY_FILE} in {result_dir}")
        else:
            res.files["accuracy"] = acc_path
            try:
                acc = parse_accuracy(acc_path, work.benchmark)
            except ResultParseError as exc:
                res.errors.append(str(exc))
            else:
                res.accuracy_metric, res.accuracy_value = acc.metric, acc.value
        meta = result_dir / "accuracy.json"
        if meta.exists():
            try:
                ref = json.loads(read_text(meta, 1 << 20)).get("reference")
                res.accuracy_reference = float(ref) if ref is not None else None
            except (ValueError, TypeError, AttributeError, OSError, MigError) as exc:
                res.errors.append(f"{meta}: unreadable ({exc})")
    return res
