"""The built-in workload's command-line contract: what the adapter and the child program share.

Bottom layer, standard library only: the plugin side (`harness/loadgen.py`, `run/state.py`,
`report/header.py`) and the child program (`workload/`) both import it, so neither imports
the other. The plugin never imports `pytest_mig.workload`: it launches it as
`python -m pytest_mig.workload` (MODULE). Values written here are written nowhere else.
"""
from __future__ import annotations

MODULE = "pytest_mig.workload"  # `python -m MODULE` runs the child program (workload/cli.py)

SIZES = ("tiny", "small", "full")
# "auto": the CPU's native precision (cpu_native.py: fp16, bf16 or fp32), fp16 on CUDA; the default.
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8", "int4", "fp8")  # fp8: the LLM only
DEFAULT_PRECISION = "auto"
DEVICES = ("auto", "cpu", "cuda")

# Busy fraction of each background's SUT on the CPU: six at 0.1 leave the main its core on a
# 2-core machine. `--mig-harness-opt background_cpu_duty=1` turns pacing off.
BACKGROUND_CPU_DUTY = "0.1"

# The child's record of the path it took (compile mode, cache, time to ready), in its log dir;
# the adapter copies it into results.json. Written at the ready line with the child's plan
# (ready_s, planned_test_s, planned_accuracy_s) and again at the end with what the phases took
# (test_s, accuracy_s).
PATH_RECORD = "harness_path.json"


def planned_run_s(record: dict) -> float | None:
    """Launch to exit as the child planned it (PATH_RECORD fields); None before its ready line."""
    try:
        return float(record["ready_s"]) + float(record["planned_test_s"]) + float(
            record.get("planned_accuracy_s") or 0.0)
    except (KeyError, TypeError, ValueError):
        return None

# The lifeline: the plugin passes the read end of a pipe whose write end only the spawning
# process holds; end of file on it means that process is gone (even SIGKILLed), and the child
# stops itself instead of outliving its run. Its number travels in this variable.
LIFELINE_ENV = "PYTEST_MIG_LIFELINE_FD"

# The partition a workload runs on, "<kind>:<profile>" (kind mig, mps or none): the LLM credits
# its decode with that slice's share of the GPU's memory bandwidth (workload/roofline.py).
SLICE_ENV = "PYTEST_MIG_SLICE"
