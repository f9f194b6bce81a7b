"""Games rebuilt whole (game_tick, complete_game, games) and the checks that they agree.

Expectations come from the recordings read with plain ``json`` (``recorded_games``): what
the recording itself says about each game (its frames, price windows, snapshot, gameHistory,
rug frames, trades), never from the code's output. The recordings: the golden day in any clone,
the real ones where ``../shared`` holds them (see test_derive.py; helpers in rugs_pipeline/testing.py).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import warnings
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow as pa
import pytest

from rugs_pipeline.formats import spool
from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.checks import schema_checks
from rugs_pipeline.defs.games import game_assets, game_checks, game_frames
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive import consistency, games
from rugs_pipeline.derive.datasets import Frames
from rugs_pipeline.derive.games import NEXT_DAY_HEAD, rebuild_games
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.store import doctypes, landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.store.validation import validate_table

from rugs_pipeline.testing import (
    RECORDINGS, UTC, check_ended_games_match_the_recording, read_events, received, recorded_games, rows_by_game,
    run_pipeline, tz_of, unpacked_golden, write_jsonl,
)

# --- rebuilt from the real recordings --------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_game_ended_in_the_recording_matches_it_tick_for_tick(real, name):
    run = real(name)
    games = recorded_games(run.events)
    assert check_ended_games_match_the_recording(run.rows("game_tick"), games) > 0
    # one row per game in exactly one partition
    ids = [r["game_id"] for day in run.days for r in run.derived[day]["complete_game"].to_pylist()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("name", RECORDINGS)
def test_each_tick_says_where_its_price_came_from_and_counts_disagreement(real, name):
    run = real(name)
    games = recorded_games(run.events)
    got = rows_by_game(run.rows("game_tick"))
    expected = {gid: g.expected_ticks() for gid, g in games.items() if g.expected_ticks()}
    assert set(got) == set(expected)
    for gid, ticks in expected.items():
        assert set(got[gid]) == set(ticks), gid
        for tick, want in ticks.items():
            row = got[gid][tick]
            assert {k: row[k] for k in want} == want, (gid, tick)
            assert row["phase"] == ("rugged" if tick == games[gid].rug_tick else "active")
            assert (row["raw_json"] is not None) == (row["tick_source"] == "observed")


def test_a_capture_that_joined_mid_game_still_yields_the_whole_game(real):
    """The sandbox joins at tick 128: ticks 0..124 come from the snapshot, 125..127 from the window of
    tick 129, the rest were seen; together they are the game's own gameHistory, tick for tick."""
    run = real("sandbox")
    first = next(e for e in received(run.events, "gameStateUpdate") if e["payload"].get("active"))
    gid, joined_at = first["payload"]["gameId"], first["payload"]["tickCount"]
    snapshot = next(e["payload"] for e in received(run.events, "gameStateUpdate") if "prices" in e["payload"])
    history = recorded_games(run.events)[gid].history
    rows = rows_by_game(run.rows("game_tick"))[gid]
    assert joined_at == 129 and snapshot["tickCount"] == 128
    assert {t: r["price"] for t, r in rows.items()} == dict(enumerate(history["prices"]))
    sources = {t: r["tick_source"] for t, r in rows.items()}
    assert {sources[t] for t in range(125)} == {"snapshot_prices"}
    assert {sources[t] for t in range(125, 128)} == {"partial_prices"}
    assert {sources[t] for t in range(128, len(history["prices"]))} == {"observed"}


def test_a_capture_that_reconnected_mid_game_still_yields_the_whole_game(real):
    """The golden day's outage: the recorder is back at tick T of a game whose start it missed. The
    on-connect snapshot gives ticks 0..T-1, the frames seen give the rest: the game's own gameHistory."""
    run = real("golden")
    back = max(i for i, e in enumerate(run.events) if e["name"] == "connect")
    snapshot = run.events[back + 1]["payload"]
    gid, joined_at = snapshot["gameId"], snapshot["tickCount"]
    history = recorded_games(run.events)[gid].history
    rows = rows_by_game(run.rows("game_tick"))[gid]
    window = sorted(int(t) for t in run.events[back + 2]["payload"]["partialPrices"]["values"])  # the next tick frame's
    assert snapshot["active"] is True and len(snapshot["prices"]) == joined_at + 1 > window[0] > 1
    assert {t: r["price"] for t, r in rows.items()} == dict(enumerate(history["prices"]))
    sources = {t: r["tick_source"] for t, r in rows.items()}
    assert {sources[t] for t in range(window[0])} == {"snapshot_prices"}
    assert {sources[t] for t in range(window[0], joined_at)} == {"partial_prices"}  # a window outranks the snapshot
    assert {sources[t] for t in range(joined_at, len(history["prices"]))} == {"observed"}
    (summary,) = [r for r in run.rows("games") if r["game_id"] == gid]
    assert summary["message"] == "complete" and summary["filled_ticks"] == joined_at


