"""The `command` backend: any program, from an argv template with {placeholders}.

Options: `command` (argv template, whitespace separated, split before substitution so a
value can never inject extra arguments), `ready` (regex, default NVIDIA's ready line).
The program leaves LoadGen's files in {log_dir}.
"""
from __future__ import annotations

import shlex
from pathlib import Path

from pytest_mig.errors import HarnessError
from pytest_mig.harness.base import READY_PATTERN, collect_loadgen_outputs
from pytest_mig.types import BenchmarkResult, Finished, LaunchSpec, Partition, WorkSpec

FIELDS = ("benchmark", "scenario", "mode", "log_dir", "min_duration_ms", "min_query_count",
          "target_qps", "sample_count", "role", "name", "device")


OPTIONS = ("command", "ready")


def check_options(options: dict[str, str]) -> None:
    """HarnessError for a template that cannot run or an option this harness does not read."""
    if options.get("command"):
        check_template(options["command"])
    unknown = sorted({k.split(".")[0] for k in options} - set(OPTIONS))
    if unknown:
        raise HarnessError(f"--mig-harness-opt {unknown[0]}=...: the command harness has no "
                           f"option {unknown[0]!r}; it reads {', '.join(OPTIONS)} (put the "
                           "program's own options in --mig-command)")


def check_template(text: str) -> None:
    """HarnessError (one line: what, where, the fix) for a template that cannot run."""
    try:
        parts = shlex.split(text)
    except ValueError as exc:
        raise HarnessError(f"--mig-command={text!r}: {exc} (an unclosed quote?); quote each "
                           "argument whole, e.g. --mig-command='prog --name \"{name}\"'") from None
    if not parts:
        raise HarnessError("--mig-command is empty; give the program to run, e.g. "
                           "--mig-command='prog --bench {benchmark} --out {log_dir}'")
    dummy = {f: "x" for f in FIELDS}
    for part in parts:
        try:
            part.format(**dummy)
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise HarnessError(f"--mig-command: bad placeholder in {part!r} ({exc}); allowed: "
                               f"{', '.join('{' + f + '}' for f in FIELDS)}; write {{{{ and }}}} "
                               "for literal braces") from None


class CommandHarness:
    name = "command"
    stop_exit_zero = False  # a user's program promises nothing about SIGTERM

    def __init__(self, options: dict[str, str]) -> None:
        if not options.get("command"):
            raise HarnessError("harness 'command' needs a command template: "
                               "--mig-command='prog --bench {benchmark} --out {log_dir}'")
        self.template = shlex.split(options["command"])
        self.ready = options.get("ready") or READY_PATTERN
        self.options = options

    def launch(self, work: WorkSpec, partition: Partition, env: dict[str, str],
               log_path: Path) -> LaunchSpec:
        values = {"benchmark": work.benchmark, "scenario": work.scenario, "mode": work.mode,
                  "log_dir": str(work.log_dir), "min_duration_ms": work.min_duration_ms,
                  "min_query_count": work.min_query_count, "target_qps": work.target_qps or 0,
                  "sample_count": work.sample_count, "role": work.role, "name": work.name,
                  "device": partition.device_id}
        try:
            argv = tuple(part.format(**values) for part in self.template)
        except (KeyError, IndexError, ValueError) as exc:
            raise HarnessError(f"command template {self.options['command']!r}: bad placeholder "
                               f"{exc}; allowed: {', '.join('{' + f + '}' for f in FIELDS)}") from exc
        return LaunchSpec(argv=argv, env=env, cwd=Path.cwd(), ready_pattern=self.ready,
                          log_path=log_path, result_dir=work.log_dir)

    def collect(self, work: WorkSpec, finished: Finished, result_dir: Path) -> BenchmarkResult:
        return collect_loadgen_outputs(work, result_dir)
