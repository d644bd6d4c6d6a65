"""The built-in harness's child program: one benchmark under real MLCommons LoadGen.

Run as a command line, `python -m pytest_mig.workload --benchmark ... --log-dir ...` (cli.py);
the plugin launches it (harness/loadgen.py builds the command) and never imports this package.
Modules: cli (arguments, signals), sut (batching SUT, QSL, calibration, TestSettings),
llm (the decoder path with token latencies), batching (the SUT worker loop both share),
stopping (what the signal handler sets or raises),
accel (CUDA graphs, channels-last, device-resident samples), compiled (torch.compile modes),
datasets, scoring (accuracy against the FP32 reference), completions (completion times),
models/ (the PyTorch models). Torch is imported only here, never on the plugin side; what both
sides must agree on (choices, defaults, file names) lives in pytest_mig/workload_contract.py.
This package imports downwards only: workload_contract, mlperf_names, io, results.window,
datadir.
Files the child writes beside LoadGen's logs (harness_path.json, accuracy.txt/.json, the
published summary) are replaced atomically with pytest_mig.io, mode 0o666 (as open() would)
and no fsync, like LoadGen's own logs.
"""