def _drop_ticks(run, gid: str, ticks: range, path: Path) -> Path:
    lines = [line for f in run.files for line in f.read_text().splitlines() if line.strip()]
    kept = []
    for line in lines:
        obj = json.loads(line)
        p = obj["data"]
        dropped = obj["event"] == "gameStateUpdate" and isinstance(p, dict) and p.get("gameId") == gid \
            and p.get("active") is True and p.get("tickCount") in ticks
        if not dropped:
            kept.append(line)
    assert len(kept) == len(lines) - len(ticks)
    return write_jsonl(path, kept)


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_missed_frames_are_filled_from_the_window_and_the_history(real, tmp_path, name):
    """Fifty-one tick frames lost: the next frame's window gives back four, gameHistory the rest."""
    original = real(name)
    seen = rows_by_game(original.rows("game_tick"))
    gid = next(gid for gid, g in recorded_games(original.events).items()  # raw: the game it starts in (rugs at 229)
               if g.history and g.history.get("prices") and g.rug_tick > 151
               and all(seen[gid][t]["tick_source"] == "observed" for t in range(100, 152)))
    run = run_pipeline([_drop_ticks(original, gid, range(100, 151), tmp_path / "gap.jsonl")], tmp_path / "data", tz_of(name))
    before, after = rows_by_game(original.rows("game_tick"))[gid], rows_by_game(run.rows("game_tick"))[gid]
    assert {t: r["price"] for t, r in after.items()} == {t: r["price"] for t, r in before.items()}
    assert {after[t]["tick_source"] for t in range(100, 147)} == {"game_history"}
    assert {after[t]["tick_source"] for t in range(147, 151)} == {"partial_prices"}  # tick 151's window
    (summary,) = [r for r in run.rows("games") if r["game_id"] == gid]
    observed = sum(r["tick_source"] == "observed" for r in before.values())
    assert (summary["observed_ticks"], summary["filled_ticks"]) == (observed - 51, len(before) - observed + 51)
    assert summary["message"] == "complete" and summary["price_conflicts"] == 0


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_a_source_that_disagrees_is_counted_and_reported(real, tmp_path, name):
    original = real(name)
    lines = [line for line in original.files[0].read_text().splitlines() if line.strip()]
    at = next(i for i, line in enumerate(lines) if '"partialPrices"' in line and '"tickCount": 40,' in line)
    obj = json.loads(lines[at])
    gid, window = obj["data"]["gameId"], obj["data"]["partialPrices"]["values"]
    kept = window["38"]
    window["38"] = kept * 1.5  # one frame's window misremembers tick 38
    lines[at] = json.dumps(obj)
    run = run_pipeline([write_jsonl(tmp_path / "conflict.jsonl", lines)], tmp_path / "data", tz_of(name))
    row = rows_by_game(run.rows("game_tick"))[gid][38]
    assert (row["price"], row["tick_source"], row["price_conflicts"]) == (kept, "observed", 1)
    day = run.days[0]
    verdict = consistency.price_conflicts(run.derived[day]["game_tick"])
    assert not verdict.passed and verdict.counts["conflicting_ticks"] == 1 and f"{gid} tick 38" in verdict.problems[0]
    (summary,) = [r for r in run.rows("games") if r["game_id"] == gid]
    assert summary["price_conflicts"] == 1
    (record,) = [r for r in run.rows("complete_game") if r["game_id"] == gid]
    assert record["price_conflicts"] == 1


