"""Read and write the result line of each MLPerf accuracy script (`accuracy.txt`), v0.5 to v6.0.

One `_Format` per benchmark holds the line's regex and its renderer side by side, so
`parse_accuracy(format_accuracy(...))` round-trips by construction. Rules:
- `alternates` are lines other submitters' harnesses print for the same metric (Intel's
  dlrm `AUC=80.21` / `AUC = 79.91`, KiTS19 3d-unet, single-quoted bert dicts); they are
  read, never written.
- LLM and SDXL scripts print a Python dict (`{'rouge1': 43.1, ...}`, values sometimes
  quoted, sometimes spread over lines): `key` formats read every `'name': number` pair of
  the file, the last of each name winning.
- A `hash=<hex>` that a submission tool glued to the end of a line is not part of it.
- Submitters' folder names are mapped by `normalize_benchmark` (mlperf_names.py: `resnet`, `ssd-small`,
  `llama3_1-8b`, `-99`/`-99.9`/`-interactive` suffixes).
- A benchmark the formats do not know (open-division names such as `llama3_1-70b-fp8_dyn`,
  `efficientnet-*`) is read, with an `AccuracyWarning`, by metric names from the standard
  forms (`read_fields`): dict/JSON pairs, `key=value[%]` items, `- Name: value` lines and
  `metric/<name>/rating: value` lines; the headline is the first of `HEADLINE_ORDER` found.
  A known benchmark whose own line is absent falls back to the same reader for its metric.
- Scripts printing fractions (KiTS19 DICE, dlrm-v3, qwen3-vl F1) are scaled to percent units
  in decimal, so 0.90862 reads 90.862 exactly.
"""
from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from pytest_mig.errors import ResultParseError, did_you_mean
from pytest_mig.mlperf_names import normalize_benchmark
from pytest_mig.results.summary import load_text

NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
HASH_SUFFIX = re.compile(r"hash=[0-9a-f]+$")
NEVER = re.compile(r"(?!x)x")  # the line pattern of formats read only as a whole text
# '<name>': <number> pairs of a printed Python dict or JSON object ('38.73' quoted too).
PAIR = re.compile(rf"""['"](?P<key>[A-Za-z_][\w\-]*)['"]\s*:\s*['"]?(?P<value>{NUM})['"]?(?=\s*[,}}\n]|$)""")
# Printed as integers by the LLM scripts.
COUNT_KEYS = frozenset({"gen_len", "gen_num", "gen_tok_len", "num-samples", "good", "total", "queries"})


@dataclass(frozen=True)
class AccuracyResult:
    """The headline accuracy metric (percent units) and every number on the result line."""

    metric: str
    value: float
    fields: dict[str, float] = field(default_factory=dict)
    warning: str = ""  # set when the file was read by metric names (benchmark unknown)


class AccuracyWarning(UserWarning):
    """An accuracy file read by metric names because its benchmark has no known format."""


@dataclass(frozen=True)
class _Format:
    metric: str
    script: str  # the reference script that prints this line
    example: str  # a real line, quoted in error messages
    pattern: re.Pattern[str]
    read: Callable[[re.Match[str]], tuple[float, dict[str, float]]]
    render: Callable[[float, Mapping[str, float]], str]
    needs: tuple[str, ...] = ()  # fields render() requires besides the value
    # Other harnesses' lines for the same metric: (regex, reader), read only.
    alternates: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[float, dict[str, float]]]], ...] = ()
    key: bool = False  # a printed dict: read every 'name': number pair (`pattern` is unused)
    printed: str = ""  # key formats: the name the script prints the metric under (default: metric)
    scale: int = 1  # key formats: 100 when the script prints a fraction
    # Readers of the whole text, tried when no line matched: (regex, reader) with re.M.
    blocks: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[float, dict[str, float]]]], ...] = ()

    def find(self, text: str) -> tuple[float, dict[str, float]] | None:
        """(value, fields) of the last result in `text`, or None."""
        if self.key:
            raw = {m.group("key"): m.group("value") for m in PAIR.finditer(text)}
            fields = {k: _scaled(v, self.scale) for k, v in raw.items()}
            name = self.printed or self.metric
            if name not in fields:
                return None
            if name != self.metric:
                fields[self.metric] = fields.pop(name)
            return fields[self.metric], fields
        found = None
        for raw in text.splitlines():
            line = HASH_SUFFIX.sub("", raw.strip()).strip()
            for pattern, read in ((self.pattern, self.read), *self.alternates):
                match = pattern.match(line)
                if match:
                    found = (match, read)
                    break
        if found is None:
            for pattern, read in self.blocks:
                last = None
                for last in pattern.finditer(text):
                    pass
                if last is not None:
                    found = (last, read)
        return None if found is None else found[1](found[0])


