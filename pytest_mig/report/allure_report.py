"""Allure labels, parameters, steps and attachments for one case, only when `--alluredir` is given.

epic = suite, feature = benchmark, story = scenario. Every parameter is stable for a case
(no run id or time), so Allure's historyId, and with it the trend and retries views, carries
over between runs.
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Any

import allure
from allure_commons.model2 import Status, StatusDetails, TestStepResult
from allure_commons.utils import uuid4

from pytest_mig.errors import ResultParseError
from pytest_mig.io import UnsafeFile, read_bytes, read_tail
from pytest_mig.mlperf_names import ACCURACY_FILE, SUMMARY_FILE
from pytest_mig.redact import mask_argv
from pytest_mig.report.busy import busy_text
from pytest_mig.report.slices_text import aggregate_label, slices_table
from pytest_mig.report.timeline import CSV_NAME
from pytest_mig.results.detail import parse_detail

TAIL_BYTES = 64 * 1024
ATTACH_CAP = 4 << 20  # a LoadGen summary or accuracy file is KiBs
DETAIL_MESSAGES = 50  # warnings/errors shown in the detail excerpt; the rest are counted


def enabled(config) -> bool:
    return bool(getattr(config.option, "allure_report_dir", None))


def partition_kind(slot: Any) -> str:
    return slot.main.kind if slot is not None else "unknown"


def describe(config, out, session, slot=None) -> None:
    """Labels, parameters, phase steps and attachments of the case that just ran."""
    if not enabled(config):
        return
    case = out.case
    allure.dynamic.epic(case.suite)
    allure.dynamic.feature(case.benchmark)
    allure.dynamic.story(case.scenario)
    backend = session.topology().backend
    kind = partition_kind(slot)
    allure.dynamic.tag(case.mode, case.scenario, f"partition:{kind}",
                       "simulated" if backend == "simulated" else "hardware",
                       f"background:{case.background_lifetime}")
    for key, value in (("MIG profile", case.profile), ("test mode", case.mode),
                       ("GPU model", case.gpu_model), ("partition kind", kind),
                       ("harness", session.settings.harness),
                       ("run profile", case.run_profile.name), ("GPU backend", backend),
                       ("background", " + ".join(case.background) or "none")):
        allure.dynamic.parameter(key, value)
    hide_case_parameter(config, case)
    # Figures change run to run: shown, but excluded from Allure's historyId (trends carry over).
    for key, value in figures(out).items():
        allure.dynamic.parameter(key, value, excluded=True)
    allure.dynamic.description(description(out, backend))
    emit_steps(config, out)
    r = out.result
    if r is not None:
        _attach_file(allure, r.files.get("summary"), SUMMARY_FILE)
        if r.files.get("detail"):
            allure.attach(detail_excerpt(Path(r.files["detail"])), name="detail excerpt",
                          attachment_type=allure.attachment_type.TEXT)
        _attach_file(allure, r.files.get("accuracy"), ACCURACY_FILE)
    if getattr(out, "slices", None) is not None:
        allure.attach(slices_table(out.slices), name="slices and aggregate",
                      attachment_type=allure.attachment_type.TEXT)
    if out.health.workloads:
        allure.attach(health_table(out), name="background health",
                      attachment_type=allure.attachment_type.TEXT)
    if out.commands:
        allure.attach(commands_text(out.commands), name="commands",
                      attachment_type=allure.attachment_type.TEXT)
    timeline = Path(out.test_dir) / CSV_NAME
    if timeline.exists():
        allure.attach.file(str(timeline), name="GPU metric timeline (CSV)",
                           attachment_type=allure.attachment_type.CSV)
    if timeline.with_suffix(".png").exists():
        allure.attach.file(str(timeline.with_suffix(".png")), name="GPU metric timeline",
                           attachment_type=allure.attachment_type.PNG)
    if out.main is not None:
        _attach_tail(allure, out.main.log_path, "main.log")
    if "main-isolated" in out.commands:  # --mig-isolated-baseline: the main alone, first
        _attach_tail(allure, Path(out.test_dir) / "main-isolated.log", "main-isolated.log")
    for bg in out.backgrounds:
        _attach_tail(allure, bg.log_path, f"{bg.name}.log (tail)")


def hide_case_parameter(config, case) -> None:
    """The raw `mig_case` dataclass parameter: its value becomes the case id and it is hidden
    (the readable parameters above say the same); Allure's historyId still uses the original."""
    listener = config.pluginmanager.get_plugin("allure_listener")
    logger = getattr(listener, "allure_logger", None)
    result = logger.get_test(None) if logger is not None else None
    for p in getattr(result, "parameters", None) or []:
        if p.name == "mig_case":
            p.value, p.mode = repr(case.id), "hidden"