@pytest.mark.parametrize("name", RECORDINGS)
def test_complete_game_is_the_history_once_per_game_with_its_seed_verified(real, name):
    run = real(name)
    games = {gid: g for gid, g in recorded_games(run.events).items() if g.history is not None}
    rows = {r["game_id"]: r for r in run.rows("complete_game")}
    assert len(rows) == len(run.rows("complete_game")) and set(rows) == set(games)
    for gid, g in games.items():
        h, row = g.history, rows[gid]
        prices = h.get("prices")
        seed, hashed = h["provablyFair"]["serverSeed"], h["provablyFair"]["serverSeedHash"]
        announced = g.announced[0] if g.announced else hashed  # the hash the game ran under, if it was seen
        assert row["ts"] == g.history_ts and json.loads(row["raw_json"]) == h
        assert (row["tick"], row["tick_count"]) == ((len(prices) - 1, len(prices)) if prices else (None, None))
        assert row["price"] == (prices[-1] if prices else None) and row["peak_multiplier"] == h.get("peakMultiplier")
        assert row["end_ts"] == datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=h["timestamp"])
        assert (row["server_seed"], row["server_seed_hash"]) == (seed, announced)
        assert row["seed_verified"] is (hashlib.sha256(seed.encode()).hexdigest() == announced)
        assert ("not seen running" in (row["message"] or "")) == (not g.announced)
    assert all(r["seed_verified"] for r in rows.values()), "every revealed seed of the recordings verifies"


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_a_game_recorded_twice_is_one_game(real, tmp_path, name):
    """Two recorder sessions of the same feed (the file imported twice under two session ids)."""
    original = real(name)
    text = original.files[0].read_text()
    twice = [write_jsonl(tmp_path / f"copy_{n}.jsonl", text.splitlines() + [""] * n) for n in (1, 2)]
    run = run_pipeline(twice, tmp_path / "data", tz_of(name))
    assert len({s for day in run.days for s in run.ws(day)["session_id"].to_pylist()}) == 2
    for doc_type, key in (("game_tick", ("game_id", "tick")), ("complete_game", ("game_id",)), ("games", ("game_id",))):
        rows = run.rows(doc_type)
        assert len(rows) == len({tuple(r[k] for k in key) for r in rows}) == len(original.rows(doc_type)), doc_type


def _two_sessions(real, tmp_path: Path, name: str) -> list[Path]:
    """golden: the day cut at its reconnect into two recordings (a recorder restarted); real: sandbox and raw."""
    if name == "real":
        return [real("sandbox").files[0], real("raw").files[0]]
    lines = real("golden").files[0].read_text().splitlines()
    cut = max(i for i, line in enumerate(lines) if '"event": "connect"' in line)
    return [write_jsonl(tmp_path / "before.jsonl", lines[:cut]), write_jsonl(tmp_path / "after.jsonl", lines[cut:])]


@pytest.mark.parametrize("name", ["golden", "real"])
def test_game_tick_written_in_parts_is_the_same_rows_in_the_same_order(real, tmp_path, monkeypatch, name):
    """A day's ticks are sorted and written a part at a time (their payloads do not fit a sort in memory):
    parts that end mid-session and span two sessions give exactly the rows of one part, whether the
    frames are an Arrow table or the landed files (each part then reads only its ticks' files)."""
    run = run_pipeline(_two_sessions(real, tmp_path, name), tmp_path / "data", tz_of("raw" if name == "real" else name))
    ws = pa.concat_tables(run.ws(day) for day in run.days)
    files = Frames(tuple(f for day in run.days for f in run.store.partition_files("ws_event", day)))
    whole = rebuild_games(ws)["game_tick"]
    monkeypatch.setattr(games, "TICK_PART_ROWS", 97)
    assert whole.num_rows > 10 * 97 and len(set(whole["session_id"].to_pylist())) == 2
    assert len(files.files) >= 2  # at least one per session: a part whose ticks span both reads both
    assert rebuild_games(ws)["game_tick"].equals(whole)
    assert rebuild_games(files)["game_tick"].equals(whole)


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_a_forged_seed_fails_verification(real, tmp_path, name):
    original = real(name)
    lines = [line for line in original.files[0].read_text().splitlines() if line.strip()]
    at = next(i for i, line in enumerate(lines) if '"gameHistory"' in line)
    obj = json.loads(lines[at])
    forged = obj["data"]["gameHistory"][0]
    forged["provablyFair"]["serverSeed"] = "0" * 64
    lines[at] = json.dumps(obj)
    run = run_pipeline([write_jsonl(tmp_path / "forged.jsonl", lines)], tmp_path / "data", tz_of(name))
    row = next(r for r in run.rows("complete_game") if r["game_id"] == forged["id"])
    assert row["seed_verified"] is False
    verdict = consistency.seeds_verified(run.derived[run.days[0]]["complete_game"])
    assert not verdict.passed and forged["id"] in verdict.problems[0]


