"""`--mig-shard=I/N`: run one shard of the collected cases (plan/shard.py plans the split).

Rules:
- A thin hook object: options.py declares --mig-shard and --mig-shard-durations, plugin.py
  registers a ShardPlugin when --mig-shard is given; the plan itself is plan/shard.py's.
- The whole plan is computed after every other collection filter (-k, -m: trylast), from
  the durations file as it is when collection starts. Shards must read a durations file no
  shard writes to: each shard reports into its own --mig-reports folder and the merge job
  writes the fleet's history.jsonl (deploy/slurm, deploy/k8s do so).
- A shard names itself: its run folder ends in `-shard-I-of-N`, results.json's run header
  has `shard`, and shard.json in the run folder holds the plan, its fingerprint, the suites
  (name and sha256 of suite.yaml) and the git commit; `pytest-mig merge` checks them.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pytest_mig.surface.collect import suite_path_for
from pytest_mig.errors import MigError
from pytest_mig.plan.shard import (SHARD_MARK, ShardSpec, measured_durations, plan_shards,
                                   shard_items)
from pytest_mig.io import write_json_atomic
from pytest_mig.plan.ordering import case_layout
from pytest_mig.report.history import HISTORY_NAME, read_history
from pytest_mig.types import Case

SHARD_FILE = "shard.json"
COMMIT_ENV = "PYTEST_MIG_COMMIT"  # set by deploy scripts where the checkout has no .git


def git_commit(root: Path) -> str:
    """The commit under test: $PYTEST_MIG_COMMIT, else `git rev-parse HEAD`, else 'unknown'."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def _case_of(item) -> Case | None:
    case = getattr(getattr(item, "callspec", None), "params", {}).get("mig_case")
    return case if isinstance(case, Case) else None


def _suites(items) -> dict[str, str]:
    """Suite name -> sha256 (12 hex) of its suite.yaml, for every case collected."""
    out: dict[str, str] = {}
    seen: set[Path] = set()
    for item in items:
        case = _case_of(item)
        module = Path(str(item.path))
        if case is None or module in seen:
            continue
        seen.add(module)
        try:
            text = suite_path_for(module).read_bytes()
        except (MigError, OSError):
            continue
        out[case.suite] = hashlib.sha256(text).hexdigest()[:12]
    return out


class ShardPlugin:
    """Keeps this shard's items; writes shard.json; names the shard in the run header."""

    def __init__(self, config, session, spec: ShardSpec) -> None:
        self.config, self.session, self.spec = config, session, spec
        # --mig-shard-durations: an existing file, checked when the command line was parsed.
        self.durations_path = (session.settings.shard_durations
                               or session.reports_root / HISTORY_NAME)
        self.commit = git_commit(Path(str(config.rootpath)))
        session.record_shard({**spec.to_dict(), "commit": self.commit})  # in the run header
        self.skipped: dict[str, str] = {}
        self.empty_by_plan = False

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, session, config, items) -> None:
        fixed_layout = self.session.settings.layout
        triples = []
        for item in items:
            case = _case_of(item)
            layout = None if case is None or fixed_layout else case_layout(case)
            triples.append((item.nodeid, case, layout))
        # Lines a shard wrote itself never count: a shard finishing early must not change the
        # plan of a shard still collecting (the merge writes lines under the fleet's run id).
        durations = measured_durations(e for e in read_history(self.durations_path)
                                       if SHARD_MARK not in e.run_id)
        plan = plan_shards(shard_items(triples, durations, self.session.settings.main_startup_s),
                           self.spec.count)
        mine = plan.part(self.spec)
        rank = {nodeid: n for n, nodeid in enumerate(mine)}
        keep = sorted((i for i in items if i.nodeid in rank), key=lambda i: rank[i.nodeid])
        drop = [i for i in items if i.nodeid not in rank]
        if drop:
            config.hook.pytest_deselected(items=drop)
        info = {**self.session.shard, "plan": plan.fingerprint, "suites": _suites(items),
                "durations": {"source": str(self.durations_path), "measured": plan.measured,
                              "estimated": plan.estimated},
                "cases": len(keep), "total_cases": len(items),
                "estimated_s": plan.loads[self.spec.index - 1], "loads_s": list(plan.loads),
                "layouts": [g for g in plan.groups[self.spec.index - 1]],
                "alluredir": self._alluredir(config), "nodeids": list(mine), "shards": [list(s) for s in plan.shards]}
        # xdist workers compute the same plan: identical content, written atomically.
        write_json_atomic(self.session.ensure_run_dir() / SHARD_FILE, info)
        self.empty_by_plan = bool(items) and not keep
        items[:] = keep

    @staticmethod
    def _alluredir(config) -> str | None:
        given = getattr(config.option, "allure_report_dir", None)
        return str(Path(config.invocation_params.dir, given).resolve()) if given else None

    def pytest_runtest_logreport(self, report) -> None:
        # Skipped cases write no record: name them so the merge does not call them missing.
        if report.skipped and report.when in ("setup", "call"):
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(
                report.longrepr)
            self.skipped[report.nodeid] = str(reason).removeprefix("Skipped: ")

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session) -> None:
        path = self.session.run_dir / SHARD_FILE
        if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.empty_by_plan:
            session.exitstatus = pytest.ExitCode.OK  # more shards than cases: nothing to do
        if hasattr(self.config, "workerinput") or not self.skipped or not path.is_file():
            return
        info = json.loads(path.read_text())
        info["skipped"] = dict(sorted(self.skipped.items()))
        write_json_atomic(path, info)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if hasattr(self.config, "workerinput"):
            return
        try:
            info: dict[str, Any] = json.loads((self.session.run_dir / SHARD_FILE).read_text())
        except (OSError, ValueError):
            return
        terminalreporter.write_line(
            f"pytest-mig: {info['name']}: {info['cases']} of {info['total_cases']} case(s), "
            f"{len(info['layouts'])} layout group(s), estimated {info['estimated_s']:.0f} s "
            f"(plan {info['plan']}; durations: {info['durations']['measured']} measured, "
            f"{info['durations']['estimated']} estimated); merge with `pytest-mig merge`")