def figures(out) -> dict[str, str]:
    """Headline metric, accuracy, interference, aggregate, GPU busy as parameter values."""
    shown: dict[str, str] = {}
    r = out.result
    if r is not None and r.metric_value is not None:
        value = r.metric_value
        if "(ns)" in r.metric_name:
            shown["headline"] = f"{r.metric_name.replace('(ns)', '(ms)')} = {value / 1e6:.4g}"
        else:
            shown["headline"] = f"{r.metric_name} = {value:.4g}"
        shown["result"] = r.result_text or "none"
    if r is not None and r.accuracy_value is not None:
        shown["accuracy"] = (f"{r.accuracy_metric} = {r.accuracy_value:.4f} "
                             f"(target {out.accuracy_target:.4f})")
    if out.interference is not None:
        shown["interference"] = f"{out.interference:.1%}"
    untrusted = getattr(out, "interference_untrusted", None)
    if untrusted is not None:
        value = untrusted["value"]
        shown["interference UNTRUSTED"] = (("n/a" if value is None else f"{value:.1%}")
                                           + f": {untrusted['reason']}")
    agg = getattr(out, "slices", None)
    if agg is not None:
        for b in agg.benchmarks.values():
            shown[f"aggregate {b.benchmark}"] = aggregate_label(b)
        if agg.total_normalised is not None:  # never samples/s of different models added
            shown["aggregate all benchmarks (normalised)"] = (
                f"{agg.total_normalised:.3g} isolated-rate units")
    busy = getattr(out, "gpu_busy", None) or {}
    if busy:
        shown["GPU busy main"] = f"{busy_text(busy)} ({busy.get('source', '')})"
        for name, fig in (busy.get("backgrounds") or {}).items():
            shown[f"GPU busy {name}"] = (f"{busy_text({**fig, 'simulated': busy.get('simulated')})}"
                                         f" ({fig.get('source', '')})")
    for label, text in activity_labels(getattr(out, "activity", None) or {}).items():
        shown[f"activity {label}"] = text
    return shown


def activity_labels(activity: dict) -> dict[str, str]:
    """Per-slice GPM means as short text, e.g. `SM 96.6%, occupancy 14.3%, ...`."""
    names = (("sm_util_pct", "SM"), ("sm_occupancy_pct", "occupancy"),
             ("dram_bw_util_pct", "DRAM BW"), ("tensor_util_pct", "tensor"))
    out = {}
    for label, means in activity.items():
        if isinstance(means, dict):
            out[label] = ", ".join(f"{n} {means[k]:.1f}%" if means.get(k) is not None
                                   else f"{n} n/a" for k, n in names)
    return out


def description(out, backend: str) -> str:
    """A short Markdown description: what ran where, and the figures."""
    case = out.case
    lines = [f"**{case.benchmark} {case.scenario} {case.mode}** on MIG profile "
             f"`{case.profile}` of {case.gpu_model}, backgrounds: "
             f"{', '.join(case.background) or 'none'} ({case.background_lifetime})."]
    if backend == "simulated":
        lines.append("**SIMULATED GPU**: no hardware was used; figures are CPU timings.")
    lines += [f"- {k}: {v}" for k, v in figures(out).items()]
    lines += [f"- **warning**: {w}" for w in getattr(out, "warnings", None) or []]
    return "\n\n".join(lines[:2]) + ("\n\n" + "\n".join(lines[2:]) if lines[2:] else "")


def _attach_file(allure, path, name: str) -> None:
    """A workload's file as an attachment, read through the guarded reader (a FIFO or a
    device planted there is named, never copied or waited on)."""
    if not path or not os.path.lexists(path):
        return
    try:
        data = read_bytes(Path(path), ATTACH_CAP)
    except (UnsafeFile, OSError) as exc:
        data = f"not attached: {exc}".encode()
    allure.attach(data, name=name, attachment_type=allure.attachment_type.TEXT)


def _attach_tail(allure, path: Path, name: str) -> None:
    if not os.path.lexists(path):
        return
    allure.attach(tail_text(Path(path)), name=name, attachment_type=allure.attachment_type.TEXT)


def tail_text(path: Path, limit: int = TAIL_BYTES) -> str:
    try:
        raw, size = read_tail(path, limit)
    except (UnsafeFile, OSError) as exc:
        return f"not attached: {exc}"
    data = raw.decode("utf-8", "replace")
    return (f"[... first {size - limit} bytes cut ...]\n" if size > limit else "") + data


def detail_excerpt(path: Path) -> str:
    """Verdict, errors, warnings (first few) and effective settings of a LoadGen detail log."""
    try:
        d = parse_detail(path)
    except ResultParseError as exc:
        return f"{path}: unreadable: {exc}"
    lines = [f"source: {path}", f"loadgen_version: {d.loadgen_version or '?'}",
             f"result_validity: {d.result_validity or '(run ended before the verdict)'}"]
    if d.malformed:
        lines.append(f"malformed :::MLLOG lines: {len(d.malformed)} "
                     f"(first at line {d.malformed[0]})")
    for title, messages in (("errors", d.errors), ("warnings", d.warnings)):
        lines.append(f"{title}: {len(messages)}")
        for m in messages[:DETAIL_MESSAGES]:
            lines.append(f"  line {m.line}: {m.key}: {m.value}")
        if len(messages) > DETAIL_MESSAGES:
            lines.append(f"  ... and {len(messages) - DETAIL_MESSAGES} more")
    lines.append("effective settings:")
    lines += [f"  {k}: {v}" for k, v in sorted(d.effective.items())]
    return "\n".join(lines) + "\n"


