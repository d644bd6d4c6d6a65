"""What to say when -k / -m selected none of the collected cases: what a case id looks like
and the closest match to each word of the expression that matched nothing.

Values in, one line out: no pytest, no files.
"""
from __future__ import annotations

import difflib
import re

ID_FORM = "<benchmark>-<scenario>-<profile>-<mode>"
WORD = re.compile(r"[A-Za-z0-9_.\-]+")
OPERATORS = {"and", "or", "not"}


def _parts(case_id: str) -> list[str]:
    """'ssd-resnet34-Offline-1g.10gb-performance' -> the id and its four parts."""
    return [case_id, *case_id.rsplit("-", 3)]


def closest(word: str, ids: list[str]) -> str | None:
    """The case id or id part nearest to `word` (difflib's ratio, case-insensitive)."""
    candidates = sorted({p for i in ids for p in _parts(i)})
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.0)
    return lowered[match[0]] if match else None


def zero_selection_hint(ids: list[str], keyword: str = "", markexpr: str = "") -> str:
    asked = "; ".join(x for x in (f"-k {keyword!r}" if keyword else "",
                                  f"-m {markexpr!r}" if markexpr else "") if x) or "the selection"
    text = (f"pytest-mig: no case selected ({asked} matched none of {len(ids)} case(s)); case ids "
            f"read {ID_FORM}, e.g. {ids[0]}")
    hints = []
    for word in WORD.findall(keyword or ""):
        if word.lower() in OPERATORS or any(word.lower() in i.lower() for i in ids):
            continue
        near = closest(word, ids)
        if near:
            hints.append(f"closest to {word!r}: {near}")
    if hints:
        text += "; " + "; ".join(hints)
    return text + "; `pytest --co -q` lists them"
