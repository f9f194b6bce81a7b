"""The README's commands run as written.

Every ```bash block is executed with ``bash -e`` from the repository root, and every
```sql block with DuckDB, in order, with HOME pointed at a temporary folder so that
``~/rugs_data`` is a fresh store. Two commands are exercised elsewhere: ``make test``
is this very suite and ``make demo`` is started by test_ui_browser.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from .conftest import REPO_ROOT

EXERCISED_ELSEWHERE = {"make test", "make demo"}


def _blocks(lang: str) -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def _commands(block: str) -> list[str]:
    return [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]


def test_first_screen_shows_the_two_commands() -> None:
    first_screen = "\n".join((REPO_ROOT / "README.md").read_text().splitlines()[:40])
    first_block = _blocks("bash")[0]
    assert _commands(first_block) == ["make demo", "make test"]
    assert "make demo" in first_screen and "make test" in first_screen


def test_readme_walkthrough_runs_as_written(real_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUGS_", "DAGSTER_"))}
    env["HOME"] = str(tmp_path)
    ran = 0
    for block in _blocks("bash"):
        if set(_commands(block)) <= EXERCISED_ELSEWHERE:
            continue
        out = subprocess.run(["bash", "-e", "-c", block], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, f"README block failed:\n{block}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
        ran += 1
    assert ran >= 2

    store = tmp_path / "rugs_data"
    assert (store / "manifests" / "schema_version.json").is_file()
    code = "import duckdb, sys; print(len(duckdb.connect().execute(sys.argv[1]).fetchall()))"
    for sql in _blocks("sql"):
        for statement in (s.strip() for s in sql.split(";") if s.strip()):
            out = subprocess.run([sys.executable, "-c", code, statement], env=env, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            assert int(out.stdout) > 0, f"no rows from the README's query: {statement}"
