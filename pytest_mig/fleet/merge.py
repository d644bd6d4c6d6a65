"""Merge the run folders of a fleet's shards into one run folder (`pytest-mig merge`).

Rules:
- Inputs are run folders (reports/<run-id>/ with results.json); the output is a run folder
  of its own, named by its path (its name is the merged run id).
- Refused, with one line naming the folders and the fix, unless `force`: runs of different
  commits or suites (suite name + sha256 of suite.yaml), shards of different plans, the same
  shard twice, a missing shard, a case present in two runs, an output folder that is not
  an earlier merge of the same inputs.
- Every case planned appears exactly once: a planned case without a record (its shard died)
  gets an `error` record saying so.
- Merging twice gives the same folder: test folders are re-copied, Allure files overwritten
  by name, and history lines already in history.jsonl (same run id, case, GPU model) skipped.
- Allure: one results folder (every shard's results, one environment/categories/executor and
  one history/ folder), so `allure generate` draws one trend line for the whole fleet run.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_mig.errors import MigError
from pytest_mig.report import allure_env
from pytest_mig.io import write_atomic, write_json_atomic
from pytest_mig.report.history import HISTORY_NAME, append_history, entry_from_record, read_history
from pytest_mig.report.html import write_index
from pytest_mig.report.records import failure_record

MERGE_FILE = "merge.json"
SHARD_FILE = "shard.json"  # surface/shard_hooks.py writes it
ALLURE_DIR = "allure-results"
ALLURE_RUN_FILES = {"environment.properties", "categories.json", "executor.json"}


class MergeError(MigError):
    """Run folders that cannot be merged (or an output folder that must not be overwritten)."""


@dataclass
class ShardRun:
    """One input run folder, read."""

    path: Path
    header: dict[str, Any]
    records: list[dict[str, Any]]
    shard: dict[str, Any] | None  # shard.json, None for an unsharded run
    comparisons: list[dict[str, Any]] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return str(self.header.get("run_id") or self.path.name)

    @property
    def name(self) -> str:
        return str(self.shard["name"]) if self.shard else self.run_id

    @property
    def commit(self) -> str:
        return str((self.shard or self.header.get("shard") or {}).get("commit", "unknown"))

    @property
    def suites(self) -> dict[str, str]:
        if self.shard and self.shard.get("suites"):
            return dict(self.shard["suites"])
        return {str(r.get("suite")): "?" for r in self.records if r.get("suite")}

    def alluredir(self) -> Path | None:
        given = (self.shard or {}).get("alluredir")
        for cand in ([Path(given)] if given else []) + [self.path / ALLURE_DIR,
                                                        self.path.parent / ALLURE_DIR]:
            if cand.is_dir() and any(cand.glob("*-result.json")):
                return cand
        return None


@dataclass(frozen=True)
class MergeSummary:
    out: Path
    cases: int
    outcomes: dict[str, int]
    missing: list[str]
    history_added: int
    history_path: Path
    allure_results: int
    page: Path

    def lines(self) -> list[str]:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(self.outcomes.items())) or "no cases"
        out = [f"pytest-mig merge: {self.cases} case(s) -> {self.out / 'results.json'} ({counts})",
               f"pytest-mig merge: summary page {self.page}",
               f"pytest-mig merge: history: {self.history_added} new line(s) in "
               f"{self.history_path}"]
        if self.allure_results:
            out.append(f"pytest-mig merge: allure: {self.allure_results} result(s) in "
                       f"{self.out / ALLURE_DIR} (allure generate {self.out / ALLURE_DIR})")
        if self.missing:
            out.append(f"pytest-mig merge: {len(self.missing)} planned case(s) had no record "
                       f"(marked error): {', '.join(self.missing[:5])}"
                       + (" ..." if len(self.missing) > 5 else ""))
        return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MergeError(f"{path}: cannot read it ({exc}); is this a complete pytest-mig run "
                         "folder?") from None


def load_run(path: Path) -> ShardRun:
    """A run folder (reports/<run-id>/) as a ShardRun; MergeError if it has no results.json."""
    path = Path(path)
    if not (path / "results.json").is_file():
        raise MergeError(f"{path}: no results.json; give run folders such as "
                         "reports/<run-id>-shard-1-of-3 (the shard may still be running)")
    data = _read_json(path / "results.json")
    shard = _read_json(path / SHARD_FILE) if (path / SHARD_FILE).is_file() else None
    comparisons = []
    if (path / "compare.json").is_file():
        comparisons = list(_read_json(path / "compare.json").get("comparisons") or [])
    records = [r for r in data.get("tests", []) if isinstance(r, dict)]
    return ShardRun(path, dict(data.get("run") or {}), records, shard, comparisons)


def check_runs(runs: list[ShardRun]) -> None:
    """MergeError (one line) when the runs are not shards of one run of one suite/commit."""
    names = ", ".join(str(r.path) for r in runs)
    if len({r.run_id for r in runs}) != len(runs):
        raise MergeError(f"the same run was given twice ({names}); give each run folder once")
    commits = {r.commit for r in runs}
    if len(commits) > 1:
        by = "; ".join(f"{r.path.name}: {r.commit[:12]}" for r in runs)
        raise MergeError(f"runs of different commits ({by}); merge shards of one commit, or "
                         "pass --force")
    suites = {json.dumps(r.suites, sort_keys=True) for r in runs}
    if len(suites) > 1:
        by = "; ".join(f"{r.path.name}: "
                       + (",".join(f"{k}@{v}" for k, v in sorted(r.suites.items())) or "none")
                       for r in runs)
        raise MergeError(f"runs of different suites ({by}); merge shards of one suite.yaml, "
                         "or pass --force")
    sharded = [r for r in runs if r.shard]
    if sharded and len(sharded) != len(runs):
        plain = ", ".join(str(r.path) for r in runs if not r.shard)
        raise MergeError(f"{plain}: not a shard (no {SHARD_FILE}) while others are; merge "
                         "shards of one --mig-shard run, or pass --force")
    if sharded:
        plans = {(r.shard["plan"], r.shard["count"]) for r in sharded}
        if len(plans) > 1:
            by = "; ".join(f"{r.path.name}: plan {r.shard['plan']} of {r.shard['count']}"
                           for r in sharded)
            raise MergeError(f"shards of different plans ({by}): they read different "
                             "durations or collected different cases; rerun them with one "
                             "--mig-shard-durations file, or pass --force")
        seen: dict[int, Path] = {}
        for r in sharded:
            k = int(r.shard["index"])
            if k in seen:
                raise MergeError(f"shard {k} given twice ({seen[k]} and {r.path}); give each "
                                 "shard once")
            seen[k] = r.path
        count = int(sharded[0].shard["count"])
        missing = sorted(set(range(1, count + 1)) - set(seen))
        if missing:
            raise MergeError(f"shard(s) {', '.join(map(str, missing))} of {count} missing; "
                             "give every shard's run folder, or pass --force to merge a "
                             "partial set")
    owner: dict[tuple[str, str], Path] = {}
    for r in runs:
        for rec in r.records:
            key = (str(rec.get("nodeid") or rec.get("case")), str(rec.get("gpu_model", "")))
            if key in owner and owner[key] != r.path:
                raise MergeError(f"case {key[0]} is in both {owner[key]} and {r.path}; merge "
                                 "disjoint shards, or pass --force (the later one wins)")
            owner[key] = r.path


def _link_or_copy(src: str, dst: str) -> None:
    try:
        if os.path.exists(dst):
            os.unlink(dst)
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _move_paths(rec: dict[str, Any], old: str, new: str) -> None:
    paths = dict(rec.get("paths") or {})
    fix = (lambda p: new + p[len(old):] if isinstance(p, str) and p.startswith(old) else p)
    paths["dir"] = new
    paths["main_log"] = fix(paths.get("main_log"))
    paths["background_logs"] = [fix(p) for p in paths.get("background_logs") or []]
    rec["paths"] = paths
    res = rec.get("result")
    if isinstance(res, dict) and isinstance(res.get("files"), dict):
        res["files"] = {k: fix(v) for k, v in res["files"].items()}


def _copy_case_folders(run: ShardRun, records: list[dict[str, Any]], out: Path,
                       taken: dict[str, Path]) -> None:
    """Each record's test folder into out/ (hard links where possible); paths rewritten."""
    for rec in records:
        old = (rec.get("paths") or {}).get("dir")
        if not old:
            continue
        name = Path(old).name
        src = run.path / name  # relative to the run folder: it may have moved since
        if not src.is_dir():
            continue
        dest_name = name if taken.get(name, run.path) == run.path else f"{name}@{run.name}"
        taken.setdefault(dest_name, run.path)
        dest = out / dest_name
        shutil.copytree(src, dest, copy_function=_link_or_copy, dirs_exist_ok=True)
        _move_paths(rec, old, str(dest))


