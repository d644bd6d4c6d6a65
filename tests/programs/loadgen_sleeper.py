"""A real MLCommons LoadGen run whose SUT answers at a set rate without a model (no torch).

Each benchmark gets its own service rate (RATES, samples/s; --rate overrides), so the slices
of a case have distinguishable figures. Prints `Starting running actual test.` before
LoadGen's timed phase, writes LoadGen's logs and completions.tsv (the plugin's own
CompletionLog) into --log-dir. SIGTERM ends the run: exit 0 once in the timed phase.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

import mlperf_loadgen as lg

from pytest_mig.workload.completions import CompletionLog

RATES = {"resnet50": 3000.0, "bert": 800.0, "dlrm": 6000.0, "rnnt": 400.0,
         "ssd-resnet34": 200.0, "ssd-mobilenet": 1500.0, "3d-unet": 50.0}
BATCH_S = 0.02  # seconds of service per batch


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--benchmark", required=True)
    ap.add_argument("--scenario", default="Offline")
    ap.add_argument("--log-dir", required=True, type=Path)
    ap.add_argument("--min-duration-ms", type=int, required=True)
    ap.add_argument("--rate", type=float)
    a = ap.parse_args()
    rate = a.rate or RATES.get(a.benchmark.split("-99")[0], 1000.0)
    a.log_dir.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    log = CompletionLog(a.log_dir, every_s=0.05)
    queue: list = []
    cond = threading.Condition()

    batch_size = max(1, int(rate * BATCH_S))
    due = [0.0]  # when the batch in service is done: a virtual clock, so late wake-ups even out

    def worker() -> None:
        while True:
            with cond:
                while not queue:
                    cond.wait()
                batch, queue[:] = queue[:batch_size], queue[batch_size:]
            if not stop.is_set():
                due[0] = max(due[0], time.monotonic()) + len(batch) / rate
                time.sleep(max(0.0, due[0] - time.monotonic()))
                log.add(len(batch))
            lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in batch])

    def issue(samples) -> None:
        with cond:
            queue.extend(samples)
            cond.notify()

    threading.Thread(target=worker, daemon=True).start()
    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(1024, 1024, lambda s: None, lambda s: None)
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, a.scenario)
    ts.mode = lg.TestMode.PerformanceOnly
    ts.offline_expected_qps = rate
    ts.server_target_qps = rate * 0.5
    ts.min_duration_ms = a.min_duration_ms
    ts.min_query_count = 1
    out = lg.LogOutputSettings()
    out.outdir = str(a.log_dir)
    settings = lg.LogSettings()
    settings.log_output = out
    print("[sleeper] Starting running actual test.", flush=True)
    lg.StartTestWithLogSettings(sut, qsl, ts, settings)
    log.close()
    lg.DestroyQSL(qsl)
    lg.DestroySUT(sut)
    print("[sleeper] done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