def _scaled(raw: str, scale: int) -> float:
    """A printed number in percent units: fractions are scaled in decimal (0.90862 -> 90.862)."""
    return float(raw) if scale == 1 else float(Decimal(raw) * scale)


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


def _read_kits(match: re.Match[str]) -> tuple[float, dict[str, float]]:
    return float(Decimal(match.group("mean")) * 100), _numbers(match)


def _read_value(metric: str) -> Callable[[re.Match[str]], tuple[float, dict[str, float]]]:
    """A line carrying only the metric (`AUC=80.21`): the value is group 'value'."""
    def read(match: re.Match[str]) -> tuple[float, dict[str, float]]:
        value = float(match.group("value"))
        return value, {metric: value}
    return read


def _render_dict(metric: str, printed: str = "", scale: int = 1) -> Callable[[float, Mapping[str, float]], str]:
    """The Python dict the LLM/SDXL scripts print, metric first (counts as integers); a script
    printing fractions (scale 100) gets the value back as a fraction."""
    def render(value: float, f: Mapping[str, float]) -> str:
        shown = float(value) if scale == 1 else float(Decimal(repr(float(value))) / scale)
        items = {printed or metric: shown, **{k: v for k, v in f.items() if k != metric}}
        return "{" + ", ".join(f"'{k}': {int(v) if k in COUNT_KEYS else float(v)!r}"
                               for k, v in items.items()) + "}"
    return render


def _dict_format(metric: str, script: str, example: str, printed: str = "", scale: int = 1) -> _Format:
    return _Format(metric, script, example, NEVER, _read_percent(metric), _render_dict(metric, printed, scale),
                   key=True, printed=printed, scale=scale)


def _render_rnnt(value: float, f: Mapping[str, float]) -> str:
    wer = f.get("Word Error Rate", 100.0 - value)
    return f"Word Error Rate: {wer}%, accuracy={value}%"


# Regex group names cannot hold spaces; these map them to the labels the scripts print.
_LABELS = {"wer": "Word Error Rate", "whole": "whole tumor", "core": "tumor core",
           "enhancing": "enhancing tumor"}

_IMAGENET = _Format(
    "accuracy", "accuracy-imagenet.py", "accuracy=76.042%, good=38021, total=50000",
    re.compile(rf"^accuracy=(?P<accuracy>{NUM})%, good=(?P<good>\d+), total=(?P<total>\d+)$"),
    _read_percent("accuracy"),
    lambda v, f: f"accuracy={v:.3f}%, good={_count(f, 'good')}, total={_count(f, 'total')}",
    ("good", "total"))
_WER = _Format(
    "accuracy", "accuracy_eval.py", "Word Error Rate: 7.45450855712643%, accuracy=92.54549144287357%",
    re.compile(rf"^Word Error Rate: (?P<wer>{NUM})%, accuracy=(?P<accuracy>{NUM})%$"),
    _read_percent("accuracy"), lambda v, f: _render_rnnt(v, f))
