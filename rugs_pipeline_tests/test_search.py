"""The catalog's LanceDB search index on the real recordings: answer quality, the README's Python form as
written, atomic rebuilds, refusals, and the Dagster asset."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import lancedb
import pytest

from rugs_pipeline.config import ConfigError
from rugs_pipeline.derive import search
from rugs_pipeline.defs.catalog import event_catalog, events_index
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive import catalog
from rugs_pipeline.store.layout import Store


README = Path(__file__).resolve().parent.parent / "README.md"

# question -> events any of which must be among the top 5 hits
QUESTIONS = {
    "Which fields hold sidebets?": {"gameStateUpdate", "sidebetEventUpdate", "playerUpdate"},
    "sidebet payout of a finished game": {"gameStateUpdate"},
    "When did the game rug?": {"gameStateUpdate"},
    "Which tick did the rug happen at?": {"gameStateUpdate"},
    "What is the current price?": {"gameStateUpdate"},
    "Where is the leaderboard with each player's pnl?": {"gameStateUpdate", "leaderboardData"},
    "How do I see trades, buys and sells?": {"standard/newTrade"},
    "chat messages of players": {"newChatMessage", "chatHistory"},
    "How much cash does the logged-in player have?": {"playerUpdate"},
    "provably fair server seed": {"gameStateUpdate"},
    "How long until the next game starts (cooldown)?": {"gameStateUpdate"},
    "rug royale tournament": {"rugRoyaleUpdate"},
    "golden hour": {"goldenHourUpdate"},
    "battle event leaderboard": {"battleEventUpdate"},
    "how much money does the player have": {"playerUpdate"},  # no word of the field: the vector finds it
}


@pytest.fixture(scope="module")
def indexed(real_store) -> Store:
    store, days = real_store
    for day in days:
        catalog.build_day(store, day)
    search.build_index(store)
    return store


def test_what_fields_are_in_player_update(indexed) -> None:
    hits = search.search(indexed, "What fields are in playerUpdate?", 5)
    assert [h["event"] for h in hits] == ["playerUpdate"] * 5


@pytest.mark.parametrize("question", sorted(QUESTIONS))
def test_questions_find_their_events(indexed, question) -> None:
    hits = search.search(indexed, question, 5)
    assert {h["event"] for h in hits} & QUESTIONS[question], [(h["event"], h["path"]) for h in hits]


def test_readme_python_form_runs_as_written(indexed, tmp_path, monkeypatch) -> None:
    section = README.read_text().split("## What the feed says", 1)[1].split("\n## ", 1)[0]
    (code,) = [b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "open_table" in b]
    home = tmp_path / "home"
    home.mkdir()
    (home / "rugs_data").symlink_to(indexed.root)
    monkeypatch.setenv("HOME", str(home))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert [r["event"] for r in scope["results"]][:5] == ["playerUpdate"] * 5


def test_rebuild_is_atomic_for_readers(indexed) -> None:
    rows = lancedb.connect(str(search.index_path(indexed))).open_table(search.TABLE).count_rows()
    seen, errors, stop = set(), [], threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                seen.add(lancedb.connect(str(search.index_path(indexed))).open_table(search.TABLE).count_rows())
            except Exception as exc:  # a reader racing the delete of the old index may fail: never see a part
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for _ in range(3):
            search.build_index(indexed)
    finally:
        stop.set()
        reader.join()
    assert seen == {rows}
    assert not list(search.index_path(indexed).parent.glob(".events.lance.*"))  # no staging left behind


def test_s3_lake_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="s3 lake") as err:
        search.index_path(Store.at("s3://bucket/prefix"))
    assert "\n" not in str(err.value)
    # nor is the asset in an s3 lake's code location, for automation to fail after every landing
    code = ("from rugs_pipeline.definitions import defs; "
            "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "RUGS_DATA_DIR": "s3://bucket/prefix"},
                         capture_output=True, text=True, check=True)
    assert "event_catalog" in out.stdout and "events_index" not in out.stdout


def test_asset_builds_the_index(real_store, tmp_path) -> None:
    store, days = real_store
    instance = dg.DagsterInstance.ephemeral()
    resources = {"store": StoreResource(data_dir=str(store.root))}
    assert dg.materialize([event_catalog], partition_key=days[0], instance=instance, resources=resources).success
    result = dg.materialize([events_index], instance=instance, resources=resources)
    assert result.success
    meta = result.asset_materializations_for_node("events_index")[0].metadata
    tbl = lancedb.connect(str(search.index_path(store))).open_table("events")
    assert meta["events"].value + meta["paths"].value == tbl.count_rows() > 100
    assert {"text", "vector", "event", "path", "types", "examples"} <= set(tbl.schema.names)


def test_a_store_without_catalog_gets_an_empty_index(tmp_path) -> None:
    store = Store(tmp_path / "rugs_data")
    store.ensure_manifest()
    with pytest.raises(FileNotFoundError, match="no search index yet"):
        search.search(store, "price")
    report = search.build_index(store)
    assert (report.events, report.paths, report.days) == (0, 0, [])
    assert search.search(store, "What fields are in playerUpdate?") == []
