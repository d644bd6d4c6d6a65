"""Split the collected cases of one run into N shards, one per node of a fleet.

Rules:
- Deterministic: every shard computes the whole plan from the same inputs (collection order,
  layout keys, durations) and keeps its own part, so shards never talk to each other. The
  plan's fingerprint goes into each shard's shard.json; `pytest-mig merge` refuses shards
  whose fingerprints differ (they were split from different collections or durations).
- Cases that share a MIG layout stay in one shard (a node reconfigures once per layout it
  gets). A layout group is split only while there are fewer groups than shards: the largest
  into as many equal-duration runs as shards lack, so no shard is left empty when the suite
  has enough cases.
- Balance: groups go largest-first to the least loaded shard (LPT). Durations are measured
  (median of a case's last runs in history.jsonl, per GPU model); a case never measured gets
  an estimate from its run profile, scaled by how measured cases compared to their estimates.
- Inside a shard, items keep collection order grouped by layout.

pytest-split (jerry-git) balances by per-test durations but has no way to keep a set of
tests together (its issues #79 "Pre-defined groups" and #108 "file based splits" are open)
and reads a nodeid-keyed .test_durations file, not history.jsonl: hence this small selector.
"""
from __future__ import annotations

import hashlib
import json
import re
import statistics
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from pytest_mig.errors import ConfigError
from pytest_mig.report.history import HistoryEntry
from pytest_mig.types import ACCURACY, Case

RECENT_RUNS = 5  # a case's duration is the median of its last RECENT_RUNS measured runs
DEFAULT_SECONDS = 1.0  # a plain test (no MIG case) in a sharded suite folder
SHARD_MARK = "-shard-"  # in the run id of every shard run (ShardSpec.run_suffix)


@dataclass(frozen=True)
class ShardSpec:
    """Which shard this process runs: `index` of `count`, 1-based ("2/3")."""

    index: int
    count: int

    @property
    def name(self) -> str:
        return f"shard-{self.index}-of-{self.count}"

    @property
    def run_suffix(self) -> str:
        """'-shard-I-of-N': the end of a shard run's id, so its run folder names its shard."""
        return f"{SHARD_MARK}{self.index}-of-{self.count}"

    def to_dict(self) -> dict:
        return {"index": self.index, "count": self.count, "name": self.name}

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise ConfigError(f"--mig-shard={text}: expected I/N with 1 <= I <= N, e.g. "
                              "--mig-shard=2/3 (Slurm: $SLURM_ARRAY_TASK_ID/N with --array=1-N)")
        return cls(int(m.group(1)), int(m.group(2)))


@dataclass(frozen=True)
class ShardItem:
    """One collected test as the planner sees it."""

    nodeid: str
    group: str | None  # the MIG layout it needs; None = a group of its own
    seconds: float
    measured: bool  # False: estimated from the run profile


@dataclass(frozen=True)
class ShardPlan:
    """Every shard's node ids (collection order, grouped by layout) and estimated load."""

    shards: tuple[tuple[str, ...], ...]
    loads: tuple[float, ...]
    groups: tuple[tuple[str, ...], ...]  # layout keys per shard (a split group appears twice)
    measured: int
    estimated: int

    @property
    def fingerprint(self) -> str:
        text = json.dumps([list(s) for s in self.shards])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def part(self, spec: ShardSpec) -> tuple[str, ...]:
        if spec.count != len(self.shards):
            raise ValueError(f"plan has {len(self.shards)} shards, asked for {spec.name}")
        return self.shards[spec.index - 1]


@dataclass
class _Piece:
    key: str
    items: list[tuple[int, ShardItem]] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(i.seconds for _, i in self.items)

    @property
    def first(self) -> int:
        return self.items[0][0]


def _pieces(items: Sequence[ShardItem]) -> list[_Piece]:
    pieces: dict[str, _Piece] = {}
    for n, item in enumerate(items):
        key = f"layout:{item.group}" if item.group is not None else f"test:{item.nodeid}"
        pieces.setdefault(key, _Piece(key)).items.append((n, item))
    return list(pieces.values())


