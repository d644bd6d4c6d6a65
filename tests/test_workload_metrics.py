"""Accuracy metrics and accuracy.txt formats of the built-in harness, against hand-computed values."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

from pytest_mig.workload import scoring  # noqa: E402


def test_box_iou_of_overlapping_squares_is_one_seventh():
    iou = scoring.box_iou(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3], [5, 5, 6, 6]]))
    assert iou.shape == (1, 2)
    assert iou[0, 0] == pytest.approx(1 / 7)
    assert iou[0, 1] == 0.0


def test_average_precision_one_hit_one_false_positive():
    # Two ground-truth boxes; detections: a hit (0.9) then a miss (0.8). Recall reaches 0.5 at
    # precision 1, so 51 of COCO's 101 recall points (0.00..0.50) score 1 and the rest 0.
    gts = {"img": np.array([[0, 0, 1, 1], [2, 2, 3, 3]], dtype=float)}
    dets = [("img", 0.9, np.array([0, 0, 1, 1.0])), ("img", 0.8, np.array([5, 5, 6, 6.0]))]
    assert scoring.average_precision(dets, gts) == pytest.approx(51 / 101)


def test_average_precision_perfect_empty_and_duplicate():
    gts = {"a": np.array([[0, 0, 1, 1.0]]), "b": np.array([[0, 0, 1, 1.0]])}
    perfect = [("a", 0.5, np.array([0, 0, 1, 1.0])), ("b", 0.7, np.array([0, 0, 1, 1.0]))]
    assert scoring.average_precision(perfect, gts) == pytest.approx(1.0)
    assert scoring.average_precision([], gts) == 0.0
    assert scoring.average_precision(perfect, {"a": np.zeros((0, 4))}) is None
    # The lower-scored duplicate is a false positive after recall already reached 1: AP stays 1.
    dup = [("a", 0.9, np.array([0, 0, 1, 1.0])), ("a", 0.95, np.array([0, 0, 1, 1.0]))]
    assert scoring.average_precision(dup, {"a": np.array([[0, 0, 1, 1.0]])}) == pytest.approx(1.0)


def test_mean_average_precision_averages_classes_with_ground_truth():
    ref = {0: np.array([[0, 0, 1, 1, 0.9, 1], [2, 2, 3, 3, 0.8, 2]], dtype=np.float32)}
    run = {0: np.array([[0, 0, 1, 1, 0.9, 1], [2, 2, 3, 3, 0.8, 3]], dtype=np.float32)}  # class 2 missed
    assert scoring.mean_average_precision(run, ref) == pytest.approx(0.5)
    assert scoring.mean_average_precision(ref, ref) == pytest.approx(1.0)
    assert scoring.mean_average_precision({0: np.zeros((0, 6))}, {0: np.zeros((0, 6))}) == 1.0


def test_edit_distance_and_word_error_rate():
    assert scoring.edit_distance("kitten", "sitting") == 3
    assert scoring.edit_distance([], ["a", "b"]) == 2
    # one deletion over 4 words, plus one substitution over 2 words: 2 errors / 6 words
    wer = scoring.word_error_rate(["the cat sat", "hello word"], ["the cat sat down", "hello world"])
    assert wer == pytest.approx(2 / 6)
    assert scoring.word_error_rate(["", ""], ["", ""]) == 0.0
    assert scoring.word_error_rate(["x"], [""]) == 1.0


def test_span_f1_is_squad_token_f1():
    assert scoring.span_f1([1, 2, 3], [2, 3, 4]) == pytest.approx(2 / 3)
    assert scoring.span_f1([5, 5], [5]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert scoring.span_f1([1], [2]) == 0.0
    assert scoring.span_f1([7, 8], [7, 8]) == 1.0


def test_roc_auc_matches_hand_computed_values():
    assert scoring.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert scoring.roc_auc([0.5, 0.5], [0, 1]) == pytest.approx(0.5)
    assert scoring.roc_auc([0.2, 0.9, 0.1], [0, 1, 0]) == pytest.approx(1.0)
    # one class only: falls back to accuracy at the 0.5 threshold
    assert scoring.roc_auc([0.7, 0.2], [1, 1]) == pytest.approx(0.5)


def test_dice_and_tumor_regions():
    assert scoring.dice(np.array([1, 1, 0, 0]), np.array([1, 0, 1, 0])) == pytest.approx(0.5)
    assert scoring.dice(np.zeros(4), np.zeros(4)) == 1.0
    pred = np.array([0, 1, 2, 3, 3, 0])
    ref = np.array([0, 1, 2, 2, 3, 3])
    regions = scoring.tumor_dice(pred, ref)
    assert regions["whole tumor"] == pytest.approx(2 * 4 / (4 + 5))
    assert regions["tumor core"] == pytest.approx(2 * 2 / (3 + 3))
    assert regions["enhancing tumor"] == pytest.approx(2 * 1 / (2 + 2))


@pytest.mark.parametrize("benchmark, fields, line", [
    ("resnet50", {"accuracy": 76.042, "good": 38021, "total": 50000}, "accuracy=76.042%, good=38021, total=50000"),
    ("ssd-resnet34", {"mAP": 20.117}, "mAP=20.117%"),
    ("ssd-mobilenet", {"mAP": 22.91}, "mAP=22.910%"),
    ("bert-99", {"exact_match": 83.09366130558183, "f1": 90.37586600946241},
     '{"exact_match": 83.09366130558183, "f1": 90.37586600946241}'),
    ("rnnt", {"wer": 7.45450855712643, "accuracy": 100 - 7.45450855712643},
     "Word Error Rate: 7.45450855712643%, accuracy=92.54549144287357%"),
    ("dlrm-99.9", {"AUC": 80.185, "accuracy": 96.608, "good": 86114148, "total": 89137319, "queries": 330067},
     "AUC=80.185%, accuracy=96.608%, good=86114148, total=89137319, queries=330067"),
    ("3d-unet-99", {"mean": 0.8544, "whole tumor": 0.9132, "tumor core": 0.8698, "enhancing tumor": 0.7802},
     "Accuracy: mean = 0.85440, whole tumor = 0.9132, tumor core = 0.8698, enhancing tumor = 0.7802"),
])
def test_accuracy_lines_match_real_mlperf_scripts(benchmark, fields, line):
    assert scoring.format_accuracy_line(benchmark, fields) == line


def test_accuracy_log_round_trip_and_files(tmp_path):
    spans = {3: np.array([5, 9], dtype=np.int32), 7: np.array([1, 1], dtype=np.int32)}
    log = [{"seq_id": n, "qsl_idx": i, "data": a.tobytes().hex().upper()} for n, (i, a) in enumerate(spans.items())]
    path = tmp_path / scoring.ACCURACY_LOG
    path.write_text(json.dumps(log))
    decoded = scoring.read_accuracy_log(path, "bert")
    assert sorted(decoded) == [3, 7]
    assert decoded[3].tolist() == [[5, 9]]

    result = scoring.AccuracyResult("resnet50", "accuracy", 75.0, {"accuracy": 75.0, "good": 3, "total": 4})
    text, data = scoring.write_accuracy(tmp_path, result)
    assert text.read_text().splitlines() == [
        "accuracy=75.000%, good=3, total=4", f"hash={hashlib.sha256(path.read_bytes()).hexdigest()}"]
    assert json.loads(data.read_text()) == {"benchmark": "resnet50", "metric": "accuracy", "value": 75.0,
                                            "reference": 100.0, "fields": {"accuracy": 75.0, "good": 3, "total": 4}}


def test_score_requires_every_reference_sample():
    ref = {0: np.array([1], dtype=np.int32), 1: np.array([2], dtype=np.int32)}
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        scoring.score("resnet50", {0: ref[0]}, ref, lambda i: {})
    result = scoring.score("resnet50-99", {0: ref[0], 1: np.array([3], dtype=np.int32)}, ref, lambda i: {})
    assert (result.benchmark, result.metric, result.value) == ("resnet50", "accuracy", 50.0)
    assert result.fields == {"accuracy": 50.0, "good": 1, "total": 2}