@pytest.mark.parametrize("name", RECORDINGS)
def test_games_summarise_each_game(real, name):
    run = real(name)
    games = recorded_games(run.events)
    summaries = {r["game_id"]: r for r in run.rows("games")}
    assert len(summaries) == len(run.rows("games"))
    trades = {}
    for e in received(run.events, "standard/newTrade"):
        trades.setdefault(e["payload"].get("id"), e["payload"])
    trades.pop(None, None)
    sidebets = defaultdict(set)
    for g in games.values():
        for record in (g.history or {}).get("globalSidebets", []):
            won = record["type"] == "payout" and record["payout"] > 0
            sidebets[g.game_id, "placed" if record["type"] == "placed" else "won" if won else "lost"].add(record["id"])
    for e in received(run.events, "newSideBet"):  # seen live (the golden day), before or without its game's history
        if e["payload"].get("type", "placed") == "placed":
            sidebets[e["payload"]["gameId"], "placed"].add(e["payload"]["id"])
    expected_ids = {gid for gid, g in games.items() if g.expected_ticks() or g.history}
    assert set(summaries) == expected_ids
    for gid in expected_ids:
        g, row, ticks = games[gid], summaries[gid], games[gid].expected_ticks()
        mine = [t for t in trades.values() if t["gameId"] == gid]
        r = g.rug_tick
        assert (row["tick"], row["tick_count"]) == ((r, r + 1) if r is not None else (None, None)), gid
        assert row["trade_count"] == len(mine) and row["trader_count"] == len({t["playerId"] for t in mine})
        assert row["volume"] == pytest.approx(sum(t.get("amount") or 0 for t in mine))
        assert row["sidebets_placed"] == len(sidebets[gid, "placed"])
        assert row["sidebets_won"] == len(sidebets[gid, "won"])
        observed = sum(t["tick_source"] == "observed" for t in ticks.values())
        assert (row["observed_ticks"], row["filled_ticks"]) == (observed, len(ticks) - observed)
        if g.history and g.history.get("prices"):
            assert row["peak_multiplier"] == g.history["peakMultiplier"] == max(g.history["prices"])
        tick0 = [c for c in g.candidates.get(0, []) if c[0] == 0]
        assert row["start_ts"] == (min(c[3]["ts"] for c in tick0) if tick0 else None)
        end = g.rug["ts"] if g.rug else (
            datetime.fromtimestamp(0, UTC) + timedelta(milliseconds=g.history["timestamp"]) if g.history else None)
        assert row["end_ts"] == end
        if row["start_ts"] and row["end_ts"]:
            assert row["duration_s"] == pytest.approx((row["end_ts"] - row["start_ts"]).total_seconds())
        complete = r is not None and set(ticks) == set(range(r + 1))
        assert (row["message"] == "complete") == complete, (gid, row["message"])
        assert row["message"].startswith("unfinished") == (r is None and g.history is None), (gid, row["message"])


@pytest.mark.parametrize("name", RECORDINGS)
def test_the_recordings_pass_every_consistency_check_and_the_schema(real, name):
    run = real(name)
    actions = pa.concat_tables([run.derived[d]["player_action"] for d in run.days])
    for day in run.days:
        tables = run.derived[day]
        for verdict in (
            consistency.trades_reference_ticks(tables["game_tick"], actions),
            consistency.sidebets_follow_the_window_rule(tables["game_tick"], actions),
            consistency.history_matches_ticks(tables["complete_game"], tables["game_tick"]),
            consistency.seeds_verified(tables["complete_game"]),
            consistency.price_conflicts(tables["game_tick"]),
        ):
            assert verdict.passed, verdict.problems
        for doc_type in doctypes.GAME_DERIVED:
            assert validate_table(doc_type, tables[doc_type]) == [], doc_type