def merged_header(runs: list[ShardRun], run_id: str) -> dict[str, Any]:
    base = {k: v for k, v in runs[0].header.items() if k != "shard"}
    backends = sorted({str(r.header.get("backend", "?")) for r in runs})
    gpus, layout = [], {}
    for r in runs:
        for g in r.header.get("gpus") or []:
            gpus.append({**g, "index": f"{r.name}/{g.get('index')}", "shard": r.name})
        for idx, counts in (r.header.get("layout") or {}).items():
            layout[f"{r.name}/{idx}"] = counts
    base.update({
        "run_id": run_id, "backend": backends[0] if len(backends) == 1 else "mixed: "
        + ", ".join(backends), "simulated": any(r.header.get("simulated") for r in runs),
        "gpus": gpus, "layout": layout, "commit": runs[0].commit,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "merged_from": [{"run_id": r.run_id, "shard": r.name, "path": str(r.path),
                         "cases": len(r.records), "backend": r.header.get("backend"),
                         "written_at": r.header.get("written_at")} for r in runs]})
    return base


def _planned(runs: list[ShardRun]) -> list[str]:
    """Every planned node id in plan order (shard 1's first), or [] for unsharded runs."""
    for r in runs:
        if r.shard and r.shard.get("shards"):
            return [n for part in r.shard["shards"] for n in part]
    return []


