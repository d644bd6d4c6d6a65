"""The import graph of pytest_mig, computed with `ast`: no loops, imports point down the layers.

Rules checked (docs/architecture.md explains the layers; ../shared/ARCHITECTURE.md is the map):
- Every module of pytest_mig has a layer in LAYERS (a new module fails until it is given one).
- No import loop, through any kind of import: absolute or relative, at the top of a module or
  inside a function (a lazy import is still a dependency). Imports under `if TYPE_CHECKING:`
  never run, so they make no loop.
- A module imports only from its own layer or the layers below it, type-only imports included
  (naming a type of a layer above is knowing that layer). Modules of an ISOLATED layer do not
  import each other: they meet through a layer below.
- The workload program (pytest_mig/workload/) is launched as a command line, never imported
  by a module outside it.
- Every `pytest_mig...` import names a module that exists.
KNOWN lists the exceptions of today, each with who removes it; one that no longer occurs
fails the test, so the list only shrinks.
"""
from __future__ import annotations

import ast
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_mig"

# Layers from the top down. A pattern is a module path below pytest_mig ("surface.keys") or a
# package with everything in it ("gpu.*"); the most specific pattern decides.
LAYERS: list[tuple[str, list[str]]] = [
    ("suite test body", ["case_test"]),  # imported by the suites' test modules only
    ("entry points", ["entry", "plugin", "fleet.cli"]),
    ("hook objects", ["surface.case_fixtures", "surface.manage_hooks", "surface.report_hooks",
                      "surface.shard_hooks"]),
    ("case runner", ["surface.case_runner"]),
    ("options", ["surface", "surface.collect", "surface.options", "surface.keys",
                 "surface.hookspecs"]),
    ("run session", ["run.*"]),
    ("suites", ["plan.*"]),
    ("orchestration", ["orchestration.*"]),
    ("harness adapters", ["harness.*"]),
    ("workload program", ["workload.*"]),
    ("reporting", ["report.*", "fleet.merge", "fleet"]),
    ("results", ["results.*"]),
    ("gpu", ["gpu.*"]),
    ("bottom", ["", "types", "errors", "io", "datadir", "yamlload", "yamlpos", "redact",
                "runid", "workload_contract", "mlperf_names", "cpu_native"]),
]
ISOLATED = {"hook objects"}  # each registered on its own: they share what lies below them
PROGRAM = "workload"  # run as `python -m pytest_mig.workload`, never imported by the plugin

# (importer, imported): upward imports of today, each being removed by another change.
KNOWN: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # the module imported (the longest existing module the import names)
    line: int
    named: str  # the dotted name as written, made absolute
    typing_only: bool = False  # under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        return f"{self.importer} -> {self.target} (line {self.line})"