# Intel's dlrm harness prints the AUC alone, with or without '%' and spaces.
_AUC_ALONE = (re.compile(rf"^AUC\s*=\s*(?P<value>{NUM})\s*%?$"), _read_value("AUC"))
_DLRM = _Format(
    "AUC", "accuracy-dlrm.py",
    "AUC=80.185%, accuracy=96.608%, good=86114148, total=89137319, queries=330067",
    re.compile(rf"^AUC=(?P<AUC>{NUM})%, accuracy=(?P<accuracy>{NUM})%, good=(?P<good>\d+), "
               rf"total=(?P<total>\d+), queries=(?P<queries>\d+)$"),
    _read_percent("AUC"),
    lambda v, f: (f"AUC={v:.3f}%, accuracy={f['accuracy']:.3f}%, good={_count(f, 'good')}, "
                  f"total={_count(f, 'total')}, queries={_count(f, 'queries')}"),
    ("accuracy", "good", "total", "queries"), alternates=(_AUC_ALONE,))

_MAP = _Format(
    "mAP", "accuracy-coco.py", "mAP=20.117%",
    re.compile(rf"^mAP=(?P<mAP>{NUM})%$"), _read_percent("mAP"),
    lambda v, f: f"mAP={v:.3f}%")

# KiTS19 (v6.0): 'Accuracy: mean = 0.90862, threshold = 0.90679 (Passed)' then '  - Kidney: 0.94862' lines.
_KITS_VERDICT = re.compile(rf"^Accuracy: mean = (?P<mean>{NUM}), threshold = (?P<threshold>{NUM}) "
                           rf"\((?P<verdict>Passed|Failed)\)[ \t]*$(?P<classes>(?:\n[ \t]*- \w+: {NUM}[ \t]*$)*)", re.M)
_CLASS_LINE = re.compile(rf"- (?P<name>\w+): (?P<value>{NUM})")


def _read_kits_verdict(match: re.Match[str]) -> tuple[float, dict[str, float]]:
    fields = {"mean": _scaled(match.group("mean"), 100), "threshold": _scaled(match.group("threshold"), 100),
              "passed": 1.0 if match.group("verdict") == "Passed" else 0.0}
    fields.update({m.group("name").lower(): _scaled(m.group("value"), 100)
                   for m in _CLASS_LINE.finditer(match.group("classes"))})
    return fields["mean"], fields


# dlrm-v3 (v6.0): the script logs 'WARNING:main:metric/lifetime_gauc/rating: 0.7862...' lines.
_RATING = re.compile(rf"metric/(?P<key>\w+)/rating: (?P<value>{NUM})\s*$", re.M)
_DLRM3_NAMES = {"lifetime_gauc": "AUC", "lifetime_ne": "NE", "lifetime_accuracy": "accuracy"}
_DLRM3 = re.compile(rf"metric/lifetime_gauc/rating: {NUM}\s*$", re.M)


def _read_dlrm3(match: re.Match[str]) -> tuple[float, dict[str, float]]:
    ratings = {m.group("key"): m.group("value") for m in _RATING.finditer(match.string)}
    fields = {name: _scaled(ratings[key], 100) for key, name in _DLRM3_NAMES.items() if key in ratings}
    if "lifetime_gauc_num_samples" in ratings:
        fields["samples"] = float(ratings["lifetime_gauc_num_samples"])
    return fields["AUC"], fields