def _check_out(out: Path, runs: list[ShardRun], force: bool) -> None:
    if any(out.resolve() == r.path.resolve() for r in runs):
        raise MergeError(f"-o {out} is one of the inputs; give a new folder for the merge")
    if not out.exists() or not any(out.iterdir()):
        return
    if not (out / MERGE_FILE).is_file():
        raise MergeError(f"-o {out} exists and is not a pytest-mig merge output; give a new "
                         "folder")
    before = sorted(i.get("run_id", "") for i in _read_json(out / MERGE_FILE).get("inputs", []))
    if before != sorted(r.run_id for r in runs) and not force:
        raise MergeError(f"-o {out} holds a merge of other runs ({', '.join(before)}); give a "
                         "new folder, or pass --force to add to it")


def _merge_allure(runs: list[ShardRun], dest: Path, header: dict[str, Any],
                  history: Path | None) -> int:
    sources = [(r, r.alluredir()) for r in runs]
    sources = [(r, d) for r, d in sources if d is not None]
    if not sources and history is None:
        return 0
    dest.mkdir(parents=True, exist_ok=True)
    n = 0
    for _, src in sources:
        for f in src.iterdir():
            if f.is_file() and f.name not in ALLURE_RUN_FILES:
                _link_or_copy(str(f), str(dest / f.name))
                n += f.name.endswith("-result.json")
    path = allure_env.write_environment(dest, header)
    shards = ", ".join(f"{r.name} ({r.run_id})" for r in runs)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"Merged\\ shards={shards}\n")
    allure_env.write_categories(dest)
    executor = next((d / "executor.json" for _, d in sources if (d / "executor.json").is_file()),
                    None)
    if executor is not None:
        shutil.copy2(executor, dest / "executor.json")
    # One history/ folder: the one given, else the first shard's (shards copy the same one).
    given = history or next((d for _, d in sources if (d / "history").is_dir()), None)
    if given is not None:
        allure_env.copy_history(given, dest)
    return n


