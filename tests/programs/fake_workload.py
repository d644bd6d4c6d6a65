"""A small stand-in for a harness, for fault tests: behaves as a JSON script tells it.

Behaviours: valid | invalid (LoadGen INVALID summary) | crash_before_ready |
crash_after_ready (exits 3 a moment after its ready line) | never_ready | exit_nonzero
(finishes its duration, exits 4) | no_summary | early (finishes 0.1 s after ready) |
die_on_sigterm (keeps the default SIGTERM action; others exit 0 when stopped) |
ignore_sigterm (ignores SIGTERM, as a workload slow to honour it: only SIGKILL ends it) |
crash_during_main (a background exiting 3 once the main has started) | crash_after_main
(a background exiting 3 once the main has written its summary) | hang (ready, then sleeps) |
corrupt_summary (a summary cut short and garbled) | gpu_lost (makes the simulated GPU answer
NVML_ERROR_GPU_IS_LOST to the next telemetry read, then dies like a CUDA program would) |
trigger (a main that drops a trigger file beside the script and waits until it is taken) |
crash_on_trigger (a background that takes the trigger and exits 3; else runs normally) |
summary_fifo / summary_devzero (the summary is a FIFO / a symlink to /dev/zero) |
neighbour (registers a foreign process on its simulated GPU device while it runs: what a
GPU neighbour during an isolated baseline looks like to NVML's process list) |
escape (double-forks a setsid grandchild that ignores SIGTERM, then runs normally) |
escape_clean (the same with a clean environment, as sudo or systemd-run give: no marker; it
keeps the workload's stdout) |
sigkill_self (ready, then SIGKILLs itself, as the OOM killer would) |
ansi_crash (prints terminal escapes, NULs and a clear-screen, then exits 3 before ready).
`"metric": "nan"` replaces the headline value of every summary written; `"noise_kb": N`
prints N KiB of noise first.

The script maps a workload name (bg1-bert), its prefix (bg1) or its role to a behaviour;
`"cases": {"resnet50": {...}}` scopes entries to the case whose test directory holds that
text. `"print_env": true` prints the environment first; `"grandchild": true` leaves a
sleeping child in the workload's process group. `--pid-file` records the pid.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data" / "mlperf_logs" / "loadgen-6.0.17"


def behaviour(script: dict, name: str, role: str, log_dir: Path) -> str:
    scoped = [sub for key, sub in (script.get("cases") or {}).items()
              if key in log_dir.parent.name]
    for table in [*scoped, script]:
        how = table.get(name) or table.get(name.split("-")[0]) or table.get(role)
        if how:
            return how
    return "valid"


def wait_for(path: Path, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def lose_gpu(log_dir: Path) -> None:
    """Inject GPU_IS_LOST into the run's simulated GPU (reports/<run>/simulated-gpu.json)."""
    from pytest_mig.gpu.sim.simulator import SimulatedNvml
    state = log_dir.parents[1] / "simulated-gpu.json"
    SimulatedNvml(state).inject_failure("nvmlDeviceGetMemoryInfo", "GPU_IS_LOST")


