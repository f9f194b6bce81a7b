"""Every package imports only downwards: a lower floor never imports a higher one (README, What runs where).

An AST walk over rugs_pipeline/**.py, so a lazy import inside a function counts as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rugs_pipeline"

# Lowest first; names on one floor are siblings and must not import each other.
FLOORS = [{"errors"}, {"config"}, {"formats"}, {"capture", "simulator"}, {"store"}, {"derive"}, {"defs", "definitions"},
          {"consumers", "rl"}, {"tools"}, {"testing"}, {"cli"}]
# Top-level modules that are part of a package's floor and may import it
SAME_PACKAGE = {"definitions": "defs", "rl": "consumers"}


def floor(name: str) -> int:
    return next(i for i, names in enumerate(FLOORS) if name in names)


def imported(tree: ast.AST) -> list[tuple[int, str, str]]:
    """(line, top-level part imported, the import as written) for each import of the package."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("rugs_pipeline.")]
            out += [(node.lineno, n.split(".")[1], f"import {n}") for n in names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            text = f"from {node.module} import {', '.join(a.name for a in node.names)}"
            if node.module == "rugs_pipeline":
                out += [(node.lineno, a.name, text) for a in node.names]
            elif node.module.startswith("rugs_pipeline."):
                out.append((node.lineno, node.module.split(".")[1], text))
    return out


def violations(package: Path = PACKAGE) -> list[str]:
    known = set().union(*FLOORS)
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if rel.parts == ("__init__.py",):
            continue
        here = rel.parts[0].removesuffix(".py")
        if here not in known:
            out.append(f"rugs_pipeline/{rel}: not on any floor; add it to FLOORS in {Path(__file__).name}")
            continue
        for line, there, text in imported(ast.parse(path.read_text(), str(path))):
            if there not in known:
                out.append(f"rugs_pipeline/{rel}:{line}: {text}: imports {there}, which is on no floor")
            elif there != here and SAME_PACKAGE.get(here) != there and floor(there) >= floor(here):
                out.append(f"rugs_pipeline/{rel}:{line}: {text}: {here} must not import {there} (same floor or higher)")
    return out


def test_every_package_imports_only_downwards() -> None:
    found = violations()
    assert not found, "imports against the floors:\n" + "\n".join(found)


def test_an_upward_import_is_named(tmp_path: Path) -> None:
    (tmp_path / "formats").mkdir()
    (tmp_path / "formats" / "spool.py").write_text("import os\n\ndef f():\n    from rugs_pipeline.store import lake\n")
    assert violations(tmp_path) == [
        "rugs_pipeline/formats/spool.py:4: from rugs_pipeline.store import lake: formats must not import store "
        "(same floor or higher)"]
