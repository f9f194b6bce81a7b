"""The benchmark's machinery at toy size (no timings asserted: `make bench` measures), and the
row-at-a-time deriver as the second opinion on every optimised derivation, on the golden day and
the real recordings (where ``../shared`` holds them)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from rugs_pipeline.tools.bench import capture, derivation, query, reference, replay, synth
from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.derive.datasets import Frames, derive_all
from rugs_pipeline.derive.games import NEXT_DAY_HEAD, rebuild_games, summarize_games
from rugs_pipeline.store import compaction, landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import FIXTURES, RECORDINGS, tz_of, unpacked_golden


FRAMES = 2_000


@pytest.fixture(scope="module")
def day(tmp_path_factory) -> synth.SyntheticDay:
    cache = tmp_path_factory.mktemp("bench_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUGS_BENCH_CACHE", str(cache))
        return synth.synthetic_day(FRAMES, seed=3)


def test_synthetic_day_is_a_logged_in_recording_landed_like_live_data(day, tmp_path, monkeypatch) -> None:
    assert day.frames == FRAMES == sum(day.mix.values())
    assert {"gameStateUpdate", "gameStatePlayerUpdate", "standard/newTrade", "ping", "pong"} <= set(day.mix)
    assert day.mix["gameStateUpdate"] > day.mix["gameStatePlayerUpdate"] > day.mix["standard/newTrade"]
    files = day.files()
    assert sum(pq.read_metadata(f).num_rows for f in files) == FRAMES
    assert day.prefix(FRAMES // 2) == files[:len(day.prefix(FRAMES // 2))] and len(day.prefix(10**9)) == len(files)
    monkeypatch.setenv("RUGS_BENCH_CACHE", str(tmp_path))
    again = synth.synthetic_day(FRAMES, seed=3)  # built afresh elsewhere: the same bytes
    assert again.root != day.root and again.mix == day.mix
    assert [pq.read_table(f)["raw_json"] for f in again.files()] == [pq.read_table(f)["raw_json"] for f in files]


def test_pipeline_and_row_at_a_time_deriver_agree_on_the_synthetic_day(day, tmp_path) -> None:
    files = day.files()
    assert derivation.pipeline_derive(files, tmp_path / "derived") == FRAMES
    assert derivation.reference_derive(files, tmp_path / "reference") == FRAMES
    assert derivation.same_rows(tmp_path / "derived", tmp_path / "reference") == []
    seconds, parsed, size = derivation.orjson_loop(files)
    assert parsed == sum(n for name, n in day.mix.items() if name not in
                         ("started", "connecting", "connected", "handshake", "open", "connect", "ping", "pong"))
    assert size > 0 and seconds > 0


@pytest.mark.parametrize("name", RECORDINGS)
def test_row_at_a_time_deriver_agrees_with_the_sql_on_recordings(request, tmp_path, name) -> None:
    """Every optimisation of the SQL derivations (reading Parquet in place, pre-filters, the scans of a
    compacted day) is checked here: on each day as landed, then on the same days compacted."""
    if name == "golden":
        files = [unpacked_golden(tmp_path)]
    else:
        files = sorted(request.getfixturevalue("real_dir").glob(FIXTURES[name][0]))
    store = Store(tmp_path / "data")
    reports = import_recordings(files, store.spool_dir, tz=tz_of(name))
    days = sorted({seg.day for rep in reports for seg in rep.segments})
    for d in days:
        landing.land_day(store, d)
    con = duckdb.connect()
    expected = {d: reference.derive(*_day_frames(store, d)) for d in days}
    for layout in ("landed", "compacted"):
        if layout == "compacted":
            for d in days:
                compaction.compact_day(store, d)
        for d in days:
            files, d, head, until = _day_frames(store, d)
            assert Frames(tuple(files)).clustered == (layout == "compacted")
            ours = {**derive_all(Frames(tuple(files))), **rebuild_games(Frames(tuple(files), tuple(head), until), d)}
            ours["games"] = summarize_games(ours["game_tick"], ours["complete_game"], ours["player_action"])
            for doc_type, table in expected[d].items():
                con.register("a", ours[doc_type])
                con.register("b", table)
                differ = [con.execute(f"SELECT count(*) FROM (SELECT {derivation._NORMAL} FROM {x} EXCEPT ALL "
                                      f"SELECT {derivation._NORMAL} FROM {y})").fetchall()[0][0] for x, y in ("ab", "ba")]
                assert differ == [0, 0], (name, layout, d, doc_type)
                assert ours[doc_type]["seq"].to_pylist() == table["seq"].to_pylist(), (name, layout, d, doc_type, "order")


def _day_frames(store: Store, day: str) -> tuple[list[Path], str, list[Path], datetime]:
    """A day's files, the day, the next day's files and the end of the next day's head: a games rebuild's input."""
    next_day = (date.fromisoformat(day) + timedelta(days=1)).isoformat()
    until = datetime.combine(date.fromisoformat(next_day), time(), timezone.utc) + NEXT_DAY_HEAD
    return store.partition_files("ws_event", day), day, store.partition_files("ws_event", next_day), until


def test_capture_machinery_loses_nothing(day, tmp_path) -> None:
    result = capture.measure_capture(day, 300, tmp_path)
    assert (result.frames, result.lost, result.extra) == (300, 0, 0)
    assert result.sink_rate > 0 and result.recorder_rate > 0


def test_query_machinery_builds_thirty_days_three_ways(day, tmp_path) -> None:
    result = query.measure_queries(day, FRAMES, tmp_path, derivation.game_tick_of)
    assert result.files["single file"] == 2 and result.files["compacted"] <= 2 * query.DAYS * 4
    assert result.files["landed"] == query.DAYS * (len(day.files()) + 1)
    for layout in ("landed", "compacted"):
        assert {q: result.ratio(layout, q) > 0 for q in ("game_tick", "ws_event")} == {"game_tick": True,
                                                                                      "ws_event": True}
    con = duckdb.connect()
    counts = {layout: con.execute(sql).fetchall() for layout, sql in (
        ("compacted", query.seed_queries("", f"{tmp_path}/compacted/events_parquet/**/*.parquet")["ws_event"]),
        ("single", query.seed_queries("", f"{tmp_path}/single file/ws_event.parquet")["ws_event"]))}
    assert counts["compacted"] == counts["single"] and counts["single"][0][0] > 0


def test_sidebet_env_figure_steps_the_days_episodes(day, tmp_path) -> None:
    from rugs_pipeline.tools.bench import sidebet_env

    result = sidebet_env.measure_env(day, tmp_path / "env", steps=2_000, rounds=1)
    summaries = Store(tmp_path / "env").read_partition("games", synth.DAY)["message"].to_pylist()
    games = summaries.count("complete")
    assert (result.games, result.steps, result.cpus) == (games, 2_000, 1) and result.games > 0
    assert result.resets >= 2_000 // result.ticks and result.rate > 0


def test_replay_machinery_measures_the_server_and_the_reader(day, tmp_path) -> None:
    server = replay.measure_server(day, 300, tmp_path / "server")
    assert server.frames == 300 and server.replay_rate > 0 and server.simulator_rate > 0
    reader = replay.measure_reader(day, tmp_path / "reader")
    # every event frame of the day, read by both sides (the synthetic day has no other frame to serve)
    assert reader.reader.value[0] == reader.orjson_frames > 0 and reader.small.value[0] == reader.reader.value[0]
    assert reader.peak(reader.reader) > reader.reader.value[1] > 0 and reader.ratio > 0
