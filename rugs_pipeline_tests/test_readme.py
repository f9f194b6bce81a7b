"""The README's commands run as written.

Every ```bash block is executed with ``bash -e`` from the repository root, and every
```sql block with DuckDB, then every ```python block verbatim (the consumer snippets, pandas'
``.df()`` included), in order, with HOME pointed at a temporary folder so that ``~/rugs_data`` is a
fresh store. The walkthrough covers a past day (a real recording) and today (the simulator's feed). Two commands are exercised elsewhere: ``make test``
is this very suite and ``make demo`` is started by test_ui_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from .conftest import REPO_ROOT

EXERCISED_ELSEWHERE = {"make test", "make demo"}
# python blocks that need more than the walkthrough's store, each run as written by its own test
PYTHON_EXERCISED_ELSEWHERE = {"rugs_pipeline.rl": "test_episodes.py", "import lancedb": "test_search.py"}
PAST_DAY = "2025-12-12"  # the day of the real recording the walkthrough imports
# runs a README python block as written, then reports (on its last line) the row count of each pandas DataFrame
# it made
RUN_SNIPPET = """
import json, sys
import pandas as pd
namespace = {}
exec(sys.argv[1], namespace)
print(json.dumps({name: value["game_id"].dropna().str[:8].unique().tolist() if "game_id" in value else len(value)
                  for name, value in namespace.items() if isinstance(value, pd.DataFrame)}))
"""


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
    ran, printed = 0, ""
    for block in _blocks("bash"):
        if set(_commands(block)) <= EXERCISED_ELSEWHERE:
            continue
        out = subprocess.run(["bash", "-e", "-c", block], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, f"README block failed:\n{block}\n--- stdout\n{out.stdout[-3000:]}\n--- stderr\n{out.stderr[-3000:]}"
        ran += 1
        printed += out.stdout + out.stderr
    assert ran >= 2
    # the import names the UTC day it wrote and the command that lands it (the walkthrough's next line)
    assert f"wrote UTC day(s) {PAST_DAY}" in printed and f"backfill --from {PAST_DAY} --to {PAST_DAY} --land" in printed
    _assert_backfill_of_an_empty_day_names_the_nearest(env, tmp_path / "rugs_data")

    store = tmp_path / "rugs_data"
    assert (store / "manifests" / "schema_version.json").is_file()
    code = "import duckdb, sys; print(len(duckdb.connect().execute(sys.argv[1]).fetchall()))"
    for sql in _blocks("sql"):
        for statement in (s.strip() for s in sql.split(";") if s.strip()):
            out = subprocess.run([sys.executable, "-c", code, statement], env=env, capture_output=True, text=True)
            assert out.returncode == 0, out.stderr
            assert int(out.stdout) > 0, f"no rows from the README's query: {statement}"

    snippets = _blocks("python")
    assert len(snippets) >= 2 and all(".df()" in snippet for snippet in snippets[:2])
    today = datetime.now(timezone.utc).strftime("%Y%m%d")
    for snippet in (s for s in snippets if not any(key in s for key in PYTHON_EXERCISED_ELSEWHERE)):
        out = subprocess.run([sys.executable, "-c", RUN_SNIPPET, snippet], env=env, capture_output=True, text=True)
        assert out.returncode == 0, f"README snippet failed:\n{snippet}\n{out.stderr[-3000:]}"
        frames = json.loads(out.stdout.splitlines()[-1])  # after what the snippet prints itself
        assert all(frames.values()) and (frames or ".df()" not in snippet), f"no rows from:\n{snippet}\n{frames}"
        if "games_df" in frames:  # the game_tick snippet reads both days' games
            assert {PAST_DAY.replace("-", ""), today} <= set(frames["games_df"]), frames

    _assert_compaction_reports(store / "dagster_home")


def _assert_backfill_of_an_empty_day_names_the_nearest(env: dict, store: Path) -> None:
    """The day before the imported one holds nothing: one line naming the nearest day with data, exit 1, no files."""
    empty = "2025-12-11"
    out = subprocess.run([str(REPO_ROOT / ".venv/bin/rugs-pipeline"), "backfill", "--from", empty, "--to", empty,
                          "--land"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out
    assert f"no data for {empty} in the spool" in out.stderr and f"{PAST_DAY} (after)" in out.stderr, out.stderr
    assert not list((store / "events_parquet").glob(f"doc_type=*/date={empty}")), "files written for an empty day"


def _assert_compaction_reports(home: Path) -> None:
    """`ws_event*` on today succeeded above; compaction left the open day as landed and said why."""
    today = datetime.now(timezone.utc).date().isoformat()
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day, compacted in ((PAST_DAY, True), (today, False)):
            [record] = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("ws_event_compaction"), asset_partitions=[day]), limit=1,
            ).records
            metadata = record.asset_materialization.metadata
            assert metadata["compacted"].value is compacted, (day, metadata)
    assert metadata["reason"].value == f"{today} is not closed yet: left as landed, compacted after its UTC midnight"
