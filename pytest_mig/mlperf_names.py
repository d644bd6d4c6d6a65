"""MLPerf's names, defined once: LoadGen's output files and benchmark names.

Every module that names a LoadGen file or compares benchmark names imports them from here:
the harness adapters, the result parsers and folder readers, the reports, the workload
program. Bottom layer, standard library only.
"""
from __future__ import annotations

import re

# What LoadGen writes into its log folder (mlperf_log_accuracy.json in accuracy mode), and
# accuracy.txt, the result line of MLPerf's accuracy script beside them.
SUMMARY_FILE = "mlperf_log_summary.txt"
DETAIL_FILE = "mlperf_log_detail.txt"
ACCURACY_LOG = "mlperf_log_accuracy.json"
ACCURACY_FILE = "accuracy.txt"
LOADGEN_FILES = (SUMMARY_FILE, DETAIL_FILE, ACCURACY_FILE)  # what a run's folder is found by

# Accuracy-target variants (bert-99, bert-99.9) and v5.0's interactive folders name one
# benchmark; so do the folder names submitters use (v0.5 names, LLM spellings, edge variants).
SUFFIX = re.compile(r"(?:-interactive)?(?:-99(?:\.9)?)?$")
ALIASES = {"resnet": "resnet50", "ssd-small": "ssd-mobilenet", "ssd-large": "ssd-resnet34",
           "llama3_1-405b": "llama3.1-405b", "llama3_1-8b": "llama3.1-8b", "llama3.1-8b-edge": "llama3.1-8b",
           "llama3_1-8b-edge": "llama3.1-8b", "sdxl": "stable-diffusion-xl", "yolo-95": "yolo",
           "wan22-a14b": "wan-2.2-t2v-a14b", "q3vl": "qwen3-vl-235b-a22b"}


def normalize_benchmark(benchmark: str) -> str:
    """'BERT-99' -> 'bert', 'dlrm-99.9' -> 'dlrm', 'resnet' -> 'resnet50', 'llama3_1-8b' -> 'llama3.1-8b'."""
    name = SUFFIX.sub("", benchmark.strip().lower())
    return ALIASES.get(name, name)
