"""Read and write the result line of each MLPerf accuracy script (`accuracy.txt`).

One `_Format` per benchmark holds the line's regex and its renderer side by side, so
`parse_accuracy(format_accuracy(...))` round-trips by construction.
"""
from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pytest_mig.errors import ResultParseError, did_you_mean
from pytest_mig.results.summary import load_text

NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
SUFFIX = re.compile(r"-99(?:\.9)?$")


@dataclass(frozen=True)
class AccuracyResult:
    """The headline accuracy metric (percent units) and every number on the result line."""

    metric: str
    value: float
    fields: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class _Format:
    metric: str
    script: str  # the reference script that prints this line
    example: str  # a real line, quoted in error messages
    pattern: re.Pattern[str]
    read: Callable[[re.Match[str]], tuple[float, dict[str, float]]]
    render: Callable[[float, Mapping[str, float]], str]
    needs: tuple[str, ...] = ()  # fields render() requires besides the value


def _numbers(match: re.Match[str]) -> dict[str, float]:
    return {_LABELS.get(k, k): float(v) for k, v in match.groupdict().items()}


def _count(fields: Mapping[str, float], key: str) -> int:
    return int(fields[key])


def _read_percent(metric: str) -> Callable[[re.Match[str]], tuple[float, dict[str, float]]]:
    def read(match: re.Match[str]) -> tuple[float, dict[str, float]]:
        numbers = _numbers(match)
        return numbers[metric], numbers
    return read


def _read_bert(match: re.Match[str]) -> tuple[float, dict[str, float]]:
    data = json.loads(match.group(0))
    numbers = {key: float(data[key]) for key in ("exact_match", "f1")}
    return numbers["f1"], numbers


def _read_unet(match: re.Match[str]) -> tuple[float, dict[str, float]]:
    # The script prints fractions; the percent value is scaled in decimal so 0.85440 gives 85.44 exactly.
    return float(Decimal(match.group("mean")) * 100), _numbers(match)


def _render_unet(value: float, f: Mapping[str, float]) -> str:
    return (f"Accuracy: mean = {value / 100:.5f}, whole tumor = {f['whole tumor']:.4f}, "
            f"tumor core = {f['tumor core']:.4f}, enhancing tumor = {f['enhancing tumor']:.4f}")


def _render_rnnt(value: float, f: Mapping[str, float]) -> str:
    wer = f.get("Word Error Rate", 100.0 - value)
    return f"Word Error Rate: {wer}%, accuracy={value}%"


# Regex group names cannot hold spaces; these map them to the labels the scripts print.
_LABELS = {"wer": "Word Error Rate", "whole": "whole tumor", "core": "tumor core",
           "enhancing": "enhancing tumor"}

_MAP = _Format(
    "mAP", "accuracy-coco.py", "mAP=20.117%",
    re.compile(rf"^mAP=(?P<mAP>{NUM})%$"), _read_percent("mAP"),
    lambda v, f: f"mAP={v:.3f}%")

def _read_rouge(match: re.Match[str]) -> tuple[float, dict[str, float]]:
    data = ast.literal_eval(match.group(0))
    numbers = {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))}
    return numbers["rouge1"], numbers


def _render_rouge(value: float, f: Mapping[str, float]) -> str:
    return repr({"rouge1": float(value), **{k: v for k, v in f.items() if k != "rouge1"}})


# MLCommons' LLM evaluation.py prints its result dict (rouge1/2/L/Lsum, gen_len, ...).
_ROUGE = _Format(
    "rouge1", "evaluation.py",
    "{'rouge1': 38.7792, 'rouge2': 15.9075, 'rougeL': 24.4957, 'rougeLsum': 35.793, 'gen_len': 8167644}",
    re.compile(rf"^\{{'rouge1': {NUM}(?:, '[A-Za-z_0-9]+': {NUM})*\}}$"), _read_rouge, _render_rouge)

