"""The package rules of docs/architecture.md, checked on every import in src/spotlake.

Each package may import only the packages its row of the table names; a module whose name starts
with ``_`` is private to its package (no other package imports it); the CLI never imports the
test-support package. Every import counts, top-level or inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "spotlake"

FOUNDATION = {"model", "errors", "clock"}

#: Top-level part of spotlake -> the other parts it may import (see docs/architecture.md).
ALLOWED: dict[str, set[str]] = {
    "model": {"errors", "clock"},
    "errors": set(),
    "clock": set(),
    "redact": FOUNDATION,
    "serde": FOUNDATION,
    "retry": {"clock"},
    "notify": FOUNDATION | {"redact"},
    "progress": set(),
    "collect": FOUNDATION | {"redact"},
    "scoring": FOUNDATION | {"serde"},
    "storage": FOUNDATION | {"retry"},
    "pipeline": FOUNDATION | {"serde", "retry", "collect", "scoring", "storage", "notify", "redact"},
    "compute": FOUNDATION | {"serde", "retry", "storage", "notify", "redact"},
    "analysis": FOUNDATION | {"storage", "scoring"},
    "cli": FOUNDATION
    | {"serde", "retry", "collect", "scoring", "storage", "notify", "pipeline", "progress", "redact"}
    | {"compute", "analysis", "testing"},
    "testing": FOUNDATION | {"serde", "retry", "collect", "scoring", "storage", "progress", "compute"},
    "__init__": FOUNDATION | {"collect", "pipeline", "scoring", "storage", "analysis"},
    "__main__": {"cli"},
}


def _part(module: Path) -> str:
    rel = module.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(module: Path) -> list[str]:
    tree = ast.parse(module.read_text(), filename=str(module))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return [n for n in names if n == "spotlake" or n.startswith("spotlake.")]


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_each_package_imports_only_what_the_architecture_allows() -> None:
    wrong = []
    for module in _modules():
        mine = _part(module)
        assert mine in ALLOWED, f"{module}: add its package to ALLOWED and docs/architecture.md"
        for name in _imports(module):
            parts = name.split(".")
            if len(parts) < 2:
                continue
            theirs = parts[1]
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{module.relative_to(SRC)} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_private_modules_are_only_imported_by_their_own_package() -> None:
    wrong = []
    for module in _modules():
        for name in _imports(module):
            parts = name.split(".")
            private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
            if not private:
                continue
            owner = parts[: private[0]]  # the package that holds the private module
            mine = ["spotlake", *module.relative_to(SRC).with_suffix("").parts]
            if mine[: len(owner)] != owner:
                wrong.append(f"{module.relative_to(SRC)} imports the private {name}")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_700_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 700}
    assert not long, f"split these modules (one idea each): {long}"