def modules(package: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted name below the package ("" for its __init__) -> (file, is a package)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _typing_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """(node, typing only) for every Import/ImportFrom node at any depth."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, typing_only = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, typing_only
        if isinstance(node, ast.If) and _typing_only(node):
            stack.extend((child, True) for child in node.body)
            stack.extend((child, typing_only) for child in node.orelse)
        else:
            stack.extend((child, typing_only) for child in ast.iter_child_nodes(node))


def imports(package: Path) -> tuple[dict[str, tuple[Path, bool]], list[Import]]:
    """The modules of `package` and every import among them; a target of "?name" is missing."""
    name = package.name
    mods = modules(package)

    def below(dotted: str) -> str | None:  # "pkg.a.b" -> "a.b"; None outside the package
        if dotted == name:
            return ""
        return dotted[len(name) + 1:] if dotted.startswith(name + ".") else None

    found = []
    for mod, (path, is_pkg) in mods.items():
        here = mod.split(".") if mod else []
        if not is_pkg:
            here = here[:-1]
        for node, typing_only in _import_nodes(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    sub = below(alias.name)
                    if sub is not None:
                        found.append(Import(mod, sub if sub in mods else "?" + sub, node.lineno,
                                            alias.name, typing_only))
                continue
            if node.level:  # relative: level 1 is this module's package
                if node.level - 1 > len(here):
                    raise AssertionError(f"{path}:{node.lineno}: relative import above {name}")
                base = [name, *here[:len(here) - node.level + 1]]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            sub = below(source)
            if sub is None:
                continue
            if sub not in mods:
                found.append(Import(mod, "?" + sub, node.lineno, source, typing_only))
                continue
            for alias in node.names:  # a submodule, or a name defined in the module
                child = f"{sub}.{alias.name}" if sub else alias.name
                found.append(Import(mod, child if child in mods else sub, node.lineno,
                                    f"{source}.{alias.name}", typing_only))
    unique = {(i.importer, i.target, i.line, i.typing_only): i for i in reversed(found)}
    return mods, sorted((i for i in unique.values() if i.target != i.importer),
                        key=lambda i: (i.importer, i.line, i.target))


def layer_of(mod: str, layers: list[tuple[str, list[str]]]) -> int | None:
    best: tuple[int, int] | None = None  # (specificity, layer index)
    for index, (_, patterns) in enumerate(layers):
        for pattern in patterns:
            if pattern.endswith(".*"):
                pkg = pattern[:-2]
                hit = mod == pkg or mod.startswith(pkg + ".")
                score = 2 * (pkg.count(".") + 1)
            else:
                hit, score = mod == pattern, 2 * (pattern.count(".") + 1) + 1
            if hit and (best is None or score > best[0]):
                best = (score, index)
    return None if best is None else best[1]


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import loop as a path [a, b, ..., a], or None (depth-first, sorted: stable)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (loop := visit(nxt)):
                return loop
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (loop := visit(node)):
            return loop
    return None


def problems(package: Path, layers: list[tuple[str, list[str]]], isolated: set[str],
             program: str | None, known: dict[tuple[str, str], str]) -> dict[str, list[str]]:
    """What breaks the rules, by rule: unplaced, loop, upward, program, missing."""
    mods, found = imports(package)
    shown = {m: f"{package.name}.{m}" if m else package.name for m in mods}
    out: dict[str, list[str]] = {"unplaced": [], "loop": [], "upward": [], "program": [],
                                 "missing": []}
    out["unplaced"] = [shown[m] for m in mods if layer_of(m, layers) is None]
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for imp in found:
        if imp.target.startswith("?"):
            out["missing"].append(f"{shown[imp.importer]} line {imp.line}: {imp.named} is no "
                                  "module")
            continue
        if not imp.typing_only:
            edges[imp.importer].add(imp.target)
        if (imp.importer, imp.target) in known:
            continue
        where = f"{shown[imp.importer]} line {imp.line} imports {shown[imp.target]}"
        if program and (imp.target + ".").startswith(program + ".") and not (
                imp.importer + ".").startswith(program + "."):
            out["program"].append(f"{where}: the {program} program is launched, never imported")
        src, dst = layer_of(imp.importer, layers), layer_of(imp.target, layers)
        if src is None or dst is None:
            continue
        if dst < src:
            out["upward"].append(f"{where}: {layers[src][0]} may not import {layers[dst][0]} "
                                 "(a layer above it)")
        elif dst == src and layers[src][0] in isolated:
            out["upward"].append(f"{where}: modules of {layers[src][0]} do not import each other")
    loop = find_cycle(edges)
    if loop:
        out["loop"].append(" -> ".join(shown[m] for m in loop))
    return out


def occurring(package: Path, known: dict[tuple[str, str], str]) -> set[tuple[str, str]]:
    _, found = imports(package)
    return {(i.importer, i.target) for i in found} & set(known)


# -- pytest_mig ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def found() -> dict[str, list[str]]:
    return problems(PACKAGE, LAYERS, ISOLATED, PROGRAM, KNOWN)


def test_every_module_has_a_layer(found):
    assert found["unplaced"] == [], "give these modules a layer in LAYERS (and in " \
        "docs/architecture.md): " + ", ".join(found["unplaced"])


def test_every_layer_pattern_names_a_module():
    mods = modules(PACKAGE)
    unused = [p for _, patterns in LAYERS for p in patterns
              if not any(layer_of(m, [("", [p])]) == 0 for m in mods)]
    assert unused == [], f"patterns in LAYERS that name no module (renamed?): {unused}"


def test_no_import_loops(found):
    assert found["loop"] == [], "import loop: " + "; ".join(found["loop"])


def test_imports_point_down(found):
    assert found["upward"] == [], "upward imports:\n" + "\n".join(found["upward"])


def test_the_workload_program_is_not_imported(found):
    assert found["program"] == [], "\n".join(found["program"])


def test_every_import_names_a_module(found):
    assert found["missing"] == [], "\n".join(found["missing"])


def test_known_exceptions_still_occur():
    """An exception whose import is gone is removed from KNOWN: the list only shrinks."""
    stale = set(KNOWN) - occurring(PACKAGE, KNOWN)
    assert not stale, f"remove from KNOWN, these imports are gone: {sorted(stale)}"


# -- the checker itself, on a planted package ------------------------------------------------

FAKE_LAYERS = [("top", ["app", "hooks.*"]), ("middle", ["core.*"]), ("program", ["prog.*"]),
               ("bottom", ["", "util"])]
NONE: dict[str, list[str]] = {"unplaced": [], "loop": [], "upward": [], "program": [],
                              "missing": []}


def plant(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "fakepkg"
    for rel, text in {"__init__.py": "", "hooks/__init__.py": "", "core/__init__.py": "",
                      "prog/__init__.py": "", **files}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(textwrap.dedent(text))
    return pkg


CLEAN = {
    "app.py": "from fakepkg.core import engine\nfrom . import util\n",
    "hooks/a.py": "from ..core.engine import run\n",
    "hooks/b.py": "import fakepkg.core.engine as engine\n",
    "core/engine.py": "import fakepkg.util\nfrom .types import Kind\n\ndef run():\n"
                      "    from fakepkg import util\n",
    "prog/main.py": "from ..util import helper\n",
    "util.py": "def helper():\n    pass\n",
    # a loop through a type-only import is no loop: it never runs
    "core/types.py": "import typing\nif typing.TYPE_CHECKING:\n    from .engine import run\n",
}


def check(pkg: Path, known: dict[tuple[str, str], str] | None = None) -> dict[str, list[str]]:
    return problems(pkg, FAKE_LAYERS, {"top"}, "prog", known or {})


def test_checker_passes_a_clean_package(tmp_path):
    assert check(plant(tmp_path, CLEAN)) == NONE


def test_checker_finds_a_planted_upward_import_inside_a_function(tmp_path):
    pkg = plant(tmp_path, {**CLEAN, "core/engine.py": "def run():\n    from ..hooks import a\n"})
    assert check(pkg) == {**NONE, "upward": [
        "fakepkg.core.engine line 2 imports fakepkg.hooks.a: middle may not import top (a layer "
        "above it)"], "loop": ["fakepkg.core.engine -> fakepkg.hooks.a -> fakepkg.core.engine"]}
    # A known exception silences the layer rule, never the loop.
    known = {("core.engine", "hooks.a"): "being removed"}
    assert check(pkg, known) == {**NONE, "loop": [
        "fakepkg.core.engine -> fakepkg.hooks.a -> fakepkg.core.engine"]}
    assert occurring(pkg, known) == set(known)
    assert occurring(plant(tmp_path / "clean", CLEAN), known) == set()


def test_checker_reports_loops_isolation_program_unplaced_and_missing(tmp_path):
    pkg = plant(tmp_path, {**CLEAN,
                           "util.py": "import fakepkg.util_two\nfrom fakepkg.gone import x\n"
                                      "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from fakepkg.app import App\n",
                           "util_two.py": "from fakepkg import util\n",
                           "hooks/b.py": "from fakepkg.hooks import a\n",
                           "core/engine.py": "def run():\n    import fakepkg.prog.main\n"})
    assert check(pkg) == {
        "unplaced": ["fakepkg.util_two"],
        "loop": ["fakepkg.util -> fakepkg.util_two -> fakepkg.util"],
        "upward": ["fakepkg.hooks.b line 1 imports fakepkg.hooks.a: modules of top do not import "
                   "each other",
                   "fakepkg.util line 5 imports fakepkg.app: bottom may not import top (a layer "
                   "above it)"],
        "program": ["fakepkg.core.engine line 2 imports fakepkg.prog.main: the prog program is "
                    "launched, never imported"],
        "missing": ["fakepkg.util line 2: fakepkg.gone is no module"]}
