"""GPU metric timeline of one case: a sampler thread writing CSV as it goes, and its reader.

Per GPU: utilisation, memory, power, SM clock, temperature; per MIG device: memory used.
NVML reports no utilisation for MIG devices (nor for a GPU in MIG mode): those cells are
`n/a`, never estimated. Simulated runs say so in a header line and in the `source` column.
"""
from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from pytest_mig.errors import MigError
from pytest_mig.gpu.gpm import GpmReader
from pytest_mig.report.busy import gpu_busy, main_window, slot_shares
from pytest_mig.report.files import write_problem
from pytest_mig.report.plot_timeline import write_timeline_png
from pytest_mig.report.plotting import MISSING
from pytest_mig.workload_contract import PATH_RECORD, planned_run_s

NA = "n/a"
MIB = 1024 * 1024
GPU_COLUMNS = ("gpu_util_pct", "gpu_mem_used_mib", "gpu_mem_total_mib", "power_w",
               "sm_clock_mhz", "temp_c")
CSV_NAME = "timeline.csv"
GPM_METRICS = ("sm_util_pct", "sm_occupancy_pct", "dram_bw_util_pct", "tensor_util_pct")
PHASE_PREFIX = "# phase: "


@dataclass
class Timeline:
    """A timeline CSV read back: time axis, numeric series (None = n/a), phases, header."""

    t: list[float] = field(default_factory=list)  # seconds since the sampler started
    series: dict[str, list[float | None]] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)  # name -> seconds since start
    meta: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    start_unix: float = 0.0

    @property
    def simulated(self) -> bool:
        return self.meta.get("source", "").startswith("SIMULATED")

    def mig_labels(self) -> list[str]:
        tail = "_mem_used_mib"
        return [c[4:-len(tail)] for c in self.series if c.startswith("mig_") and c.endswith(tail)]


def _number(text: str) -> float | None:
    """A cell's value; n/a, empty and non-finite ('nan' in a timeline written before GPM
    values were checked) are None."""
    if text in ("", NA):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


def read_timeline(path: Path) -> Timeline:
    """Parse a timeline CSV written by MetricsSampler (comment lines carry header and phases)."""
    tl = Timeline()
    columns: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.startswith(PHASE_PREFIX):
            name, _, rest = line[len(PHASE_PREFIX):].partition(" unix=")
            tl.phases[name.strip()] = float(rest)
        elif line.startswith("# error: "):
            tl.errors.append(line[len("# error: "):])
        elif line.startswith("# "):
            key, sep, value = line[2:].partition(": ")
            if sep:
                tl.meta[key] = value
        elif not columns:
            columns = line.split(",")
            tl.series = {c: [] for c in columns[3:]}
        elif line.strip():
            cells = line.split(",")
            if len(cells) != len(columns):
                continue  # a line cut short by a crash
            tl.t.append(float(cells[1]))
            for c, v in zip(columns[3:], cells[3:]):
                tl.series[c].append(_number(v))
    tl.start_unix = float(tl.meta.get("start_unix", "0") or 0)
    tl.phases = {k: v - tl.start_unix for k, v in tl.phases.items()}
    return tl


def activity_means(tl: Timeline) -> dict[str, Any]:
    """Per-slice GPM means over the main's run (main_start..main_end), from gpm_* columns;
    {"note": why} when the timeline holds none. A mean skips n/a cells (never NaN); a slice
    whose metric had n/a cells in the window says how many (`"n/a": {metric: count}`);
    `"samples"`: the rows in the window."""
    cols = [c for c in tl.series if c.startswith("gpm_")]
    if not cols:
        return {"note": tl.meta.get("gpm", "not sampled")}
    lo = tl.phases.get("main_start", float("-inf"))
    hi = tl.phases.get("main_end", float("inf"))
    rows = [i for i, t in enumerate(tl.t) if lo <= t <= hi]
    out: dict[str, Any] = {}
    for c in cols:
        key = next((m for m in GPM_METRICS if c.endswith("_" + m)), None)
        if key is None:
            continue
        label = c[len("gpm_"):-len(key) - 1]
        cells = [tl.series[c][i] for i in rows]
        vals = [v for v in cells if v is not None and math.isfinite(v)]
        means = out.setdefault(label, {})
        means[key] = round(sum(vals) / len(vals), 2) if vals else None
        if len(vals) < len(cells):
            means.setdefault("n/a", {})[key] = len(cells) - len(vals)
    for means in out.values():
        means["samples"] = len(rows)
    return out