def _rel(t: float | None, origin: float | None) -> str:
    if t is None:
        return "-"
    return f"{t - origin:+.2f}s" if origin is not None else time.strftime("%H:%M:%S",
                                                                           time.localtime(t))


def health_table(out) -> str:
    """One row per background workload; times relative to the main's start."""
    origin = out.phases.get("main_start")
    rows = [("workload", "benchmark", "start", "ready", "end", "exit", "margin", "healthy",
             "problems")]
    for w in out.health.workloads:
        rows.append((w.name, w.benchmark, _rel(w.started_at, origin), _rel(w.ready_at, origin),
                     _rel(w.ended_at, origin), "-" if w.exit_code is None else str(w.exit_code),
                     "-" if w.margin_s is None else f"{w.margin_s:+.2f}s",
                     "yes" if w.healthy else "NO", "; ".join(w.problems) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    text = ["  ".join(c.ljust(wd) for c, wd in zip(r, widths)).rstrip() for r in rows]
    note = ("times relative to the main's start; margin = background end - main end"
            if origin is not None else "main never started: wall-clock times")
    return "\n".join(text + ["", note]) + "\n"


def commands_text(commands: dict[str, list[str]]) -> str:
    return "".join(f"# {name}\n{shlex.join(mask_argv(argv))}\n\n"
                   for name, argv in commands.items())


Step = tuple[str, float, float, bool, str]  # name, start, stop, ok, message


def _steps(out) -> list[tuple[str, float, float, bool, str, list[Step]]]:
    """(name, start, stop, ok, message, children) for each phase reached, in order."""
    ph, now = out.phases, time.time()
    case, bgs, steps = out.case, out.backgrounds, []
    if bgs:
        first = min(b.started_at for b in bgs)
        started = ph.get("backgrounds_started", max(b.started_at for b in bgs))
        steps.append((f"start {len(bgs)} background workload(s)", first, started, True, "", []))
        ready = [b for b in bgs if b.ready_at is not None]
        end = ph.get("backgrounds_ready", max([b.ready_at for b in ready] or [started]))
        children = [(f"{b.name} ready after {b.ready_at - b.started_at:.2f} s" if b.ready_at
                     else f"{b.name} never ready", b.started_at, b.ready_at or end,
                     b.ready_at is not None, "") for b in bgs]
        ok = "backgrounds_ready" in ph
        steps.append((f"backgrounds ready {len(ready)}/{len(bgs)}", started, end, ok,
                      "" if ok else "not every background reached its timed phase", children))
    if "main_start" in ph:
        end = ph.get("main_end") or (out.main.ended_at if out.main else None) or now
        r = out.result
        ok = bool(out.main is not None and out.main.exit_code == 0 and r is not None
                  and (r.valid or case.mode != "performance"))
        why = "" if ok else (out.why_invalid() if out.main and out.main.exit_code == 0
                             else "main did not finish with exit code 0")
        steps.append((f"main {case.benchmark} {case.scenario} {case.mode}", ph["main_start"], end,
                      ok, why, []))
        if out.health.workloads:
            last = max([w.ended_at for w in out.health.workloads if w.ended_at] or [end])
            steps.append(("background health check", end, max(last, end),
                          out.background_healthy, "; ".join(out.health.problems()), []))
    return steps


def emit_steps(config, out) -> None:
    """Allure steps after the fact, with the phases' real start and stop times."""
    listener = config.pluginmanager.get_plugin("allure_listener")
    reporter = getattr(listener, "allure_logger", None)
    if reporter is None or not hasattr(reporter, "start_step"):
        for name, *_ in _steps(out):  # an allure-pytest without its reporter: names only
            with allure.step(name):
                pass
        return
    for name, start, stop, ok, message, children in _steps(out):
        uuid = _start_step(reporter, None, name, start, stop, ok, message)
        for child in children:
            reporter.stop_step(_start_step(reporter, uuid, *child))
        reporter.stop_step(uuid)


def _start_step(reporter, parent, name: str, start: float, stop: float, ok: bool,
                message: str) -> str:
    uuid = uuid4()
    step = TestStepResult(name=name, start=int(start * 1000), stop=int(stop * 1000),
                          status=Status.PASSED if ok else Status.FAILED,
                          statusDetails=StatusDetails(message=message) if message else None)
    reporter.start_step(parent, uuid, step)
    return uuid