def _with(table: pa.Table, name: str, change) -> pa.Table:
    values = [change(r) for r in table.to_pylist()]
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(name), pa.array(values, table.schema.field(name).type))


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_checks_catch_derivations_that_disagree(real, name):
    run = real(name)
    day = run.days[0]
    ticks, history, actions = (run.derived[day][d] for d in ("game_tick", "complete_game", "player_action"))
    rug = {r["game_id"]: r["tick"] for r in ticks.to_pylist() if r["is_rug_tick"]}
    trade = next(r for r in actions.to_pylist() if r["event_name"] == "standard/newTrade")
    late = _with(actions, "tick", lambda r: rug[r["game_id"]] + 7 if r["trade_id"] == trade["trade_id"] else r["tick"])
    verdict = consistency.trades_reference_ticks(ticks, late)
    assert not verdict.passed and "is not a tick of the game" in verdict.problems[0]
    dearer = _with(actions, "price", lambda r: r["price"] * 2 if r["trade_id"] == trade["trade_id"] else r["price"])
    assert "but the tick's is" in consistency.trades_reference_ticks(ticks, dearer).problems[0]
    # a losing sidebet paid out, and a winning one paid 4x
    payouts = [r for r in actions.to_pylist() if r["action_type"] == "sidebet_payout" and r["game_id"] in rug]
    lost = next(r for r in payouts if r["payout"] == 0)["trade_id"]
    won = next(r for r in payouts if r["payout"] > 0)["trade_id"]
    wrong = _with(actions, "payout", lambda r: r["amount"] * 5 if r["trade_id"] == lost and r["payout"] is not None
                  else r["amount"] * 4 if r["trade_id"] == won and r["payout"] is not None else r["payout"])
    verdict = consistency.sidebets_follow_the_window_rule(ticks, wrong)
    assert not verdict.passed and len(verdict.problems) == 2
    game = history.to_pylist()[0]["game_id"]
    higher = _with(history, "peak_multiplier", lambda r: r["peak_multiplier"] * 1.01 if r["game_id"] == game else r["peak_multiplier"])
    assert "peakMultiplier" in consistency.history_matches_ticks(higher, ticks).problems[0]
    shorter = _with(history, "tick", lambda r: r["tick"] - 1 if r["game_id"] == game else r["tick"])
    assert "gameHistory ends at tick" in consistency.history_matches_ticks(shorter, ticks).problems[0]


# --- days ------------------------------------------------------------------------------------


def _state(gid: str, tick: int, price: float, **extra) -> str:
    window = {str(t): 1.0 + t / 100 for t in range(max(0, tick - 4), tick)} | {str(tick): price}
    return encode_event("gameStateUpdate", {
        "gameId": gid, "active": True, "rugged": False, "tickCount": tick, "price": price, "cooldownTimer": 0,
        "partialPrices": {"startTick": max(0, tick - 4), "endTick": tick, "values": window},
        "provablyFair": {"serverSeedHash": hashlib.sha256(gid.encode()).hexdigest()}, **extra})


def _history_entry(gid: str, rug: int, end: datetime) -> dict:
    prices = [1.0 + t / 100 for t in range(rug)] + [0.01]
    return {"id": gid, "timestamp": int(end.timestamp() * 1000), "prices": prices, "peakMultiplier": max(prices),
            "rugged": True, "globalSidebets": [], "provablyFair": {"serverSeed": gid, "serverSeedHash":
                                                               hashlib.sha256(gid.encode()).hexdigest()}}


def _game(gid: str, start: datetime, rug: int) -> list[tuple[datetime, str]]:
    """A game's tick frames from ``start``, 250 ms apart, rugging at ``rug``."""
    frames = [(start + timedelta(milliseconds=250 * t), _state(gid, t, 1.0 + t / 100)) for t in range(rug)]
    frames.append((start + timedelta(milliseconds=250 * rug), _state(gid, rug, 0.01, rugged=True)))
    return frames


def _write(store: Store, session: str, frames: list[tuple[datetime, str]]) -> list[str]:
    frames = sorted(frames)
    for _, run in itertools.groupby(frames, key=lambda f: f[0].date()):
        run = list(run)
        records = [spool.SpoolRecord(i + 1, int(ts.timestamp() * 1e9), spool.KIND_FRAME, text) for i, (ts, text) in enumerate(run)]
        spool.write_sealed_segment(store.spool_dir, spool.SegmentHeader(f"{session}-{run[0][0]:%H%M%S}", "public_ws"), records)
    days = sorted({ts.date().isoformat() for ts, _ in frames})
    for day in days:
        landing.land_day(store, day)
    return days


