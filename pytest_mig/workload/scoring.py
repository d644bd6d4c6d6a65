"""Accuracy of a run against the FP32 reference of the same model and data, in MLPerf's metrics and formats.

The run's outputs come from LoadGen's mlperf_log_accuracy.json (hex bytes per sample),
as real MLPerf accuracy scripts read them; the reference outputs are the ground truth.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pytest_mig.io import write_atomic
from pytest_mig.mlperf_names import ACCURACY_FILE, ACCURACY_LOG

from .models import canonical_benchmark, decode_output
from .models.rnnt import transcript

METRICS = {"resnet50": "accuracy", "ssd-resnet34": "mAP", "ssd-mobilenet": "mAP", "bert": "F1",
           "rnnt": "accuracy", "dlrm": "AUC", "3d-unet": "mean", "retinanet": "mAP",
           "llama3.1-8b": "rouge1"}
REFERENCE_VALUE = 100.0  # the FP32 reference scored against itself
LLM_FIELDS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "gen_len", "gen_num",
              "gen_tok_len", "tokens_per_sample")


@dataclass(frozen=True)
class AccuracyResult:
    benchmark: str
    metric: str
    value: float  # percent units
    fields: dict[str, Any] = field(default_factory=dict)
    reference: float = REFERENCE_VALUE


# ---------------------------------------------------------------- metrics


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (x1, y1, x2, y2) boxes: [N, 4] x [M, 4] -> [N, M]."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(detections: Sequence[tuple[Any, float, np.ndarray]],
                      ground_truth: Mapping[Any, np.ndarray], iou: float = 0.5) -> float | None:
    """COCO-style AP (101 recall points) of one class; None when the class has no ground truth.

    detections: (image key, score, box); ground_truth: image key -> [K, 4] boxes.
    """
    positives = sum(len(boxes) for boxes in ground_truth.values())
    if positives == 0:
        return None
    order = sorted(range(len(detections)), key=lambda i: -detections[i][1])
    matched = {key: np.zeros(len(boxes), dtype=bool) for key, boxes in ground_truth.items()}
    hits = np.zeros(len(order))
    for rank, i in enumerate(order):
        key, _, box = detections[i]
        gts = ground_truth.get(key)
        if gts is None or len(gts) == 0:
            continue
        overlaps = box_iou(np.asarray(box)[None], gts)[0]
        overlaps[matched[key]] = -1.0
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou:
            matched[key][best] = True
            hits[rank] = 1
    tp = np.cumsum(hits)
    recall = tp / positives
    precision = tp / np.arange(1, len(order) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if len(order) else precision
    points = np.linspace(0.0, 1.0, 101)
    at = np.searchsorted(recall, points, side="left")
    return float(np.mean([envelope[i] if i < len(envelope) else 0.0 for i in at]))


def mean_average_precision(predictions: Mapping[Any, np.ndarray], references: Mapping[Any, np.ndarray],
                           iou: float = 0.5) -> float:
    """mAP@iou over classes present in the references; rows are (x1, y1, x2, y2, score, label)."""
    classes = sorted({int(label) for rows in references.values() for label in np.asarray(rows)[:, 5]})
    aps = []
    for cls in classes:
        gts = {key: np.asarray(rows)[np.asarray(rows)[:, 5] == cls, :4] for key, rows in references.items()}
        dets = [(key, float(row[4]), row[:4]) for key, rows in predictions.items()
                for row in np.asarray(rows) if int(row[5]) == cls]
        ap = average_precision(dets, gts, iou)
        if ap is not None:
            aps.append(ap)
    if aps:
        return float(np.mean(aps))
    return 0.0 if any(len(rows) for rows in predictions.values()) else 1.0  # nothing to find: perfect if silent


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    previous = list(range(len(b) + 1))
    for i, item in enumerate(a, 1):
        current = [i]
        for j, other in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (item != other)))
        previous = current
    return previous[-1]


def word_error_rate(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Word edit errors over all reference words (a fraction; 0 when both sides are empty)."""
    errors = sum(edit_distance(h.split(), r.split()) for h, r in zip(hypotheses, references))
    words = sum(len(r.split()) for r in references)
    if words == 0:
        return 0.0 if errors == 0 else 1.0
    return errors / words


def span_f1(predicted: Sequence, reference: Sequence) -> float:
    """SQuAD token F1: harmonic mean of token-bag precision and recall."""
    common = sum((Counter(predicted) & Counter(reference)).values())
    if common == 0:
        return 1.0 if not predicted and not reference else 0.0
    precision, recall = common / len(predicted), common / len(reference)
    return 2 * precision * recall / (precision + recall)


