"""The `pytest-mig` console command: `merge`, and `--version`.

Rules: errors a user can cause print one line on stderr (what, where, the fix) and exit 2;
success prints what was written and exits 0 (1 when a merged case failed, with --strict).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_mig.errors import MigError
from pytest_mig.fleet.merge import merge_runs


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="pytest-mig", description="pytest-mig fleet tools")
    ap.add_argument("--version", action="version", version=_version())
    sub = ap.add_subparsers(dest="command", required=True)
    m = sub.add_parser("merge", help="merge shard run folders into one run folder",
                       description="Merge the run folders of --mig-shard runs (or any runs of "
                                   "one suite and commit) into one: results.json, index.html, "
                                   "summary.txt, history.jsonl lines and Allure results.")
    m.add_argument("runs", nargs="+", type=Path, metavar="RUN_DIR",
                   help="shard run folders (reports/<run-id>-shard-I-of-N)")
    m.add_argument("-o", "--out", required=True, type=Path, metavar="OUT",
                   help="merged run folder (its name is the merged run id)")
    m.add_argument("--history", type=Path, default=None, metavar="PATH",
                   help="history.jsonl to append to (default: OUT/../history.jsonl); give it "
                        "to the next run's shards as --mig-shard-durations")
    m.add_argument("--allure-history", type=Path, default=None, metavar="DIR",
                   help="previous generated Allure report (or its history/) for the trend")
    m.add_argument("--force", action="store_true",
                   help="merge runs of different commits/suites/plans or a partial shard set")
    m.add_argument("--strict", action="store_true",
                   help="exit 1 when a merged case failed, errored or is missing")
    return ap


def _version() -> str:
    """`pytest-mig X.Y.Z (pytest A.B.C, Python D.E.F)`: the installed distribution's version."""
    import platform
    from importlib import metadata

    import pytest

    from pytest_mig import __version__
    try:
        version = metadata.version("pytest-mig")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = __version__
    return f"pytest-mig {version} (pytest {pytest.__version__}, Python {platform.python_version()})"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        summary = merge_runs(args.runs, args.out, history=args.history,
                             allure_history=args.allure_history, force=args.force)
    except MigError as exc:
        print(f"pytest-mig merge: {exc}", file=sys.stderr)
        return 2
    for line in summary.lines():
        print(line)
    bad = sum(n for k, n in summary.outcomes.items() if k in ("failed", "error"))
    return 1 if args.strict and bad else 0


if __name__ == "__main__":
    sys.exit(main())