def test_each_game_belongs_to_the_day_in_its_id_whatever_saw_it(tmp_path):
    """Around midnight: a game running across it, a game seen only in the next day's gameHistory,
    both recorded by two sessions, and an old game replayed live later. Each is in exactly one day."""
    store = Store(tmp_path)
    midnight = datetime(2025, 12, 13, tzinfo=UTC)
    across = "20251212-00000000000000a1"  # created 23:59:50, rugs after midnight
    before = "20251212-00000000000000b2"  # ended 23:59:30; the recording sees it only in a history
    replayed = "20251101-00000000000000c3"  # an old game served live by a simulator replay
    late = "20251212-00000000000000d4"  # a 12-12 game first seen long after its day (wrong clock)
    genesis = encode_event("gameStateUpdate", {"gameId": "20251213-00000000000000e5", "cooldownTimer": 15000,
                                               "gameHistory": [_history_entry(across, 120, midnight + timedelta(seconds=40)),
                                                               _history_entry(before, 30, midnight - timedelta(seconds=30))]})
    frames = [*_game(across, midnight - timedelta(seconds=10), 120),
              (midnight + timedelta(seconds=41), genesis),
              *_game(replayed, midnight + timedelta(hours=5), 20),
              *_game(late, midnight + timedelta(hours=3), 10)]
    days = _write(store, "s1", frames)
    _write(store, "s2", frames)  # a second recorder saw the same
    assert days == ["2025-12-12", "2025-12-13"]

    placed = {}
    for day in ("2025-12-11", *days, "2025-12-14"):
        for doc_type, table in rebuild_games(game_frames(store, day), day).items():
            assert validate_table(doc_type, table) == []
            for r in table.to_pylist():
                placed.setdefault((doc_type, r["game_id"], r["tick"] if doc_type == "game_tick" else None), []).append(day)
    assert all(len(d) == 1 for d in placed.values()), "one row per game (and tick) in one partition"
    days_of = {gid: {d[0] for (_, g, _), d in placed.items() if g == gid} for gid in (across, before, replayed, late)}
    assert days_of == {across: {"2025-12-12"}, before: {"2025-12-12"}, replayed: {"2025-12-13"}, late: {"2025-12-13"}}
    ticks = {(g, t) for (doc, g, t) in placed if doc == "game_tick"}
    assert {t for g, t in ticks if g == across} == set(range(121)), "the game's end after midnight is read"
    assert {t for g, t in ticks if g == before} == set(range(31)), "filled from the next day's history"
    assert NEXT_DAY_HEAD < timedelta(hours=3)  # the 'late' game is past the head, hence its last frame's day


# --- Dagster ---------------------------------------------------------------------------------

EVERYTHING = [ws_event, *derived_assets, *game_assets, *schema_checks, *game_checks]


def _import_golden(data: Path, folder: Path) -> tuple[str, Path]:
    """The golden day imported into the store at ``data``: its day and the recording imported."""
    from rugs_pipeline.capture.importer import import_recordings

    store = Store(data)
    path = unpacked_golden(folder)
    (report,) = import_recordings([path], store.spool_dir)
    (day,) = report.days
    return day, path


def test_dagster_materializes_the_games_with_their_checks(data_dir, tmp_path):
    day, path = _import_golden(data_dir, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(EVERYTHING, partition_key=day, instance=instance, resources={"store": StoreResource()})
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e.passed for e in result.get_asset_check_evaluations()}
    assert {k for k in checks if k[0] in doctypes.GAME_DERIVED} == {
        ("game_tick", "schema_valid"), ("complete_game", "schema_valid"), ("games", "schema_valid"),
        ("game_tick", "trades_reference_ticks"), ("game_tick", "sidebets_follow_the_window_rule"),
        ("game_tick", "price_conflicts"), ("complete_game", "history_matches_ticks"), ("complete_game", "seeds_verified"),
    }
    assert all(checks.values())
    store = Store(data_dir)
    ids = {doc: set(store.read_partition(doc, day)["game_id"].to_pylist()) for doc in doctypes.GAME_DERIVED}
    recorded = recorded_games(read_events(path, UTC))
    assert ids["games"] == ids["game_tick"] | ids["complete_game"] == {
        gid for gid, g in recorded.items() if g.expected_ticks() or g.history}

    # the games' summary numbers and chart in the asset's metadata, as the UI shows them
    [games_event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey("games")]
    meta = {k: v.value for k, v in games_event.materialization.metadata.items()}
    expected = duckdb.connect().execute(
        "SELECT count(*) FILTER (message = 'complete'), count(*) FILTER (message <> 'complete'), max(tick), "
        "round(max(peak_multiplier), 3), sum(trade_count), sum(sidebets_placed), sum(sidebets_won) FROM read_parquet(?)",
        [[str(f) for f in store.partition_files("games", day)]]).fetchone()
    assert (meta["games_complete"], meta["games_incomplete"], meta["rug_tick_max"], meta["peak_multiplier_max"],
            meta["trades"], meta["sidebets_placed"], meta["sidebets_won"]) == expected
    assert meta["games_complete"] >= 2 and meta["rug_tick_median"] is not None
    assert meta["rug_ticks_and_peaks"].startswith("![rug ticks and peak multipliers](data:image/png;base64,")