def roc_auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count half); one-class labels give accuracy."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return float(np.mean((scores > 0.5) == labels)) if len(labels) else 1.0
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    start = 0
    while start < len(sorted_scores):  # average ranks over ties
        end = start
        while end + 1 < len(sorted_scores) and sorted_scores[end + 1] == sorted_scores[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _ngrams(tokens: Sequence, n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def rouge_n(predicted: Sequence, reference: Sequence, n: int) -> float:
    """ROUGE-N F1 of two token sequences (clipped n-gram overlap)."""
    pred, ref = _ngrams(predicted, n), _ngrams(reference, n)
    overlap = sum((pred & ref).values())
    if not pred or not ref:
        return 1.0 if not pred and not ref else 0.0
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(pred.values()), overlap / sum(ref.values())
    return 2 * precision * recall / (precision + recall)


def lcs_length(a: Sequence, b: Sequence) -> int:
    previous = [0] * (len(b) + 1)
    for item in a:
        current = [0]
        for j, other in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if item == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(predicted: Sequence, reference: Sequence) -> float:
    """ROUGE-L F1: longest common subsequence over both lengths."""
    if not predicted or not reference:
        return 1.0 if not predicted and not reference else 0.0
    lcs = lcs_length(predicted, reference)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(predicted), lcs / len(reference)
    return 2 * precision * recall / (precision + recall)


def dice(predicted: np.ndarray, reference: np.ndarray) -> float:
    """Dice coefficient of two boolean masks; 1 when both are empty."""
    predicted, reference = np.asarray(predicted, dtype=bool), np.asarray(reference, dtype=bool)
    total = int(predicted.sum() + reference.sum())
    return 1.0 if total == 0 else 2.0 * int((predicted & reference).sum()) / total


# BraTS regions over labels 1 (necrosis / non-enhancing), 2 (edema), 3 (enhancing).
TUMOR_REGIONS = {"whole tumor": (1, 2, 3), "tumor core": (1, 3), "enhancing tumor": (3,)}


def tumor_dice(predicted: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    return {name: dice(np.isin(predicted, labels), np.isin(reference, labels))
            for name, labels in TUMOR_REGIONS.items()}


# ---------------------------------------------------------------- per-benchmark scoring

Outputs = Mapping[int, np.ndarray]


def _score_resnet(run: Outputs, ref: Outputs, _: Callable) -> tuple[float, dict]:
    good = sum(int(run[i][0] == ref[i][0]) for i in ref)
    return 100.0 * good / len(ref), {"accuracy": 100.0 * good / len(ref), "good": good, "total": len(ref)}


def _score_ssd(run: Outputs, ref: Outputs, _: Callable) -> tuple[float, dict]:
    value = 100.0 * mean_average_precision(run, ref)
    return value, {"mAP": value}


def _score_bert(run: Outputs, ref: Outputs, sample: Callable) -> tuple[float, dict]:
    exact, f1 = 0.0, 0.0
    for i in ref:
        ids = sample(i)["input_ids"].tolist()
        (ps, pe), (rs, re_) = run[i].reshape(-1)[:2], ref[i].reshape(-1)[:2]
        predicted, truth = ids[ps:pe + 1], ids[rs:re_ + 1]
        exact += float(predicted == truth)
        f1 += span_f1(predicted, truth)
    fields = {"exact_match": 100.0 * exact / len(ref), "f1": 100.0 * f1 / len(ref)}
    return fields["f1"], fields


def _score_rnnt(run: Outputs, ref: Outputs, _: Callable) -> tuple[float, dict]:
    keys = sorted(ref)
    wer = 100.0 * word_error_rate([transcript(run[i]) for i in keys], [transcript(ref[i]) for i in keys])
    return 100.0 - wer, {"wer": wer, "accuracy": 100.0 - wer}


def _score_dlrm(run: Outputs, ref: Outputs, _: Callable) -> tuple[float, dict]:
    keys = sorted(ref)
    scores = np.concatenate([run[i] for i in keys])
    labels = np.concatenate([ref[i] for i in keys]) > 0.5
    good = int(np.sum((scores > 0.5) == labels))
    auc = 100.0 * roc_auc(scores, labels)
    return auc, {"AUC": auc, "accuracy": 100.0 * good / len(labels), "good": good,
                 "total": int(len(labels)), "queries": len(keys)}


def _score_unet(run: Outputs, ref: Outputs, _: Callable) -> tuple[float, dict]:
    per_case = [tumor_dice(run[i], ref[i]) for i in sorted(ref)]
    fields: dict[str, float] = {name: float(np.mean([case[name] for case in per_case])) for name in TUMOR_REGIONS}
    fields = {"mean": float(np.mean(list(fields.values()))), **fields}
    return 100.0 * fields["mean"], fields


def _score_llm(run: Outputs, ref: Outputs, _: Callable) -> tuple[float, dict]:
    """ROUGE on generated token ids against the FP32 reference's (MLPerf scores words; the
    built-in model has no tokenizer), exact match, and generation lengths."""
    keys = sorted(ref)
    pairs = [(run[i].tolist(), ref[i].tolist()) for i in keys]
    mean = lambda values: 100.0 * float(np.mean(values))  # noqa: E731
    rouge_lsum = mean([rouge_l(p, r) for p, r in pairs])
    tokens = int(sum(len(p) for p, _ in pairs))
    fields = {"rouge1": mean([rouge_n(p, r, 1) for p, r in pairs]),
              "rouge2": mean([rouge_n(p, r, 2) for p, r in pairs]),
              "rougeL": rouge_lsum, "rougeLsum": rouge_lsum,  # one "sentence" per answer
              "exact_match": mean([p == r for p, r in pairs]),
              "gen_len": tokens, "gen_num": len(pairs), "gen_tok_len": tokens,
              "tokens_per_sample": round(tokens / len(pairs), 2)}
    return fields["rouge1"], fields


SCORERS = {"resnet50": _score_resnet, "ssd-resnet34": _score_ssd, "ssd-mobilenet": _score_ssd,
           "retinanet": _score_ssd,
           "bert": _score_bert, "rnnt": _score_rnnt, "dlrm": _score_dlrm, "3d-unet": _score_unet,
           "llama3.1-8b": _score_llm}


def score(benchmark: str, run: Outputs, reference: Outputs, sample: Callable[[int], Any]) -> AccuracyResult:
    """Score run outputs against reference outputs (same sample indices) with the benchmark's metric."""
    name = canonical_benchmark(benchmark)
    missing = sorted(set(reference) - set(run))
    if missing or not reference:
        raise ValueError(f"{name}: the run has no output for samples {missing[:10]} of {len(reference)}")
    value, fields = SCORERS[name](run, reference, sample)
    return AccuracyResult(benchmark=name, metric=METRICS[name], value=float(value), fields=fields)


def format_accuracy_line(benchmark: str, fields: Mapping[str, Any]) -> str:
    """The result line the benchmark's real MLPerf accuracy script prints."""
    name = canonical_benchmark(benchmark)
    if name == "resnet50":
        return f"accuracy={fields['accuracy']:.3f}%, good={fields['good']}, total={fields['total']}"
    if name in ("ssd-resnet34", "ssd-mobilenet", "retinanet"):
        return f"mAP={fields['mAP']:.3f}%"
    if name == "bert":
        return json.dumps({"exact_match": fields["exact_match"], "f1": fields["f1"]})
    if name == "rnnt":
        return f"Word Error Rate: {fields['wer']}%, accuracy={fields['accuracy']}%"
    if name == "llama3.1-8b":  # MLCommons' evaluation.py prints the result dict
        return repr({k: fields[k] for k in LLM_FIELDS})
    if name == "dlrm":
        return (f"AUC={fields['AUC']:.3f}%, accuracy={fields['accuracy']:.3f}%, good={fields['good']}, "
                f"total={fields['total']}, queries={fields['queries']}")
    return (f"Accuracy: mean = {fields['mean']:.5f}, whole tumor = {fields['whole tumor']:.4f}, "
            f"tumor core = {fields['tumor core']:.4f}, enhancing tumor = {fields['enhancing tumor']:.4f}")


# ---------------------------------------------------------------- files


def read_accuracy_log(path: Path, benchmark: str) -> dict[int, np.ndarray]:
    """Decoded output per QSL index from LoadGen's mlperf_log_accuracy.json."""
    with open(path, encoding="utf-8") as handle:
        entries = json.load(handle)
    return {int(e["qsl_idx"]): decode_output(benchmark, bytes.fromhex(e["data"])) for e in entries}


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_accuracy(log_dir: Path, result: AccuracyResult) -> tuple[Path, Path]:
    """accuracy.txt in the real script's format plus hash line, and machine-readable accuracy.json."""
    log_dir = Path(log_dir)
    line = format_accuracy_line(result.benchmark, result.fields)
    text_path, json_path = log_dir / ACCURACY_FILE, log_dir / "accuracy.json"
    write_atomic(text_path, f"{line}\nhash={file_sha256(log_dir / ACCURACY_LOG)}\n", mode=0o666, fsync=False)
    payload = {"benchmark": result.benchmark, "metric": result.metric, "value": result.value,
               "reference": result.reference, "fields": result.fields}
    write_atomic(json_path, json.dumps(payload, indent=2) + "\n", mode=0o666, fsync=False)
    return text_path, json_path