def merge_runs(paths: list[Path], out: Path, *, history: Path | None = None,
               allure_history: Path | None = None, force: bool = False) -> MergeSummary:
    """Merge run folders into `out` (see the module rules)."""
    if not paths:
        raise MergeError("no run folders given; usage: pytest-mig merge RUN_DIR... -o OUT")
    runs = [load_run(Path(p)) for p in paths]
    runs.sort(key=lambda r: (int((r.shard or {}).get("index", 0)), r.run_id))
    if not force:
        check_runs(runs)
    out = Path(out)
    _check_out(out, runs, force)
    out.mkdir(parents=True, exist_ok=True)
    run_id = out.resolve().name
    by_node: dict[str, dict[str, Any]] = {}
    taken: dict[str, Path] = {}
    for r in runs:
        recs = [dict(rec, shard=r.name) for rec in r.records if "case" in rec]
        _copy_case_folders(r, recs, out, taken)
        for rec in recs:
            by_node[f"{rec.get('nodeid') or rec['case']}|{rec.get('gpu_model', '')}"] = rec
    records = list(by_node.values())
    have = {str(rec.get("nodeid")) for rec in records}
    planned = [n for n in _planned(runs) if n not in have]
    shard_of = {n: f"shard-{k}-of-{len(r.shard['shards'])}" for r in runs[:1] if r.shard
                for k, part in enumerate(r.shard.get("shards") or [], start=1) for n in part}
    skipped = {n: why for r in runs if r.shard for n, why in (r.shard.get("skipped") or {}).items()}
    for nodeid in planned:
        if nodeid in skipped:  # a skipped case writes no record of its own
            rec = failure_record(nodeid, "skipped", skipped[nodeid])
        else:
            rec = failure_record(nodeid, "error", f"no record: {shard_of.get(nodeid, 'its shard')}"
                                 " ended before this case ran; see that shard's run folder")
        rec["shard"] = shard_of.get(nodeid, "")
        records.append(rec)
    missing = [n for n in planned if n not in skipped]
    order = {n: k for k, n in enumerate(_planned(runs))}
    records.sort(key=lambda rec: order.get(str(rec.get("nodeid")), len(order)))
    header = merged_header(runs, run_id)
    write_json_atomic(out / "results.json", {"run": header, "tests": records})
    write_json_atomic(out / "run.json", header)
    hist = Path(history) if history else out.parent / HISTORY_NAME
    stamps = {r.name: (str(r.header.get("backend", "")), str(r.header.get("written_at", "")))
              for r in runs}
    known = {(e.run_id, e.case, e.gpu_model) for e in read_history(hist)}
    entries = []
    for rec in records:
        backend, stamp = stamps.get(rec.get("shard", ""), ("", header["written_at"]))
        e = entry_from_record(rec, run_id, backend, stamp or header["written_at"])
        if (e.run_id, e.case, e.gpu_model) not in known:
            known.add((e.run_id, e.case, e.gpu_model))
            entries.append(e)
    added = append_history(hist, entries)
    comparisons = [c for r in runs for c in r.comparisons]
    by_case: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in comparisons:
        by_case[str(c.get("case"))].append(c)
    if comparisons:
        write_json_atomic(out / "compare.json", {"comparisons": comparisons})
    page = write_index(out, header, records, by_case)
    n_allure = _merge_allure(runs, out / ALLURE_DIR, header, allure_history)
    outcomes: dict[str, int] = {}
    for rec in records:
        outcomes[str(rec.get("outcome"))] = outcomes.get(str(rec.get("outcome")), 0) + 1
    write_json_atomic(out / MERGE_FILE, {
        "run_id": run_id, "forced": force, "cases": len(records), "outcomes": outcomes,
        "missing": missing, "history": str(hist), "written_at": header["written_at"],
        "inputs": [{"path": str(r.path), "run_id": r.run_id, "shard": r.name,
                    "cases": len(r.records)} for r in runs]})
    write_atomic(out / "summary.txt", "\n".join(summary_text(header, records)) + "\n")
    return MergeSummary(out, len(records), outcomes, missing, added, hist, n_allure, page)


def summary_text(header: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """The merged run as plain text: one line per case (what index.html shows as a table)."""
    lines = [f"pytest-mig merged run {header.get('run_id')} (commit "
             f"{str(header.get('commit', 'unknown'))[:12]}, backend {header.get('backend')}"
             + (", SIMULATED GPU" if header.get("simulated") else "") + ")"]
    for m in header.get("merged_from") or []:
        lines.append(f"  {m['shard']}: {m['cases']} case(s), run {m['run_id']}")
    width = max([len(str(r.get("case", ""))) for r in records] + [4])
    for rec in records:
        res = rec.get("result") or {}
        value = res.get("value")
        metric = f"{res.get('metric')}: {value:.6g}" if value is not None else "-"
        lines.append(f"  {str(rec.get('case')):<{width}}  {str(rec.get('outcome')):<7}  "
                     f"{str(rec.get('shard', '')):<14}  {metric}")
    return lines