def test_a_failing_blocking_check_stops_the_summary(data_dir, tmp_path):
    day, _ = _import_golden(data_dir, tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    frames = [ws_event, *derived_assets, *schema_checks]
    assert dg.materialize(frames, partition_key=day, instance=instance, resources={"store": StoreResource()}).success
    store = Store(data_dir)
    actions = store.read_partition("player_action", day)
    first = next(r["trade_id"] for r in actions.to_pylist() if r["event_name"] == "standard/newTrade")
    store.replace_partition("player_action", day, _with(actions, "tick", lambda r: 10_000 if r["trade_id"] == first else r["tick"]))
    result = dg.materialize([*game_assets, *game_checks], partition_key=day, instance=instance,
                            resources={"store": StoreResource()}, raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert evaluations["trades_reference_ticks"].passed is False and first in evaluations["trades_reference_ticks"].description
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {"game_tick", "complete_game"}
    assert store.partition_files("games", day) == []


def test_automation_follows_the_next_day_and_spares_yesterday_after_the_head(data_dir):
    """A closed day derives at once, and the day before it too (its games' ids may date from then);
    yesterday, whose next day lands all day, follows it only in today's first hour."""
    from rugs_pipeline.definitions import defs

    store = Store(data_dir)
    game_keys = set(doctypes.GAME_DERIVED)
    land = defs.resolve_job_def("land_ws_event")
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    midnight = datetime.combine(today, datetime.min.time(), UTC)

    def requested(result) -> set[tuple[str, str]]:
        return {(r.key.to_user_string(), ap.partition_key) for r in result.results if r.key.to_user_string() in game_keys
                for ap in r.true_subset.expensively_compute_asset_partitions()}

    def after_landing(days: list[datetime], at: datetime, minutes: int) -> set[tuple[str, str]]:
        """What automation requests ``minutes`` after ``at``, the given days having landed in between."""
        instance = dg.DagsterInstance.ephemeral()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=at)
            for start in days:
                _write(store, f"s{start:%Y%m%d}", _game(f"{start:%Y%m%d}-{0:016x}", start, 3))
                assert land.execute_in_process(partition_key=start.date().isoformat(), instance=instance).success
            return requested(dg.evaluate_automation_conditions(
                defs=defs, instance=instance, cursor=first.cursor, evaluation_time=at + timedelta(minutes=minutes)))

    old = datetime(2025, 12, 7, 12, tzinfo=UTC)
    assert after_landing([old], midnight + timedelta(hours=3, seconds=10), 1) == {
        (k, d) for k in game_keys for d in ("2025-12-06", "2025-12-07")}
    live = [midnight - timedelta(hours=1), midnight + timedelta(seconds=30)]
    before = {(k, (yesterday - timedelta(days=1)).isoformat()) for k in game_keys}  # closed: at once
    # at 03:00: today's games wait for the cron tick, yesterday's do not follow today's landing
    assert after_landing(live, midnight + timedelta(hours=3, seconds=10), 6) == before | {
        (k, today.isoformat()) for k in game_keys}
    # at 00:00 they do, every 5 minutes of the first hour
    assert after_landing(live, midnight + timedelta(seconds=40), 6) == before | {
        (k, d.isoformat()) for k in game_keys for d in (yesterday, today)}
