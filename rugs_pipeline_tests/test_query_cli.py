"""`rugs-pipeline query`: a readable table at any width, csv/json/parquet output, DuckDB's hints kept whole."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rugs_pipeline.cli import main
from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import landed_store

T0 = 1_765_065_600 * 10**9  # 2025-12-07 00:00 UTC
DAY = "2025-12-07"


@pytest.fixture()
def store(data_dir: Path) -> Store:
    return landed_store(data_dir)


def run(*args: str):
    return CliRunner().invoke(main, ["query", *args], catch_exceptions=False)


def test_a_wide_result_keeps_every_column_name_and_value(store: Store) -> None:
    result = run("SELECT * FROM ws_event ORDER BY seq LIMIT 2")
    assert result.exit_code == 0, result.stderr
    for column in schema.COLUMNS:  # 40+ columns: once squeezed into blanks and "…"
        assert f" {column} " in result.stdout
    assert "query-test" in result.stdout and "gameStateUpdate" in result.stdout
    assert "row 2" in result.stdout
    assert max(map(len, result.stdout.splitlines())) <= 200  # the console's width when not a terminal: no line cut
    # a narrow result stays one table
    narrow = run("SELECT seq, event_name FROM ws_event ORDER BY seq LIMIT 2")
    assert "row 1" not in narrow.stdout and "gameStateUpdate" in narrow.stdout


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_formats_write_every_row_to_a_file(store: Store, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    result = run("SELECT seq, ts, event_name, price FROM ws_event ORDER BY seq", "--format", fmt, "--output", str(out),
                 "--max-rows", "1")
    assert result.exit_code == 0, result.stderr
    assert f"12 rows written to {out}" in result.stderr
    con = duckdb.connect()
    reader = {"csv": "read_csv", "json": "read_json", "parquet": "read_parquet"}[fmt]
    seqs = [r[0] for r in con.execute(f"SELECT seq FROM {reader}(?)", [str(out)]).fetchall()]
    assert seqs == list(range(1, 13))
    if fmt == "parquet":
        assert pq.read_schema(out).names == ["seq", "ts", "event_name", "price"]


def test_csv_and_json_to_stdout(store: Store) -> None:
    csv = run("SELECT seq, event_name FROM ws_event ORDER BY seq LIMIT 2", "--format", "csv")
    assert csv.stdout.splitlines() == ['"seq","event_name"', '1,"gameStateUpdate"', '2,"gameStateUpdate"']
    lines = run("SELECT seq, event_name FROM ws_event ORDER BY seq LIMIT 2", "--format", "json").stdout.splitlines()
    assert [json.loads(line) for line in lines] == [{"seq": 1, "event_name": "gameStateUpdate"},
                                                    {"seq": 2, "event_name": "gameStateUpdate"}]


def test_errors_keep_duckdbs_hints(store: Store) -> None:
    typo = run("SELECT * FROM game_tic")
    assert typo.exit_code == 1
    assert "error: Catalog Error: Table with name game_tic does not exist!" in typo.stderr
    assert 'Did you mean "game_tick"?' in typo.stderr
    column = run("SELECT ticc FROM game_tick")
    assert column.exit_code == 1
    assert 'Referenced column "ticc" not found' in column.stderr
    assert "Candidate bindings:" in column.stderr and '"tick' in column.stderr


def test_table_to_a_file(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    result = run("SELECT seq, event_name FROM ws_event ORDER BY seq", "--output", str(out), "--max-rows", "3")
    assert result.exit_code == 0 and result.stdout == ""
    assert "(more than 3 rows; showing 3)" in result.stderr
    text = out.read_text()
    assert "seq" in text and "event_name" in text and text.count("gameStateUpdate") == 3
