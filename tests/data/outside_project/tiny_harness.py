"""The user's harness: real MLCommons LoadGen driving a trivial SUT (1 ms per sample).

The main runs its test and exits 0; a background prints its ready line and keeps
running LoadGen Offline tests until pytest-mig stops it (it dies of SIGTERM, which
pytest-mig records as `stopped by pytest-mig`).
"""
from __future__ import annotations

import argparse
import time

import mlperf_loadgen as lg

SCENARIOS = {"SingleStream": lg.TestScenario.SingleStream, "Offline": lg.TestScenario.Offline}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--min-duration-ms", type=int, required=True)
    ap.add_argument("--min-query-count", type=int, required=True)
    ap.add_argument("--sample-count", type=int, required=True)
    ap.add_argument("--role", required=True)
    args = ap.parse_args()

    def issue(samples):
        time.sleep(0.001 * len(samples))
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in samples])

    sut = lg.ConstructSUT(issue, lambda: None)
    qsl = lg.ConstructQSL(args.sample_count, args.sample_count, lambda s: None, lambda s: None)
    settings = lg.TestSettings()
    settings.scenario = SCENARIOS[args.scenario]
    settings.mode = lg.TestMode.PerformanceOnly
    settings.min_duration_ms = min(args.min_duration_ms, 2000)
    settings.min_query_count = args.min_query_count
    settings.offline_expected_qps = 2000
    settings.single_stream_expected_latency_ns = 1_000_000
    out = lg.LogOutputSettings()
    out.outdir = args.log_dir
    log = lg.LogSettings()
    log.log_output = out
    log.enable_trace = False
    print("Starting running actual test.", flush=True)
    while True:
        lg.StartTestWithLogSettings(sut, qsl, settings, log)
        if args.role == "main":
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