def plant_neighbour(log_dir: Path) -> tuple[object, int]:
    """A foreign process on this workload's simulated device (the run's simulated-gpu.json)."""
    from pytest_mig.gpu.sim.simulator import SimulatedNvml
    sim = SimulatedNvml(log_dir.parents[1] / "simulated-gpu.json")
    device = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if device.startswith("MIG-"):
        try:
            return sim, sim.register_process(device)
        except Exception:  # noqa: BLE001 - the state may hold the uuid without its prefix
            return sim, sim.register_process(device.removeprefix("MIG-"))
    return sim, sim.register_process(gpu_index=0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--script", required=True)
    ap.add_argument("--role", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--log-dir", required=True)
    ap.add_argument("--min-duration-ms", type=int, default=1000)
    ap.add_argument("--noise-lines", type=int, default=3)
    ap.add_argument("--pid-file", default=None)
    a, _ = ap.parse_known_args()  # extra options (e.g. a token) are the caller's business
    if a.pid_file:
        Path(a.pid_file).write_text(str(os.getpid()))
    script = json.loads(Path(a.script).read_text())
    out = Path(a.log_dir)
    how = behaviour(script, a.name, a.role, out)
    out.mkdir(parents=True, exist_ok=True)
    if script.get("print_env"):
        for key, value in sorted(os.environ.items()):
            print(f"[fake] env {key}={value}", flush=True)
    if script.get("grandchild"):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for i in range(a.noise_lines):
        print(f"[fake] warming up {i}", flush=True)
    for _ in range(int(script.get("noise_kb", 0))):  # a big log (file-size limit tests)
        print("[fake] noise " + "x" * 1010, flush=True)
    if how == "crash_before_ready":
        print("[fake] fatal: cannot open engine", flush=True)
        return 7
    if how == "ansi_crash":
        print("[fake] \x1b[2J\x1b[H\x1b]0;pwned\x07\x1b[31mred\x00nul\x1b[0m fatal", flush=True)
        return 3
    if how == "escape":
        escapee = ("import os, signal, sys, time\n"
                   "if os.fork(): sys.exit(0)\n"
                   "os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   f"open({str(out) + '.escapee'!r}, 'w').write(str(os.getpid()))\n"
                   "time.sleep(3600)\n")
        subprocess.run([sys.executable, "-c", escapee], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    if how == "escape_clean":
        escapee = ("import os, signal, sys, time\n"
                   "if os.fork(): sys.exit(0)\n"
                   "os.setsid(); signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                   f"open({str(out) + '.escapee'!r}, 'w').write(str(os.getpid()))\n"
                   "time.sleep(3600)\n")
        subprocess.run([sys.executable, "-c", escapee], env={}, stderr=subprocess.DEVNULL)
    if how == "never_ready":
        time.sleep(3600)
        return 0
    if how == "ignore_sigterm":  # before the ready line: it is ignoring once it is ready
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("[fake] Starting running actual test.", flush=True)
    if how == "sigkill_self":
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "crash_after_ready":
        time.sleep(0.3)
        print("[fake] segmentation fault (simulated)", flush=True)
        return 3
    if how != "die_on_sigterm" and how != "ignore_sigterm":
        # Stopped in its timed phase (session backgrounds): end cleanly, exit 0.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if how in ("crash_during_main", "crash_after_main"):
        test_dir = out.parent
        wait_for(test_dir / "main.log" if how == "crash_during_main"
                 else test_dir / "main" / "mlperf_log_summary.txt")
        time.sleep(0.1 if how == "crash_during_main" else 0.3)
        print(f"[fake] segmentation fault (simulated, {how})", flush=True)
        return 3
    if how == "hang":
        time.sleep(3600)
        return 0
    trigger = Path(a.script).with_name("trigger")
    if how == "trigger":  # a main that makes a crash_on_trigger background die mid-run
        trigger.write_text(a.name)
        deadline = time.monotonic() + 30
        while trigger.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.2)
    if how == "crash_on_trigger":  # otherwise a normal (session) background
        deadline = time.monotonic() + a.min_duration_ms / 1000
        while time.monotonic() < deadline:
            if trigger.exists():
                trigger.unlink()
                print("[fake] segmentation fault (simulated, on trigger)", flush=True)
                return 3
            time.sleep(0.02)
    if how == "gpu_lost":
        time.sleep(0.1)
        lose_gpu(out)
        print("[fake] CUDA error: GPU is lost (simulated Xid 79: fell off the bus)", flush=True)
        return 1
    duration = {"early": 0.1, "crash_on_trigger": 0.0}.get(how, a.min_duration_ms / 1000)
    neighbour = plant_neighbour(out) if how == "neighbour" else None
    time.sleep(duration)
    if neighbour is not None:
        sim, pid = neighbour
        sim.unregister_process(pid)
    if how == "corrupt_summary":
        text = (DATA / "Offline-valid" / "mlperf_log_summary.txt").read_bytes()
        (out / "mlperf_log_summary.txt").write_bytes(b"\x00\xff garbled \x00" + text[40:90])
    elif how == "summary_fifo":
        os.mkfifo(out / "mlperf_log_summary.txt")
    elif how == "summary_devzero":
        (out / "mlperf_log_summary.txt").symlink_to("/dev/zero")
    elif how != "no_summary":
        src = "Offline-invalid" if how == "invalid" else "Offline-valid"
        text = (DATA / src / "mlperf_log_summary.txt").read_text()
        if script.get("metric"):
            text = text.replace("Samples per second: 318100",
                                f"Samples per second: {script['metric']}")
        (out / "mlperf_log_summary.txt").write_text(text)
    print("[fake] done", flush=True)
    return 4 if how == "exit_nonzero" else 0


if __name__ == "__main__":
    sys.exit(main())
