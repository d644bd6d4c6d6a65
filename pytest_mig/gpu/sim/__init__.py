"""The NVML simulator family: what `--mig-backend=simulated` talks to instead of a driver.

Modules, each one job (imports point down this list):
- `simulator.py`: `SimulatedNvml`, pynvml's function names, structs and error codes;
- `metrics.py`: the made-up telemetry (power, clocks, utilisation) of a simulated GPU;
- `base.py`: plumbing: locked state transactions, handle lookups, MIG geometry, faults;
- `state.py`: the JSON state file shared by every process of a run (flock + atomic replace).

Rules: the simulator answers from the real profile tables (package data `fixtures/gpus/`), never
imports pytest, and a simulated run says so in its header. Import the class from
`pytest_mig.gpu.sim.simulator`; this package itself imports nothing.
"""
