"""MigSession (pytest_mig/run/state.py) as typed collaborators: no field typed Any, and no
module but its own sets its attributes (hook objects call its methods instead)."""
from __future__ import annotations

import ast
from pathlib import Path

STATE = Path(__file__).resolve().parents[1] / "pytest_mig" / "run" / "state.py"
PACKAGE = STATE.parents[1]
SESSION_NAMES = {"mig", "mig_session", "session"}  # how the package names a MigSession


def fields() -> dict[str, str]:
    """MigSession's instance attributes -> their annotation, from __init__."""
    tree = ast.parse(STATE.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MigSession")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    out = {}
    for node in ast.walk(init):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Attribute):
            out[node.target.attr] = ast.unparse(node.annotation)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Attribute):
                    out.setdefault(t.attr, "")
    return out


def test_no_field_is_typed_any():
    typed = fields()
    assert {"pool", "held_lease", "suites", "baselines", "manager", "shard"} <= set(typed)
    assert [name for name, ann in typed.items() if "Any" in ann] == []


def test_no_other_module_sets_a_session_attribute():
    names = set(fields())
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == STATE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            targets = node.targets if isinstance(node, ast.Assign) else \
                [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
            for t in targets:
                if not (isinstance(t, ast.Attribute) and t.attr in names):
                    continue
                owner = t.value
                who = owner.id if isinstance(owner, ast.Name) else \
                    owner.attr if isinstance(owner, ast.Attribute) else ""
                if who in SESSION_NAMES:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {ast.unparse(t)}")
    assert found == []