def _split(piece: _Piece, k: int) -> list[_Piece]:
    """`piece` cut into k runs of nearly equal duration, collection order kept: a run ends
    where the cut lands closest to its share of the total, each run holding >= 1 case."""
    total, run = piece.seconds, 0.0
    parts: list[list[tuple[int, ShardItem]]] = [[]]
    for n, entry in enumerate(piece.items):
        sec, target, need = entry[1].seconds, total * len(parts) / k, k - len(parts)
        if parts[-1] and need and (run + sec - target > target - run
                                   or len(piece.items) - n <= need):
            parts.append([])
        parts[-1].append(entry)
        run += sec
    return [_Piece(f"{piece.key}#{j + 1}", part) for j, part in enumerate(parts)]


def plan_shards(items: Sequence[ShardItem], count: int) -> ShardPlan:
    """The deterministic plan for `count` shards (see the module rules)."""
    if count < 1:
        raise ValueError("count must be >= 1")
    pieces = _pieces(items)
    while len(pieces) < count:
        splittable = [p for p in pieces if len(p.items) > 1]
        if not splittable:
            break  # fewer cases than shards: some shards stay empty
        big = max(splittable, key=lambda p: (p.seconds, len(p.items), -p.first))
        at = pieces.index(big)
        pieces[at:at + 1] = _split(big, min(len(big.items), count - len(pieces) + 1))
    bins: list[list[_Piece]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for piece in sorted(pieces, key=lambda p: (-p.seconds, p.first)):
        k = min(range(count), key=lambda i: (loads[i], i))
        bins[k].append(piece)
        loads[k] += piece.seconds
    shards, groups = [], []
    for b in bins:
        b.sort(key=lambda p: p.first)  # layout groups in collection order of their first case
        shards.append(tuple(item.nodeid for p in b for _, item in p.items))
        groups.append(tuple(p.key.partition(":")[2] for p in b))
    measured = sum(1 for i in items if i.measured)
    return ShardPlan(tuple(shards), tuple(round(x, 3) for x in loads), tuple(groups),
                     measured, len(items) - measured)


def measured_durations(entries: Iterable[HistoryEntry]) -> dict[tuple[str, str], float]:
    """(case id, GPU model) -> median duration of its last RECENT_RUNS measured runs."""
    seen: dict[tuple[str, str], list[float]] = {}
    for e in entries:
        if e.duration_s is not None and e.duration_s >= 0:
            seen.setdefault((e.case, e.gpu_model), []).append(float(e.duration_s))
    return {k: statistics.median(v[-RECENT_RUNS:]) for k, v in seen.items()}


def estimate_seconds(case: Case, main_startup_s: float) -> float:
    """A case never measured: the main's start-up allowance plus its timed phase (1.5x the
    run profile's min duration, as LoadGen overshoots) plus the backgrounds' end buffer."""
    prof = case.run_profile
    timed = 0.0 if case.mode == ACCURACY else 1.5 * prof.min_duration_ms / 1000
    tail = prof.end_time_buffer_min_s if case.background else 0.0
    return main_startup_s + timed + tail


def shard_items(cases: Sequence[tuple[str, Case | None, str | None]],
                durations: dict[tuple[str, str], float], main_startup_s: float) -> list[ShardItem]:
    """ShardItems for (nodeid, case or None, layout key) triples.

    Estimates are scaled by the median measured/estimated ratio of the cases that have both,
    so a suite half measured on a slow node does not send all new cases to one shard.
    """
    raw = []
    ratios = []
    for nodeid, case, layout in cases:
        if case is None:
            raw.append((nodeid, layout, DEFAULT_SECONDS, None))
            continue
        est = estimate_seconds(case, main_startup_s)
        got = durations.get((case.id, case.gpu_model))
        if got is not None and est > 0:
            ratios.append(got / est)
        raw.append((nodeid, layout, est, got))
    scale = statistics.median(ratios) if ratios else 1.0
    return [ShardItem(nodeid, layout, got if got is not None else
                      est if est == DEFAULT_SECONDS and case is None else round(est * scale, 3),
                      got is not None)
            for (nodeid, layout, est, got), (_, case, _) in zip(raw, cases)]
