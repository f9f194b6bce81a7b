"""The README's reference tables say what the code has: every CLI command, every asset's checks as the UI shows them."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import fields

from rugs_pipeline.cli import main
from rugs_pipeline.config import Settings
from rugs_pipeline.definitions import defs

from .conftest import REPO_ROOT


def _section_rows(heading: str) -> list[list[str]]:
    """The rows of the first table after ``heading`` (a line of the README), header and rule left out."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(heading)
    rows = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def test_cli_table_lists_every_command() -> None:
    listed = {re.match(r"`([\w-]+)", row[0]).group(1) for row in _section_rows("## The CLI")}
    assert listed == set(main.commands), (
        f"in the CLI but not the README's table: {sorted(set(main.commands) - listed)}; "
        f"in the table but not the CLI: {sorted(listed - set(main.commands))}"
    )


def test_checks_per_asset_are_those_the_ui_shows() -> None:
    readme = {}
    for asset, checks in _section_rows("**Checks per asset**"):
        readme[asset.strip("`")] = {(name, blocking == " (blocking)")
                                    for name, blocking in re.findall(r"`(\w+)`( \(blocking\))?", checks)}
    defined = defaultdict(set)
    for checks_def in defs.asset_checks:
        for spec in checks_def.check_specs:
            defined[spec.asset_key.to_user_string()].add((spec.name, spec.blocking))
    assert readme == dict(defined)


def test_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = {var: row[1] for row in _section_rows("## Configuration") for var in re.findall(r"`([A-Z_]+)`", row[0])}
    for f in fields(Settings):
        var = f.metadata["env"]
        assert var in rows, f"Settings.{f.name} ({var}) is not in the README's Configuration table"
        if f.default is not None:
            assert f"`{str(f.default).lower() if isinstance(f.default, bool) else f.default}`" == rows[var], var
    # the table's other variables are read by the Makefile and scripts, or by the AWS client
    outside = (REPO_ROOT / "Makefile").read_text() + "".join(
        p.read_text() for folder in ("scripts", "deploy") for p in (REPO_ROOT / folder).rglob("*") if p.is_file())
    settings = {f.metadata["env"] for f in fields(Settings)}
    unread = [var for var in rows if var not in settings and not var.startswith("AWS_") and var not in outside]
    assert not unread, f"in the README's Configuration table but read nowhere: {unread}"