FORMATS: dict[str, _Format] = {
    "resnet50": _Format(
        "accuracy", "accuracy-imagenet.py", "accuracy=76.042%, good=38021, total=50000",
        re.compile(rf"^accuracy=(?P<accuracy>{NUM})%, good=(?P<good>\d+), total=(?P<total>\d+)$"),
        _read_percent("accuracy"),
        lambda v, f: f"accuracy={v:.3f}%, good={_count(f, 'good')}, total={_count(f, 'total')}",
        ("good", "total")),
    "ssd-resnet34": _MAP,
    "ssd-mobilenet": _MAP,
    "retinanet": _MAP,
    "llama3.1-8b": _ROUGE,
    "bert": _Format(
        "f1", "accuracy-squad.py", '{"exact_match": 83.09366130558183, "f1": 90.37586600946241}',
        re.compile(rf'^\{{"exact_match": {NUM}, "f1": {NUM}\}}$'), _read_bert,
        lambda v, f: json.dumps({"exact_match": float(f["exact_match"]), "f1": float(v)}),
        ("exact_match",)),
    "rnnt": _Format(
        "accuracy", "accuracy_eval.py", "Word Error Rate: 7.45450855712643%, accuracy=92.54549144287357%",
        re.compile(rf"^Word Error Rate: (?P<wer>{NUM})%, accuracy=(?P<accuracy>{NUM})%$"),
        _read_percent("accuracy"), _render_rnnt),
    "dlrm": _Format(
        "AUC", "accuracy-dlrm.py",
        "AUC=80.185%, accuracy=96.608%, good=86114148, total=89137319, queries=330067",
        re.compile(rf"^AUC=(?P<AUC>{NUM})%, accuracy=(?P<accuracy>{NUM})%, good=(?P<good>\d+), "
                   rf"total=(?P<total>\d+), queries=(?P<queries>\d+)$"),
        _read_percent("AUC"),
        lambda v, f: (f"AUC={v:.3f}%, accuracy={f['accuracy']:.3f}%, good={_count(f, 'good')}, "
                      f"total={_count(f, 'total')}, queries={_count(f, 'queries')}"),
        ("accuracy", "good", "total", "queries")),
    "3d-unet": _Format(
        "mean", "accuracy-brats.py",
        "Accuracy: mean = 0.85440, whole tumor = 0.9132, tumor core = 0.8698, enhancing tumor = 0.7802",
        re.compile(rf"^Accuracy: mean = (?P<mean>{NUM}), whole tumor = (?P<whole>{NUM}), "
                   rf"tumor core = (?P<core>{NUM}), enhancing tumor = (?P<enhancing>{NUM})$"),
        _read_unet, _render_unet, ("whole tumor", "tumor core", "enhancing tumor")),
}

ACCURACY_METRICS: dict[str, str] = {name: fmt.metric for name, fmt in FORMATS.items()}
# Fields format_accuracy() needs for each benchmark, besides the metric value itself.
ACCURACY_FIELDS: dict[str, tuple[str, ...]] = {name: fmt.needs for name, fmt in FORMATS.items()}


def normalize_benchmark(benchmark: str) -> str:
    """'BERT-99' -> 'bert', 'dlrm-99.9' -> 'dlrm', '3d-unet-99' -> '3d-unet'."""
    return SUFFIX.sub("", benchmark.strip().lower())


def _format_for(benchmark: str, where: str) -> tuple[str, _Format]:
    name = normalize_benchmark(benchmark)
    if name not in FORMATS:
        raise ResultParseError(
            f"{where}: no accuracy format known for benchmark '{benchmark}'"
            f"{did_you_mean(name, FORMATS)}; known: {', '.join(sorted(FORMATS))}")
    return name, FORMATS[name]


def parse_accuracy(source: str | Path, benchmark: str) -> AccuracyResult:
    """Read the last result line of `benchmark`'s accuracy script from a file (path) or text."""
    text, where = load_text(source)
    name, fmt = _format_for(benchmark, where)
    found = None
    for line in text.splitlines():
        match = fmt.pattern.match(line.strip())
        if match:
            found = match
    if found is None:
        raise ResultParseError(
            f"{where}: no {name} accuracy result in the file; expected a line like '{fmt.example}' "
            f"as printed by MLPerf's {fmt.script}. Run the accuracy script on mlperf_log_accuracy.json "
            "and save its output there.")
    value, fields = fmt.read(found)
    return AccuracyResult(metric=fmt.metric, value=value, fields=fields)


def format_accuracy(benchmark: str, value: float, fields: Mapping[str, float] | None = None) -> str:
    """The result line (with newline) `benchmark`'s MLPerf accuracy script would print for these numbers.

    `value` is the metric in percent units; ACCURACY_FIELDS names the other fields required.
    """
    name, fmt = _format_for(benchmark, "format_accuracy")
    fields = dict(fields or {})
    missing = [key for key in fmt.needs if key not in fields]
    if missing:
        raise ValueError(f"format_accuracy('{name}'): fields {missing} are required to write "
                         f"the {fmt.script} line, e.g. '{fmt.example}'")
    return fmt.render(float(value), fields) + "\n"
