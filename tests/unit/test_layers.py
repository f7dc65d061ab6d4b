"""Nothing low imports something high: the layers of ARCHITECTURE.md, read from every import in the tree
(function-level ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each package and the project packages it must never import.
FORBIDDEN = {
    "nodal": {"launcher", "api", "activities", "workflows", "routing", "promise", "inventory", "adapters"},
    "models": {"launcher", "api", "activities", "workflows", "routing", "promise", "inventory", "adapters"},
    "promise": {"launcher", "api", "activities", "workflows", "routing", "inventory", "adapters"},
    "routing": {"launcher", "api", "activities", "workflows", "adapters"},
    "inventory": {"launcher", "api", "activities", "workflows", "routing"},
    "events": {"launcher", "api", "activities", "workflows", "routing", "promise", "adapters"},
    "adapters": {"launcher", "api", "activities", "workflows", "routing"},
    "activities": {"launcher", "api", "workflows"},
    # Workflows reach the world only through activities, by name (workflows/activities.py): never their code.
    "workflows": {"launcher", "api", "activities", "routing", "promise", "inventory", "adapters", "nodal"},
    "api": {"launcher", "activities"},
}


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_layer_imports_only_what_lies_below_it(package):
    wrong = {f"{p.relative_to(ROOT)} imports {sorted(imports(p) & FORBIDDEN[package])}"
             for p in (ROOT / package).rglob("*.py") if imports(p) & FORBIDDEN[package]}
    assert not wrong, sorted(wrong)
