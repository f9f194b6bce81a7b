"""What consumers run: the CLI from import to query, Dagster's own CLI, and the version guard."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from rugs_pipeline import consumers
from rugs_pipeline.tools.bench import golden
from rugs_pipeline.store.layout import SchemaVersionError, Store
from rugs_pipeline.testing import unpacked_golden

from .conftest import REPO_ROOT

BIN = REPO_ROOT / ".venv" / "bin"


def _run(args: list, env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, cwd=REPO_ROOT, **kw)


def test_import_then_dagster_cli_materialize_then_query(tmp_path: Path) -> None:
    data = tmp_path / "rugs_data"
    # in_process (the default, named here so an RUGS_EXECUTOR of the caller's does not change it): the
    # run in one process instead of one Python process per step (on two cores ~7 s instead of ~55 s).
    # The multiprocess executor runs a job in test_execution.py.
    env = {**os.environ, "RUGS_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
           "RUGS_EXECUTOR": "in_process"}
    (tmp_path / "dagster_home").mkdir()
    fixture = unpacked_golden(tmp_path)
    out = _run([BIN / "rugs-pipeline", "import", fixture], env)
    assert out.returncode == 0, out.stderr
    assert fixture.name in out.stdout

    # the README's command for materialising a day by hand
    out = _run([BIN / "dagster", "asset", "materialize", "-m", "rugs_pipeline.definitions",
                "--select", "ws_event*", "--partition", golden.START.date().isoformat()], env, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    lines = [json.loads(line) for line in fixture.read_text().splitlines()]
    rugs = {}
    for obj in lines:
        data_ = obj["data"]
        if obj["event"] == "gameStateUpdate" and data_.get("rugged") and data_["gameId"] not in rugs:
            rugs[data_["gameId"]] = data_["tickCount"]
    # the rugs seen live (game_tick also holds the games of the gameHistory, filled)
    sql = "SELECT game_id, tick FROM game_tick WHERE is_rug_tick AND tick_source = 'observed' ORDER BY game_id"
    con = consumers.connect(data)
    assert con.execute(sql).fetchall() == sorted(rugs.items())
    out = _run([BIN / "rugs-pipeline", "query", "SELECT count(*) AS frames FROM ws_event WHERE frame_kind = 'event'"], env)
    # connect and disconnect are the client library's pseudo-events: lifecycle records, not frames
    assert out.returncode == 0 and str(sum(1 for o in lines if o["event"] not in ("connect", "disconnect"))) in out.stdout


def test_consumer_refuses_unknown_major_version_and_missing_store(tmp_path: Path) -> None:
    with pytest.raises(SchemaVersionError, match="not a rugs_pipeline store"):
        consumers.connect(tmp_path)
    store = Store(tmp_path)
    store.ensure_manifest()
    con = consumers.connect(tmp_path)
    assert con.execute("SELECT count(*) FROM game_tick").fetchone() == (0,), "empty views still bind"
    manifest = json.loads(store.manifest_path.read_text())
    store.manifest_path.write_text(json.dumps({**manifest, "version": "2.0.0"}))
    with pytest.raises(SchemaVersionError, match="'2.0.0' is not readable"):
        consumers.connect(tmp_path)


def test_query_errors_are_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "RUGS_DATA_DIR": str(tmp_path)}
    Store(tmp_path).ensure_manifest()
    out = _run([BIN / "rugs-pipeline", "query", "SELEC nonsense"], env)
    # one error, no traceback: DuckDB's message whole, with where in the SQL (issue 17: hints are kept)
    assert out.returncode == 1 and out.stderr.startswith('error: Parser Error: syntax error at or near "SELEC"')
    assert "LINE 1: SELEC nonsense" in out.stderr and "Traceback" not in out.stderr
    out = _run([BIN / "rugs-pipeline", "import", tmp_path / "missing.jsonl"], env)
    assert out.returncode == 1 and "missing.jsonl" in out.stderr and out.stderr.count("\n") == 1


def test_backfill_cli_rederives_a_date_range_without_relanding(real_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "rugs_data"
    env = {**os.environ, "RUGS_DATA_DIR": str(data)}
    env.pop("DAGSTER_HOME", None)
    fixture = real_dir / "public_2025-12-06_sandbox.jsonl"
    assert _run([BIN / "rugs-pipeline", "import", fixture, "--tz", "America/New_York"], env).returncode == 0
    out = _run([BIN / "rugs-pipeline", "backfill", "--from", "2025-12-06", "--to", "2025-12-07", "--land"], env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [line for line in out.stdout.splitlines() if line.strip().startswith("│ 2025-12-0")]
    # the evening of 12-06 in New York is 12-07 in UTC: 12-06 has no data and is skipped, with a line
    assert len(rows) == 1 and "2025-12-07" in rows[0] and "passed" in rows[0], out.stdout
    assert out.stderr.startswith("no data for 2025-12-06 "), out.stderr
    ticks = consumers.connect(data).execute("SELECT count(*) FROM game_tick").fetchone()[0]
    landed = sorted((data / "events_parquet" / "doc_type=ws_event").rglob("*.parquet"))
    stamps = [p.stat().st_mtime_ns for p in landed]

    # a logic change: re-derive only; the landed raw files are untouched, the result identical
    out = _run([BIN / "rugs-pipeline", "backfill", "--from", "2025-12-06", "--to", "2025-12-07"], env, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [p.stat().st_mtime_ns for p in landed] == stamps
    assert consumers.connect(data).execute("SELECT count(*) FROM game_tick").fetchone()[0] == ticks > 0
    assert (data / "dagster_home").is_dir(), "runs are recorded on the instance the UI reads"

    out = _run([BIN / "rugs-pipeline", "backfill", "--from", "2025-12-07", "--to", "2025-12-06"], env)
    assert out.returncode == 2 and "before" in out.stderr