FORMATS: dict[str, _Format] = {
    "resnet50": _IMAGENET,
    "mobilenet": _IMAGENET,
    "ssd-resnet34": _MAP,
    "ssd-mobilenet": _MAP,
    "retinanet": _MAP,
    "bert": _Format(
        "f1", "accuracy-squad.py", '{"exact_match": 83.09366130558183, "f1": 90.37586600946241}',
        re.compile(rf'^\{{"exact_match": {NUM}, "f1": {NUM}\}}$'), _read_bert,
        lambda v, f: json.dumps({"exact_match": float(f["exact_match"]), "f1": float(v)}),
        ("exact_match",),
        alternates=((re.compile(rf"^\{{'exact_match': (?P<exact_match>{NUM}), 'f1': (?P<f1>{NUM})\}}$"),
                     _read_percent("f1")),)),
    "rnnt": _WER,
    "whisper": _WER,
    "dlrm": _DLRM,
    "dlrm-v2": _DLRM,
    "rgat": _IMAGENET,
    "gnmt": _Format(
        "BLEU", "process_accuracy.py", "BLEU: 23.9", re.compile(rf"^BLEU: (?P<BLEU>{NUM})$"),
        _read_percent("BLEU"), lambda v, f: f"BLEU: {v}"),
    "3d-unet": _Format(
        "mean", "accuracy-brats.py",
        "Accuracy: mean = 0.85440, whole tumor = 0.9132, tumor core = 0.8698, enhancing tumor = 0.7802",
        re.compile(rf"^Accuracy: mean = (?P<mean>{NUM}), whole tumor = (?P<whole>{NUM}), "
                   rf"tumor core = (?P<core>{NUM}), enhancing tumor = (?P<enhancing>{NUM})$"),
        _read_unet, _render_unet, ("whole tumor", "tumor core", "enhancing tumor"),
        # KiTS19 (v2.0 and later): mean of kidney and tumor dice.
        alternates=((re.compile(rf"^Accuracy: mean = (?P<mean>{NUM}), kidney = (?P<kidney>{NUM}), "
                                rf"tumor = (?P<tumor>{NUM})$"), _read_kits),),
        blocks=((_KITS_VERDICT, _read_kits_verdict),)),
    # LLM and SDXL scripts print dicts; the metric is the first accuracy target of the rules.
    "gptj": _dict_format("rouge1", "evaluation.py", "{'rouge1': 43.1008, 'rouge2': 20.1119, ...}"),
    "llama2-70b": _dict_format("rouge1", "evaluate-accuracy.py", "{'rouge1': 44.4434, ...}"),
    "mixtral-8x7b": _dict_format("rouge1", "evaluate-accuracy.py", "{'rouge1': 45.5286, ..., 'gsm8k': 73.34}"),
    "llama3.1-8b": _dict_format("rouge1", "evaluation.py", "{'rouge1': '38.732', 'rouge2': '15.8897', ...}"),
    "llama3.1-405b": _dict_format("rougeL", "evaluate-accuracy.py",
                                  "{'exact_match': 90.1118795499669, 'rougeL': 21.955081752035746, ...}"),
    "deepseek-r1": _dict_format("exact_match", "eval_accuracy.py", "{'exact_match': 81.40382862351869, ...}"),
    # CLIP (higher is better) is the headline; FID stays in the fields.
    "stable-diffusion-xl": _dict_format("CLIP_SCORE", "accuracy_coco.py",
                                        "Accuracy Results: {'FID_SCORE': 23.667, 'CLIP_SCORE': 31.788}"),
    # v5.x/v6.0 edge: per-class lists and the Total mAP.
    "pointpainting": _dict_format("mAP", "accuracy_waymo.py",
                                  "{'Pedestrian': [57.70], 'Cyclist': [48.85], 'Car': [56.22], 'Total': 54.256}",
                                  printed="Total"),
    # v6.0
    "gpt-oss-120b": _dict_format("exact_match", "eval_mlperf_accuracy.py",
                                 "Printing for submission_checker: 'exact_match': 83.396"),
    "qwen3-vl-235b-a22b": _dict_format("f1", "evaluate.py", '{"f1": 0.7886741346065558}', scale=100),
    "wan-2.2-t2v-a14b": _dict_format("vbench_score", "run_evaluation.py", "'vbench_score': 70.1617"),
    "yolo": _MAP,
    "dlrm-v3": _Format(
        "AUC", "accuracy.py", "WARNING:main:metric/lifetime_gauc/rating: 0.7862891896349031",
        NEVER, _read_percent("AUC"), lambda v, f: f"metric/lifetime_gauc/rating: {v / 100}",
        blocks=((_DLRM3, _read_dlrm3),)),
}

ACCURACY_METRICS: dict[str, str] = {name: fmt.metric for name, fmt in FORMATS.items()}
# Fields format_accuracy() needs for each benchmark, besides the metric value itself.
ACCURACY_FIELDS: dict[str, tuple[str, ...]] = {name: fmt.needs for name, fmt in FORMATS.items()}


