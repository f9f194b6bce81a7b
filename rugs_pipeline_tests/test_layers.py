"""Every package imports only downwards: a lower floor never imports a higher one (README, What runs where).
Nothing imports a test module: shared helpers live in rugs_pipeline/testing.py, fixtures in conftest.py.

An AST walk over the files, so a lazy import inside a function counts as well.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE = REPO_ROOT / "rugs_pipeline"
# Folders whose files must not import a test module (conftest.py aside: pytest's own)
NO_TEST_IMPORTS = ("rugs_pipeline_tests", "deploy")

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


def imports_of_test_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, the import as written) for each import of a test module: ``from .test_x``, ``from . import test_x``,
    ``from rugs_pipeline_tests.test_x``, ``import rugs_pipeline_tests.test_x``."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, f"import {a.name}") for a in node.names if a.name.startswith("rugs_pipeline_tests.test_")]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            names = [a.name for a in node.names]
            relative = node.level > 0 and (module.startswith("test_") or (not module and any(n.startswith("test_") for n in names)))
            absolute = node.level == 0 and (module.startswith("rugs_pipeline_tests.test_") or
                                            (module == "rugs_pipeline_tests" and any(n.startswith("test_") for n in names)))
            if relative or absolute:
                out.append((node.lineno, f"from {'.' * node.level}{module} import {', '.join(names)}"))
    return out


def files_importing_test_modules(root: Path = REPO_ROOT) -> list[str]:
    out = []
    for folder in NO_TEST_IMPORTS:
        for path in sorted((root / folder).rglob("*.py")):
            if path.name == "conftest.py":
                continue
            rel = path.relative_to(root)
            out += [f"{rel}:{line}: {text}: imports a test module; move what it needs to rugs_pipeline/testing.py "
                    "(helpers) or rugs_pipeline_tests/conftest.py (fixtures)"
                    for line, text in imports_of_test_modules(ast.parse(path.read_text(), str(path)))]
    return out


def test_nothing_imports_a_test_module() -> None:
    found = files_importing_test_modules()
    assert not found, "imports of test modules:\n" + "\n".join(found)


def test_an_import_of_a_test_module_is_named(tmp_path: Path) -> None:
    (tmp_path / "rugs_pipeline_tests").mkdir()
    (tmp_path / "deploy").mkdir()
    (tmp_path / "rugs_pipeline_tests" / "conftest.py").write_text("from .test_derive import real\n")
    (tmp_path / "rugs_pipeline_tests" / "test_a.py").write_text(
        "import os\nfrom .capture_harness import Sim\nfrom .test_derive import GOLDEN\n\ndef f():\n"
        "    from . import test_games\n")
    (tmp_path / "deploy" / "measure.py").write_text(
        "import rugs_pipeline_tests.test_games\nfrom rugs_pipeline_tests.test_catalog import oracle\n")
    fix = "imports a test module; move what it needs to rugs_pipeline/testing.py (helpers) or rugs_pipeline_tests/conftest.py (fixtures)"
    assert files_importing_test_modules(tmp_path) == [
        f"rugs_pipeline_tests/test_a.py:3: from .test_derive import GOLDEN: {fix}",
        f"rugs_pipeline_tests/test_a.py:6: from . import test_games: {fix}",
        f"deploy/measure.py:1: import rugs_pipeline_tests.test_games: {fix}",
        f"deploy/measure.py:2: from rugs_pipeline_tests.test_catalog import oracle: {fix}"]
