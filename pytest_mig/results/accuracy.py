"""Read and write the result line of each MLPerf accuracy script (`accuracy.txt`), v0.5 to v5.x.

One `_Format` per benchmark holds the line's regex and its renderer side by side, so
`parse_accuracy(format_accuracy(...))` round-trips by construction. Rules:
- `alternates` are lines other submitters' harnesses print for the same metric (Intel's
  dlrm `AUC=80.21` / `AUC = 79.91`, KiTS19 3d-unet, single-quoted bert dicts); they are
  read, never written.
- LLM and SDXL scripts print a Python dict (`{'rouge1': 43.1, ...}`, values sometimes
  quoted, sometimes spread over lines): `key` formats read every `'name': number` pair of
  the file, the last of each name winning.
- A `hash=<hex>` that a submission tool glued to the end of a line is not part of it.
- Submitters' folder names are mapped by `normalize_benchmark` (`resnet`, `ssd-small`,
  `llama3_1-8b`, `-99`/`-99.9`/`-interactive` suffixes).
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
SUFFIX = re.compile(r"(?:-interactive)?(?:-99(?:\.9)?)?$")
HASH_SUFFIX = re.compile(r"hash=[0-9a-f]+$")
# '<name>': <number> pairs of a printed Python dict or JSON object ('38.73' quoted too).
PAIR = re.compile(rf"""['"](?P<key>[A-Za-z_][\w\-]*)['"]\s*:\s*['"]?(?P<value>{NUM})['"]?(?=\s*[,}}\n]|$)""")
# Folder names submitters use for the same benchmark (v0.5 names, LLM spellings, edge variants).
ALIASES = {"resnet": "resnet50", "ssd-small": "ssd-mobilenet", "ssd-large": "ssd-resnet34",
           "llama3_1-405b": "llama3.1-405b", "llama3_1-8b": "llama3.1-8b", "llama3.1-8b-edge": "llama3.1-8b",
           "llama3_1-8b-edge": "llama3.1-8b", "sdxl": "stable-diffusion-xl"}
# Printed as integers by the LLM scripts.
COUNT_KEYS = frozenset({"gen_len", "gen_num", "gen_tok_len", "num-samples", "good", "total", "queries"})


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
    # Other harnesses' lines for the same metric: (regex, reader), read only.
    alternates: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], tuple[float, dict[str, float]]]], ...] = ()
    key: bool = False  # a printed dict: read every 'name': number pair (`pattern` is unused)

    def find(self, text: str) -> tuple[float, dict[str, float]] | None:
        """(value, fields) of the last result in `text`, or None."""
        if self.key:
            fields = {m.group("key"): float(m.group("value")) for m in PAIR.finditer(text)}
            return (fields[self.metric], fields) if self.metric in fields else None
        found = None
        for raw in text.splitlines():
            line = HASH_SUFFIX.sub("", raw.strip()).strip()
            for pattern, read in ((self.pattern, self.read), *self.alternates):
                match = pattern.match(line)
                if match:
                    found = (match, read)
                    break
        return None if found is None else found[1](found[0])


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


def _render_dict(metric: str) -> Callable[[float, Mapping[str, float]], str]:
    """The Python dict the LLM/SDXL scripts print, metric first (counts as integers)."""
    def render(value: float, f: Mapping[str, float]) -> str:
        items = {metric: float(value), **{k: v for k, v in f.items() if k != metric}}
        return "{" + ", ".join(f"'{k}': {int(v) if k in COUNT_KEYS else float(v)!r}"
                               for k, v in items.items()) + "}"
    return render


def _dict_format(metric: str, script: str, example: str) -> _Format:
    return _Format(metric, script, example, re.compile("$^"), _read_percent(metric), _render_dict(metric),
                   key=True)


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
                                rf"tumor = (?P<tumor>{NUM})$"), _read_kits),)),
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
}

ACCURACY_METRICS: dict[str, str] = {name: fmt.metric for name, fmt in FORMATS.items()}
# Fields format_accuracy() needs for each benchmark, besides the metric value itself.
ACCURACY_FIELDS: dict[str, tuple[str, ...]] = {name: fmt.needs for name, fmt in FORMATS.items()}


def normalize_benchmark(benchmark: str) -> str:
    """'BERT-99' -> 'bert', 'dlrm-99.9' -> 'dlrm', 'resnet' -> 'resnet50', 'llama3_1-8b' -> 'llama3.1-8b'."""
    name = SUFFIX.sub("", benchmark.strip().lower())
    return ALIASES.get(name, name)


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
    found = fmt.find(text)
    if found is None:
        raise ResultParseError(
            f"{where}: no {name} accuracy result in the file; expected a line like '{fmt.example}' "
            f"as printed by MLPerf's {fmt.script}. Run the accuracy script on mlperf_log_accuracy.json "
            "and save its output there.")
    value, fields = found
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