def _why(exc: Exception) -> str:
    """Our errors carry their fix in the text; anything else is named by its type."""
    return str(exc) if isinstance(exc, MigError) else f"{type(exc).__name__}: {exc}"


def _fmt(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return NA
    return str(value) if isinstance(value, int) else f"{value:.{digits}f}"


class MetricsSampler:
    """Samples one GPU (and its MIG devices) every `interval_s` into `out_csv` from a thread.

    `mig_uuids`: {label: "MIG-..."} or a list of MIG UUIDs (labelled mig0, mig1, ...).
    `phases`: a dict filled live by the run (HeteroOutcome.phases); new keys become marks.
    `progress`: called with "main running 12 s / expected 40 s" every `progress_every_s`;
    once the main has written its plan to `plan_file` (the built-in harness's PATH_RECORD, at
    its ready line: calibrated at its precision under the load present) "/ planned 17 s" instead.
    """

    def __init__(self, nvml: Any, gpu_index: int, mig_uuids: Mapping[str, str] | Sequence[str],
                 interval_s: float, out_csv: Path, *, phases: Mapping[str, float] | None = None,
                 progress: Callable[[str], None] | None = None,
                 expected_main_s: float | None = None, progress_every_s: float = 10.0,
                 gpu_label: str = "", gpm: Any = None, plan_file: Path | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.nvml, self.gpu_index, self.interval_s = nvml, gpu_index, interval_s
        self.migs = (dict(mig_uuids) if isinstance(mig_uuids, Mapping)
                     else {f"mig{i}": u for i, u in enumerate(mig_uuids)})
        self.out_csv = Path(out_csv)
        self.phases = phases
        self.progress, self.expected_main_s = progress, expected_main_s
        self.progress_every_s = progress_every_s
        self.plan_file, self.planned_main_s = plan_file, None
        self.gpu_label = gpu_label
        self.gpm = gpm  # gpu/gpm.py GpmReader: per-slice activity columns, when supported
        self.marks: dict[str, float] = {}
        self.samples = 0
        self._errors: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fh: Any = None
        self._t0 = 0.0
        self._last_progress = 0.0

    @property
    def png_path(self) -> Path:
        return self.out_csv.with_suffix(".png")

    def _header(self) -> list[str]:
        simulated = bool(getattr(self.nvml, "simulated", False))
        source = ("SIMULATED (values made up by the NVML simulator, not measured)" if simulated
                  else "measured (real NVML)")
        migs = ", ".join(f"{k}={v}" for k, v in self.migs.items()) or "none"
        cols = ["time_unix", "t_s", "source", *GPU_COLUMNS]
        for label in self.migs:
            cols += [f"mig_{label}_mem_used_mib", f"mig_{label}_util_pct"]
        gpm_note = "not sampled"
        if self.gpm is not None:
            gpm_note = self.gpm.note or ("per slice: " + ", ".join(self.gpm.targets))
            if self.gpm.supported:
                cols += [f"gpm_{label}_{key}" for label in self.gpm.targets
                         for key in self.gpm.ids]
        return [
            "# pytest-mig GPU metric timeline",
            f"# source: {source}",
            f"# gpu: {self.gpu_index} {self.gpu_label}".rstrip(),
            f"# mig_devices: {migs}",
            f"# interval_s: {self.interval_s:g}",
            f"# start_unix: {self._t0:.3f}",
            "# note: NVML reports no utilisation for MIG devices nor for a GPU in MIG mode; "
            f"those cells are {NA} (never estimated). Memory in MiB, power in W, clock in MHz, "
            "temperature in C.",
            f"# gpm: {gpm_note}",
            ",".join(cols),
        ]

    def start(self) -> MetricsSampler:
        self.out_csv.parent.mkdir(parents=True, exist_ok=True)
        self._t0 = time.time()
        self._fh = open(self.out_csv, "w", encoding="utf-8", newline="\n")
        self._write("\n".join(self._header()) + "\n")
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="pytest-mig-sampler", daemon=True)
        self._thread.start()
        return self

    def _write(self, text: str) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.write(text)
                self._fh.flush()  # written as it samples: a crash keeps every line so far

    def mark(self, name: str, at_unix: float | None = None) -> None:
        """Record a phase (e.g. main_start) at `at_unix` (default: now); first mark wins."""
        if name in self.marks:
            return
        at = time.time() if at_unix is None else at_unix
        self.marks[name] = at
        self._write(f"{PHASE_PREFIX}{name} unix={at:.3f}\n")

    def _error(self, text: str) -> None:
        if text not in self._errors:  # one line per distinct problem, not one per sample
            self._errors.add(text)
            self._write(f"# error: {text}\n")

    def _sample(self) -> None:
        now = time.time()
        try:
            m = self.nvml.sample_metrics(self.gpu_index)
        except Exception as exc:  # noqa: BLE001 - telemetry is best effort, never fails a case
            self._error(f"GPU {self.gpu_index}: {_why(exc)}")
            return
        cells = [f"{now:.3f}", f"{now - self._t0:.3f}", "simulated" if m.simulated else "measured",
                 _fmt(m.util_pct), _fmt(m.mem_used / MIB), _fmt(m.mem_total / MIB),
                 _fmt(m.power_w), _fmt(m.sm_clock_mhz), _fmt(m.temp_c)]
        for label, uuid in self.migs.items():
            try:
                used: float | None = self.nvml.mig_memory_used(uuid) / MIB
            except Exception as exc:  # noqa: BLE001 - as above: an n/a cell and one error line
                self._error(f"{label} {uuid}: {_why(exc)}")
                used = None
            cells += [_fmt(used), NA]
        if self.gpm is not None and self.gpm.supported:
            read = self.gpm.read()
            cells += [_fmt(read.get(label, {}).get(key)) for label in self.gpm.targets
                      for key in self.gpm.ids]
            for problem in getattr(self.gpm, "drain_problems", list)():
                self._error(problem)
        self._write(",".join(cells) + "\n")
        self.samples += 1

    def _poll_phases(self) -> None:
        if self.phases is None:
            return
        for name, at in list(self.phases.items()):
            self.mark(name, at)
        if self.progress is None or "main_start" not in self.marks or "main_end" in self.marks:
            return
        now = time.monotonic()
        if now - self._last_progress < self.progress_every_s:
            return
        self._last_progress = now
        elapsed = time.time() - self.marks["main_start"]
        if elapsed < self.progress_every_s * 0.5:
            return  # the run itself just said "main running"
        planned = self._planned()
        expected = (f" / planned {planned:.0f} s" if planned is not None else
                    f" / expected {self.expected_main_s:.0f} s" if self.expected_main_s else "")
        self.progress(f"main running {elapsed:.0f} s{expected}")

    def _planned(self) -> float | None:
        """The main's own plan, read once it is there (a torn or absent file: not yet)."""
        if self.planned_main_s is None and self.plan_file is not None:
            try:
                self.planned_main_s = planned_run_s(json.loads(self.plan_file.read_text()))
            except (OSError, ValueError):
                pass
        return self.planned_main_s

    def _loop(self) -> None:
        next_at = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self.interval_s
            if next_at < time.monotonic():  # fell behind (slow NVML): skip, do not burst
                next_at = time.monotonic() + self.interval_s
            self._poll_phases()
            self._sample()

    def stop(self, phases: Mapping[str, float] | None = None, draw: bool = True) -> Path:
        """Stop sampling, add any phases not marked yet, close the CSV and draw the PNG chart
        (not when `draw` is off: an interrupted run has seconds to write its reports)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=max(5.0, self.interval_s * 5))
            self._thread = None
            self._poll_phases()
            self._sample()
        for name, at in (phases or {}).items():
            self.mark(name, at)
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
        try:
            if not draw:
                note = "# note: chart not drawn: the run was interrupted (the data is above)\n"
            else:
                drawn = write_timeline_png(read_timeline(self.out_csv), self.png_path)
                note = None if drawn else f"# note: chart not drawn: {MISSING}\n"
        except (OSError, ValueError) as exc:
            note = f"# error: chart not drawn: {exc}\n"
        if note:
            with open(self.out_csv, "a", encoding="utf-8") as fh:
                fh.write(note)
        return self.out_csv


@contextlib.contextmanager
def case_timeline(interval: float, session: Any, slot: Any, out: Any,
                  progress: Callable[[str], None] | None = None) -> Iterator[MetricsSampler | None]:
    """Sample `slot`'s GPU every `interval` s (Settings.sample_interval_s) while the block
    runs (a hetero_run.run); stopped, charted on exit.

    Writes <test_dir>/timeline.csv and timeline.png; yields None when sampling is off (interval 0).
    """
    if interval <= 0:
        out.gpu_busy = {"value": None, "source": "not sampled (--mig-sample-interval=0)",
                        "simulated": False, "backgrounds": {}}
        yield None
        return
    migs: dict[str, str] = {}
    if slot.main.kind == "mig":
        migs["main"] = slot.main.device_id
    names = names_of(out.case)[1:]
    for name, part in zip(names, slot.background):
        if part.kind == "mig":
            migs[name] = part.device_id
    expected = session.durations.expect(out.case) if hasattr(session, "durations") else None
    gpm = _gpm_reader(session, slot, out)
    sampler = MetricsSampler(session.nvml, slot.gpu_index, migs, interval,
                             Path(out.test_dir) / CSV_NAME, phases=out.phases, progress=progress,
                             expected_main_s=expected, gpu_label=slot.gpu_model, gpm=gpm,
                             plan_file=Path(out.test_dir) / "main" / PATH_RECORD)
    sampler.start()
    interrupted = False
    try:
        yield sampler
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM: a supervisor's SIGKILL may be seconds away
        interrupted = True
        raise
    finally:
        try:
            sampler.stop(out.phases, draw=not interrupted)
        except OSError as exc:  # disk full, the run folder deleted: one line on the case
            out.warnings.append(write_problem(sampler.out_csv, exc).removeprefix("pytest-mig: "))
        if gpm is not None:
            gpm.close()
        try:
            tl = read_timeline(sampler.out_csv)
            out.activity = activity_means(tl)
        except (OSError, ValueError) as exc:
            out.activity = {"note": f"unreadable timeline: {exc}"}
            tl = None
        window, what = main_window(getattr(out, "main", None))
        out.gpu_busy = (gpu_busy(tl, slot_shares(slot, names_of(out.case)), window, what)
                        if tl is not None else {"value": None, "source": out.activity["note"],
                                                "simulated": False, "backgrounds": {}})


def names_of(case: Any) -> list[str]:
    """The case's workload labels in slot order: main, bg1-<benchmark>, ..."""
    return ["main"] + [f"bg{i}-{b}" for i, b in enumerate(case.background, start=1)]


def _gpm_reader(session: Any, slot: Any, out: Any) -> Any:
    """GPM targets: each MIG partition's GPU instance, else the whole GPU as `gpu`."""
    api = getattr(getattr(session, "nvml", None), "api", None)
    if api is None:
        return None
    targets: dict[str, int | None] = {}
    for name, part in zip(names_of(out.case), (slot.main, *slot.background)):
        if getattr(part, "kind", "") == "mig" and getattr(part, "gi_id", None) is not None:
            targets[name] = part.gi_id
    try:
        return GpmReader(api, slot.gpu_index, targets or {"gpu": None})
    except Exception:  # noqa: BLE001 - telemetry never fails a case
        return None
