"""A corrupt Parquet file is named by every error it causes; `query` answers with the views it can still build."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from rugs_pipeline.cli import main
from rugs_pipeline.consumers import connect
from rugs_pipeline.derive.datasets import Frames, derive
from rugs_pipeline.derive.games import rebuild_games
from rugs_pipeline.store import compaction, validation
from rugs_pipeline.store.layout import Store, UnreadableFileError
from rugs_pipeline.testing import DAY, garble_footer, landed_store, truncate


CORRUPTIONS = {"truncated": truncate, "garbled footer": garble_footer}


@pytest.fixture(params=list(CORRUPTIONS))
def broken(request, data_dir: Path) -> tuple[Store, Path]:
    store = landed_store(data_dir)
    bad = store.partition_files("ws_event", DAY)[1]
    CORRUPTIONS[request.param](bad)
    return store, bad


def test_every_read_names_the_file(broken: tuple[Store, Path]) -> None:
    store, bad = broken
    files = Frames(tuple(store.partition_files("ws_event", DAY)))
    reads = {
        "footers (the landing run's row count)": lambda: store.partition_rows("ws_event", DAY),
        "rows": lambda: store.read_partition("ws_event", DAY),
        "a derivation (DuckDB)": lambda: derive("system_event", files),
        "the games' rebuild (DuckDB)": lambda: rebuild_games(files, DAY),
        "compaction": lambda: compaction.compact_day(store, DAY),
        "a consumer's connection": lambda: connect(store.root),
    }
    for what, read in reads.items():
        with pytest.raises(UnreadableFileError) as caught:
            read()
        assert str(bad) in str(caught.value), what
        assert "rugs-pipeline doctor" in str(caught.value), what
    # the blocking check fails (rather than erroring) and says which file
    checked = validation.validate_partition(store, "ws_event", DAY)
    assert any(str(bad) in failure for failure in checked.failures)


def test_query_answers_with_the_views_it_can_build(broken: tuple[Store, Path]) -> None:
    store, bad = broken
    result = CliRunner().invoke(main, ["query", "SELECT 1 AS one"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "one" in result.stdout and "1" in result.stdout
    note = result.stderr.splitlines()
    assert len(note) == 1 and "Traceback" not in result.stderr
    assert note[0].startswith("note: views not built, the others answer: ws_event (")
    assert str(bad) in note[0] and "rugs-pipeline doctor" in note[0]
    # the other views still answer
    rows = CliRunner().invoke(main, ["query", "SELECT count(*) AS n FROM game_tick"], catch_exceptions=False)
    assert rows.exit_code == 0 and "0" in rows.stdout


def test_dagster_runs_name_the_file(broken: tuple[Store, Path]) -> None:
    import dagster as dg

    from rugs_pipeline.defs.assets import derived_assets, ws_event
    from rugs_pipeline.defs.resources import StoreResource

    store, bad = broken
    system_event = next(a for a in derived_assets if a.key.to_user_string() == "system_event")
    for asset in (ws_event, system_event):  # a landing run (its row count) and a derivation (DuckDB)
        result = dg.materialize([asset], partition_key=DAY, instance=dg.DagsterInstance.ephemeral(),
                                resources={"store": StoreResource()}, raise_on_error=False)
        assert not result.success
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert f"UnreadableFileError: {bad}: not a readable Parquet file" in failure.step_failure_data.error.to_string()