def _format_for(benchmark: str, where: str) -> tuple[str, _Format]:
    name = normalize_benchmark(benchmark)
    if name not in FORMATS:
        raise ResultParseError(
            f"{where}: no accuracy format known for benchmark '{benchmark}'"
            f"{did_you_mean(name, FORMATS)}; known: {', '.join(sorted(FORMATS))}")
    return name, FORMATS[name]


# The metrics a file of an unknown benchmark is read by, first found wins: each metric with the
# names scripts print it under (exact case: 'total=50000' is a count, 'Total': 54.3 a mAP).
HEADLINE_ORDER: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rouge1", ("rouge1", "ROUGE1")), ("rougeL", ("rougeL", "ROUGEL")), ("exact_match", ("exact_match",)),
    ("CLIP_SCORE", ("CLIP_SCORE",)), ("vbench_score", ("vbench_score",)), ("f1", ("f1", "F1")),
    ("mAP", ("mAP", "Total")), ("AUC", ("AUC",)), ("mean", ("mean",)),
    ("accuracy", ("accuracy", "acc", "ACCURACY", "Accuracy")), ("BLEU", ("BLEU",)))
# 'key=value' / 'key = value%' items of a line ('accuracy=71.803%, good=3038, total=4231', 'mAP=53.1%').
ITEM = re.compile(rf"(?<![\w.])(?P<key>[A-Za-z][\w\-]*)\s*=\s*(?P<value>{NUM})(?![\w.])\s*%?")
DASH_LINE = re.compile(rf"^\s*-\s+(?P<key>[A-Za-z][\w ]*?)\s*:\s*(?P<value>{NUM})\s*%?\s*$")


def read_fields(text: str) -> dict[str, float]:
    """Every named number of the standard forms in `text`, the last of each name winning:
    dict/JSON pairs, `key=value[%]` items, `- Name: value` lines, `metric/<name>/rating:` lines."""
    fields: dict[str, float] = {}
    for raw in text.splitlines():
        line = HASH_SUFFIX.sub("", raw.strip()).strip()
        if line.startswith("hash="):
            continue
        for match in (*PAIR.finditer(line), *ITEM.finditer(line), *filter(None, [DASH_LINE.match(line)]),
                      *_RATING.finditer(line)):
            fields[match.group("key")] = float(match.group("value"))
    return fields


def _by_metric(fields: Mapping[str, float], metrics: tuple[tuple[str, tuple[str, ...]], ...]
               ) -> tuple[str, float] | None:
    for metric, names in metrics:
        for name in names:
            if name in fields:
                return metric, fields[name]
    return None


def parse_accuracy(source: str | Path, benchmark: str) -> AccuracyResult:
    """Read the last result line of `benchmark`'s accuracy script from a file (path) or text.

    An unknown benchmark is read by metric names (HEADLINE_ORDER), with an AccuracyWarning;
    a known one only by its own format."""
    text, where = load_text(source)
    name = normalize_benchmark(benchmark)
    fmt = FORMATS.get(name)
    found = fmt.find(text) if fmt is not None else None
    if found is not None:
        return AccuracyResult(metric=fmt.metric, value=found[0], fields=found[1])
    if fmt is not None:
        raise ResultParseError(
            f"{where}: no {name} accuracy result in the file; expected a line like '{fmt.example}' "
            f"as printed by MLPerf's {fmt.script}. Run the accuracy script on mlperf_log_accuracy.json "
            "and save its output there.")
    fields = read_fields(text)
    headline = _by_metric(fields, HEADLINE_ORDER)
    if headline is None:
        raise ResultParseError(
            f"{where}: no accuracy result for benchmark '{benchmark}' (no format known"
            f"{did_you_mean(name, FORMATS)}) and no metric named in the file; expected one of "
            f"{', '.join(m for m, _ in HEADLINE_ORDER)} as 'name': value, name=value or - name: value")
    metric, value = headline
    warning = (f"{where}: benchmark '{benchmark}' has no known accuracy format{did_you_mean(name, FORMATS)}; "
               f"read '{metric}' = {value} by its metric name")
    warnings.warn(warning, AccuracyWarning, stacklevel=2)
    return AccuracyResult(metric=metric, value=value, fields=fields, warning=warning)


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
