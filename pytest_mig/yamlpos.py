"""YAML loading that remembers where every value came from (file, line, key path).

Validation code asks a node for the type it expects; a mismatch becomes a SuiteError
naming the file, the line of the offending node, its key path and what was allowed.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# libyaml's C parser when PyYAML has it (same safe semantics, marks included), else pure Python.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

from pytest_mig.errors import SuiteError, did_you_mean

# Guards against alias bombs ("billion laughs") and runaway nesting.
MAX_NODES = 100_000
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_NULL_TAG = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class YNode:
    """One YAML value with its position; `value` is dict[str, YNode], list[YNode] or a scalar."""

    value: Any
    line: int
    path: str
    file: str
    key_line: int | None = None  # line of the key this value belongs to, when it has one

    def fail(self, message: str, fix: str | None = None, *, at_key: bool = False) -> SuiteError:
        """A SuiteError pointing at this node (or at its key, for unknown-key errors)."""
        line = self.key_line if at_key and self.key_line else self.line
        return SuiteError(message, file=self.file, line=line, key=self.path or None, fix=fix)

    def describe(self) -> str:
        """Human name of what this node holds, for 'expected X, got Y' messages."""
        v = self.value
        if isinstance(v, dict):
            return "a mapping"
        if isinstance(v, list):
            return "a list"
        if v is None:
            return "nothing (null)"
        return f"{type(v).__name__} {v!r}"

    @property
    def is_null(self) -> bool:
        return self.value is None

    def mapping(self, allowed: Sequence[str] | None = None,
                required: Sequence[str] = ()) -> dict[str, YNode]:
        """The node as a mapping; unknown keys (when `allowed` is given) and missing keys fail."""
        if not isinstance(self.value, dict):
            raise self.fail(f"expected a mapping, got {self.describe()}",
                            fix="write it as 'key: value' lines indented under this key")
        if allowed is not None:
            for key, child in self.value.items():
                if key not in allowed:
                    raise child.fail(
                        f"unknown key '{key}'{did_you_mean(key, allowed)}; "
                        f"allowed keys: {', '.join(allowed)}",
                        fix="remove it or correct its spelling", at_key=True)
        for key in required:
            if key not in self.value:
                raise self.fail(f"missing required key '{key}'",
                                fix=f"add '{key}:' under {self.path or 'the top level'}")
        return self.value

    def items(self, *, non_empty: bool = False) -> list[YNode]:
        """The node as a list."""
        if not isinstance(self.value, list):
            raise self.fail(f"expected a list, got {self.describe()}",
                            fix="write a list, e.g. [a, b] or '- a' lines")
        if non_empty and not self.value:
            raise self.fail("the list is empty", fix="give at least one entry")
        return self.value

    def text(self) -> str:
        """The node as a non-empty string."""
        if not isinstance(self.value, str) or not self.value.strip():
            raise self.fail(f"expected a non-empty string, got {self.describe()}")
        return self.value

    def integer(self, minimum: int | None = None, maximum: int | None = None) -> int:
        """The node as an int (booleans are not ints here) within [minimum, maximum]."""
        v = self.value
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.fail(f"expected an integer, got {self.describe()}")
        self._check_range(v, minimum, maximum)
        return v

    def number(self, minimum: float | None = None, maximum: float | None = None,
               *, positive: bool = False) -> float:
        """The node as a finite float (ints accepted) within the bounds."""
        v = self.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.fail(f"expected a number, got {self.describe()}")
        if not math.isfinite(v):
            raise self.fail(f"expected a finite number, got {v!r}")
        if positive and v <= 0:
            raise self.fail(f"must be greater than 0, got {v!r}", fix="give a positive value")
        self._check_range(v, minimum, maximum)
        return float(v)

    def choice(self, allowed: Sequence[str], what: str) -> str:
        """The node as one of `allowed`, with did-you-mean for near misses."""
        if not isinstance(self.value, str):
            raise self.fail(f"expected a {what} name, got {self.describe()}; "
                            f"allowed: {', '.join(allowed)}")
        if self.value not in allowed:
            raise self.fail(f"unknown {what} '{self.value}'{did_you_mean(self.value, allowed)}; "
                            f"allowed: {', '.join(allowed)}",
                            fix=f"use one of: {', '.join(allowed)}")
        return self.value

    def unique_names(self, allowed: Sequence[str], what: str) -> tuple[str, ...]:
        """A non-empty list of distinct names, each one of `allowed`."""
        names: list[str] = []
        for item in self.items(non_empty=True):
            name = item.choice(allowed, what)
            if name in names:
                raise item.fail(f"{what} '{name}' is listed twice", fix="remove the duplicate")
            names.append(name)
        return tuple(names)

    def _check_range(self, v: float, minimum: float | None, maximum: float | None) -> None:
        if minimum is not None and v < minimum:
            raise self.fail(f"must be >= {minimum}, got {v!r}",
                            fix=f"give a value of at least {minimum}")
        if maximum is not None and v > maximum:
            raise self.fail(f"must be <= {maximum}, got {v!r}",
                            fix=f"give a value of at most {maximum}")


def load_yaml(path: Path | str) -> YNode:
    """Read one YAML document with safe loading; any problem becomes a SuiteError with file:line."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SuiteError(f"cannot read file: {exc}", file=file,
                         fix="check the path and that it is UTF-8 text") from exc
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> YNode:
    """Compose `text` (safe loader) into a YNode tree."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or str(exc)
        ctx = exc.context_mark
        if ctx is not None and mark is not None and ctx.line != mark.line:
            problem += f" (the construct started on line {ctx.line + 1})"
        raise SuiteError(f"YAML syntax error: {problem}", file=file, line=line,
                         fix="fix the YAML syntax there (indentation, quotes, colons)") from exc
    except yaml.YAMLError as exc:
        raise SuiteError(f"YAML error: {exc}", file=file) from exc
    except RecursionError as exc:
        raise SuiteError("YAML nested too deeply", file=file) from exc
    if root is None:
        raise SuiteError("the file is empty", file=file, line=1,
                         fix="write the YAML mapping this file should hold")
    return _Converter(file).convert(root, "", None)


class _Converter:
    """Turns composed yaml nodes into YNodes, constructing scalars with the safe constructor."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.count = 0
        self.stack: set[int] = set()
        self.loader = yaml.SafeLoader("")

    def convert(self, node: yaml.Node, path: str, key_line: int | None) -> YNode:
        self.count += 1
        line = node.start_mark.line + 1
        here = YNode(None, line, path, self.file, key_line)
        if self.count > MAX_NODES:
            raise here.fail(f"more than {MAX_NODES} values (alias expansion?)")
        if id(node) in self.stack:
            raise here.fail("recursive alias", fix="remove the alias that refers to itself")
        if isinstance(node, yaml.ScalarNode):
            return YNode(self._scalar(node, here), line, path, self.file, key_line)
        self.stack.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode) and node.tag == _SEQ_TAG:
                value: Any = [self.convert(item, f"{path}[{i}]", None)
                              for i, item in enumerate(node.value)]
            elif isinstance(node, yaml.MappingNode) and node.tag == _MAP_TAG:
                value = self._mapping(node, path)
            else:
                raise here.fail(f"unsupported YAML tag {node.tag}",
                                fix="use plain mappings, lists and scalars")
        finally:
            self.stack.discard(id(node))
        return YNode(value, line, path, self.file, key_line)

    def _mapping(self, node: yaml.MappingNode, path: str) -> dict[str, YNode]:
        out: dict[str, YNode] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _NULL_TAG:
                raise YNode(None, key_line, path, self.file).fail(
                    "mapping keys must be plain names", fix="write the key as a plain word")
            # The key's source text, so 'yes:' or '1:' stay the names the user typed.
            key = key_node.value
            child_path = f"{path}.{key}" if path else key
            if key in out:
                raise YNode(None, key_line, child_path, self.file).fail(
                    f"duplicate key '{key}' (first on line {out[key].key_line})",
                    fix="keep only one of them")
            out[key] = self.convert(value_node, child_path, key_line)
        return out

    def _scalar(self, node: yaml.ScalarNode, here: YNode) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        # The safe constructor lets plain Python errors escape for bad explicit tags
        # (e.g. '!!float abc' raises ValueError); all of them are the user's YAML.
        except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError,
                IndexError, KeyError) as exc:
            raise here.fail(f"cannot read value {node.value!r} as {node.tag}: {exc}",
                            fix="remove the explicit tag or fix the value") from exc
