"""The guardian: a small process that outlives pytest only to stop pytest's workloads.

Run as `python -m pytest_mig.orchestration.guardian NOTE_FILE` by process.py, once per pytest
process, in a session of its own, the read end of a pipe as its stdin; only pytest holds the
write end. pytest writes `+PGID START_TICKS` when a workload starts and `-PGID` once it is
reaped. End of file there means pytest is gone (kill -9, the OOM killer, os._exit): every
group still listed whose leader is the same process (its start time unchanged, so a reused
pid is never hit) gets SIGTERM, then SIGKILL GRACE_S later, whatever the harness (a user's
command, NVIDIA's make, the built-in workload). A line for each goes to NOTE_FILE (the run's
orphans.log). It imports the standard library only: it starts fast and never needs pytest.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

GRACE_S = 2.0


def start_ticks(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    except (OSError, IndexError):
        return None


def main(argv: list[str]) -> int:
    note = Path(argv[1]) if len(argv) > 1 and argv[1] else None
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # only end of file or SIGKILL ends a guardian
    groups: dict[int, str] = {}
    pending = b""
    while True:
        data = os.read(0, 4096)
        if not data:
            break
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            text = line.decode("ascii", "replace").strip()
            if text.startswith("+") and " " in text:
                pgid, ticks = text[1:].split(" ", 1)
                groups[int(pgid)] = ticks
            elif text.startswith("-"):
                groups.pop(int(text[1:]), None)
    live = {g: t for g, t in groups.items() if start_ticks(g) == t}
    if not live:
        return 0
    for pgid in live:
        _signal(pgid, signal.SIGTERM)
    if note is not None:  # noted first: SIGKILL follows whatever happens to the note
        try:
            with open(note, "a", encoding="utf-8") as fh:
                for pgid in live:
                    fh.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} guardian: killed "
                             f"workload group {pgid}: the pytest process that started it "
                             "died without stopping it\n")
        except OSError:
            pass
    time.sleep(GRACE_S)
    for pgid in live:
        _signal(pgid, signal.SIGKILL)
    return 0


def _signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main(sys.argv))
