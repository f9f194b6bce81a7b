"""Derivations (game_tick, player_action, server_state, system_event; games in test_games.py) over recordings.

The recordings: the golden day committed beside the tests (``golden/``, made by the feed simulator:
``scripts/golden_day.py``), which runs in any clone, and the real recordings where ``../shared`` holds
them. A test that names one real recording is about that recording's quirk and skips without it.

Every test goes the real way: ``import_recordings`` -> ``landing.land_day`` for each day ->
``store.read_partition("ws_event", day)`` -> ``derive``. Expected values are computed
here from the fixture files with the standard ``json`` module, never pasted from the
code's output (``read_events`` in rugs_pipeline/testing.py), so the tests follow the fixtures if they change.
"""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rugs_pipeline.tools.bench import golden
from rugs_pipeline.tools.bench.derivation import _NORMAL
from rugs_pipeline.formats import spool
from rugs_pipeline.derive.datasets import DERIVATIONS, derive, derive_all
from rugs_pipeline.derive.games import rebuild_games, summarize_games
from rugs_pipeline.store import doctypes, landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.store.validation import validate_table
from rugs_pipeline.testing import (
    EPOCH, FIXTURES, GOLDEN, RECORDINGS, UTC, Run, crash_tick, received, run_pipeline, tz_of, write_jsonl,
)

FRAME_TYPES = doctypes.FRAME_DERIVED  # a row belongs to its frame's day
GAME_TYPES = doctypes.GAME_DERIVED  # a row belongs to its game's day
DOC_TYPES = FRAME_TYPES + GAME_TYPES

# Columns that depend on the file's bytes and line order (session id, record seq), not on the feed.
_POSITIONAL = ("session_id", "seq")


def num(value):
    return None if value is None else float(value)


def coalesce(*values):
    return next((v for v in values if v is not None), None)


@dataclass
class Game:
    game_id: str
    frames: list[dict]  # tick frames (active or rugged), in receive order
    rug: dict | None  # the first rugged frame
    rug_tick: int | None
    ticks: dict[int, dict]  # tick -> the frame whose price the tick must carry


def expected_games(events: list[dict]) -> dict[str, Game]:
    frames = defaultdict(list)
    for e in received(events, "gameStateUpdate"):
        p = e["payload"]
        is_tick_frame = p.get("active") is True or p.get("rugged") is True
        if isinstance(p.get("gameId"), str) and isinstance(p.get("tickCount"), int) and is_tick_frame:
            frames[p["gameId"]].append(e)
    games = {}
    for gid, fs in frames.items():
        rug = next((e for e in fs if e["payload"]["rugged"] is True), None)
        r = crash_tick(rug["payload"]) if rug else None
        ticks: dict[int, dict] = {}
        for e in fs:
            t = e["payload"]["tickCount"]
            if e["payload"]["rugged"] is not True and (r is None or t <= r):
                ticks.setdefault(t, e)  # first received wins
        if rug:
            ticks[r] = rug  # tick R carries the crash price
        games[gid] = Game(gid, fs, rug, r, ticks)
    return games


def content(rows: list[dict], key=("game_id", "tick")) -> list[dict]:
    """Rows without the positional columns, sorted: comparable across two imports."""
    stripped = [{k: v for k, v in r.items() if k not in _POSITIONAL} for r in rows]
    return sorted(stripped, key=lambda r: tuple("" if r[k] is None else r[k] for k in key))


# --- game_tick -------------------------------------------------------------------------------


def check_game_ticks(run: Run) -> dict[str, Game]:
    """The ticks seen live (tick_source observed); test_games.py checks the filled ones."""
    games = expected_games(run.events)
    rows = run.rows("game_tick")
    assert len({(r["game_id"], r["tick"]) for r in rows}) == len(rows), "one row per (game_id, tick)"
    by_game = defaultdict(list)
    for r in rows:
        if r["tick_source"] == "observed":
            by_game[r["game_id"]].append(r)
    assert set(by_game) == set(games), "one set of observed ticks per game that had tick frames"
    for gid, game in games.items():
        got = {r["tick"]: r for r in by_game[gid]}
        assert sorted(got) == sorted(game.ticks), f"{gid}: ticks"
        for tick, frame in game.ticks.items():
            row, p = got[tick], frame["payload"]
            assert row["price"] == p["price"], f"{gid} tick {tick}: price not bit-exact"
            assert row["ts"] == frame["ts"], f"{gid} tick {tick}: not the first received frame"
            assert json.loads(row["raw_json"]) == p
            assert row["direction"] == "received" and row["event_name"] == "gameStateUpdate"
            assert row["doc_type"] == "game_tick" and row["source"] == "replay"
        every = [r for r in rows if r["game_id"] == gid]
        rug_rows = [r for r in every if r["is_rug_tick"]]
        if game.rug is None:
            assert not rug_rows and {r["phase"] for r in every} == {"active"}
            continue
        r_tick, rp = game.rug_tick, game.rug["payload"]
        assert [(r["tick"], r["price"], r["phase"]) for r in rug_rows] == [(r_tick, rp["price"], "rugged")]
        assert max(r["tick"] for r in every) == r_tick, "nothing after the rug tick"
        assert all(r["phase"] == "active" for r in every if r["tick"] != r_tick)
        # the crash price is the price of tick R in the frame's own price window
        if "partialPrices" in rp:
            assert rp["partialPrices"]["values"][str(r_tick)] == rp["price"]
        # post-rug broadcasts (tick > R) never become ticks
        post = [e for e in game.frames if e["payload"]["tickCount"] > r_tick]
        assert all(e["payload"]["rugged"] is True for e in post)
    return games


@pytest.mark.parametrize("name", RECORDINGS)
def test_game_tick_per_recording(real, name):
    run = real(name)
    games = check_game_ticks(run)
    assert games, "every fixture holds at least one tick frame"
    # R = tickCount of the first rugged frame whenever that frame is the rug frame itself;
    # only a post-rug broadcast (gameHistory, tickCount past its price window) differs.
    for game in games.values():
        if game.rug is not None:
            p = game.rug["payload"]
            if "gameHistory" in p and p["partialPrices"]["endTick"] < p["tickCount"]:
                assert name == "example_seq" and game.rug_tick < p["tickCount"] <= game.rug_tick + 3
            else:
                assert game.rug_tick == p["tickCount"]


def test_game_tick_facts_stated_by_the_fixture_readme(real):
    """The README's headline facts, recomputed from the files."""
    sandbox = expected_games(real("sandbox").events)
    assert [g.rug_tick for g in sandbox.values() if g.rug] == [266]
    assert [g.rug_tick for g in expected_games(real("raw").events).values() if g.rug] == [229, 16]
    assert [g.rug_tick for g in expected_games(real("keysamples").events).values() if g.rug] == [255]
    # the sandbox's on-connect snapshot of tick 128 arrives after tick 129: tick 128 still has its own price
    frames = [e for e in received(real("sandbox").events, "gameStateUpdate") if "tickCount" in e["payload"]]
    assert [e["payload"]["tickCount"] for e in frames[:2]] == [129, 128]
    game = frames[0]["payload"]["gameId"]
    rows = {r["tick"]: r for r in real("sandbox").rows("game_tick") if r["game_id"] == game}
    assert rows[128]["price"] == frames[1]["payload"]["price"] and rows[128]["ts"] == frames[1]["ts"]
    assert rows[129]["price"] == frames[0]["payload"]["price"]


@pytest.mark.parametrize("name", ["golden", "raw", "cdp", "keysamples", "sandbox"])
def test_presale_frames_are_not_ticks(real, name):
    run = real(name)
    presale = [e for e in received(run.events, "gameStateUpdate")
               if (p := e["payload"]).get("tickCount") == 0 and p.get("active") is False and not p.get("rugged")]
    assert presale, "the fixture holds presale frames with tickCount 0"
    rows = {(r["game_id"], r["tick"]): r for r in run.rows("game_tick")}
    for e in presale:
        row = rows.get((e["payload"]["gameId"], 0))
        if row is not None and row["tick_source"] == "observed":  # from its active frame, not the presale one
            assert json.loads(row["raw_json"])["active"] is True and row["ts"] > e["ts"]
        elif row is not None:  # its active frame was missed (the golden day's outage): filled, not the presale frame's
            assert row["raw_json"] is None and row["ts"] != e["ts"]
        else:
            assert not any(g == e["payload"]["gameId"] for g, _ in rows)


def test_lone_post_rug_frame_gives_the_rug_tick_it_reports(real):
    """example_seq_198 is a post-rug broadcast (tickCount 160) whose price window ends at 159.

    The crash price belongs to tick 159, so the game's only observed row is tick 159 (its window fills
    155..158); there was never a tick 160.
    """
    run = real("example_seq")
    (frame,) = received(run.events, "gameStateUpdate")
    p = frame["payload"]
    assert p["rugged"] is True and "gameHistory" in p
    assert p["gameId"] not in {g["id"] for g in p["gameHistory"]}  # the transition frame, before genesis
    end = p["partialPrices"]["endTick"]
    assert end < p["tickCount"] and p["partialPrices"]["values"][str(end)] == p["price"]
    (row,) = [r for r in run.rows("game_tick") if r["tick_source"] == "observed"]
    assert (row["game_id"], row["tick"], row["price"], row["is_rug_tick"]) == (p["gameId"], end, p["price"], True)
    assert max(r["tick"] for r in run.rows("game_tick") if r["game_id"] == p["gameId"]) == end


# --- duplicates ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_duplicated_and_shuffled_copy_derives_the_same(real, tmp_path, name):
    """Exact duplicates of every frame, slightly out of order: same ticks, one row per trade id."""
    original = real(name)
    lines = [line for line in original.files[0].read_text().splitlines() if line.strip()]
    doubled = [line for line in lines for _ in range(2)]
    rng = random.Random(7)
    for i in range(0, len(doubled) - 3, 5):  # swap neighbours within small windows
        j = i + rng.randint(1, 3)
        doubled[i], doubled[j] = doubled[j], doubled[i]
    copy = write_jsonl(tmp_path / f"{name}_dup.jsonl", doubled)
    run = run_pipeline([copy], tmp_path / "data", tz_of(name))

    assert len(run.events) == 2 * len(original.events)
    assert content(run.rows("game_tick")) == content(original.rows("game_tick"))
    key = ("event_name", "action_type", "trade_id", "ts")
    trades = [r for r in run.rows("player_action") if r["event_name"] == "standard/newTrade"]
    ids = {e["payload"]["id"] for e in received(original.events, "standard/newTrade") if "id" in e["payload"]}
    assert ids and sorted(r["trade_id"] for r in trades) == sorted(ids)
    assert content(run.rows("player_action"), key) == content(original.rows("player_action"), key)


# --- player_action ---------------------------------------------------------------------------


def check_trades(run: Run) -> list[dict]:
    first: dict[str, dict] = {}
    for e in received(run.events, "standard/newTrade"):
        if e["payload"].get("id") is not None:
            first.setdefault(e["payload"]["id"], e)
    rows = [r for r in run.rows("player_action") if r["event_name"] == "standard/newTrade"]
    assert len(rows) == len({r["trade_id"] for r in rows}), "one row per trade id"
    assert {r["trade_id"] for r in rows} == set(first)
    for row in rows:
        e = first[row["trade_id"]]
        p = e["payload"]
        assert row["ts"] == e["ts"] and json.loads(row["raw_json"]) == p
        assert row["action_type"] == p["type"]
        assert row["game_id"] == p.get("gameId") and row["player_id"] == p.get("playerId")
        assert row["username"] == p.get("username") and row["coin"] == p.get("coin")
        assert row["price"] == num(p.get("price")) and row["tick"] == p.get("tickIndex")
        assert row["amount"] == num(p.get("amount")) and row["qty"] == num(p.get("qty"))
        assert row["leverage"] == num(p.get("leverage"))
        assert row["trade_id"] is not None and row["end_tick"] is None and row["payout"] is None
    return rows


@pytest.mark.parametrize("name", ["golden", "sandbox", "raw", "keysamples"])
def test_trades_one_row_per_trade_id(real, name):
    assert check_trades(real(name))


def test_keysamples_trade_kinds(real):
    rows = {r["action_type"]: r for r in check_trades(real("keysamples"))}
    payloads = {e["payload"]["type"]: e["payload"] for e in received(real("keysamples").events, "standard/newTrade")}
    assert set(rows) == set(payloads) == {"buy", "sell", "short_open", "short_close"}
    assert rows["buy"]["leverage"] == payloads["buy"]["leverage"] == 4
    assert rows["short_open"]["qty"] == payloads["short_open"]["qty"] == 0
    assert rows["short_close"]["qty"] == payloads["short_close"]["qty"] == 0
    assert rows["sell"]["leverage"] == num(payloads["sell"].get("leverage"))


def test_cdp_lossy_trades_yield_no_trade_rows(real):
    """cdp's recorder kept the trace header instead of the payload: there is no trade to derive."""
    run = real("cdp")
    frames = [e for e in run.events if e["name"] == "standard/newTrade"]
    assert frames and all(e["payload"].get("__trace") is True and "id" not in e["payload"] for e in frames)
    assert not [r for r in run.rows("player_action") if r["event_name"] == "standard/newTrade"]


@pytest.mark.parametrize("name", RECORDINGS)
def test_history_sidebets_deduplicated_by_id_and_type(real, name):
    run = real(name)
    first: dict[tuple[str, str, str], tuple] = {}  # (day, id, action_type) -> first sighting
    for e in sorted(received(run.events, "gameStateUpdate") + received(run.events, "newSideBet"), key=lambda e: e["ts"]):
        day = e["ts"].strftime("%Y-%m-%d")
        if e["name"] == "newSideBet":  # seen live first: the live row stands for it
            sb = e["payload"]
            first.setdefault((day, sb.get("id"), "sidebet_" + (sb.get("type") or "placed")), (e, None, sb))
        for game in e["payload"].get("gameHistory") or []:
            for sb in game.get("globalSidebets") or []:
                if sb.get("id") is not None:
                    first.setdefault((day, sb["id"], "sidebet_" + (sb.get("type") or "placed")), (e, game, sb))
    first = {key: seen for key, seen in first.items() if seen[1] is not None}
    rows = [r for r in run.rows("player_action") if r["event_name"] == "gameHistory.globalSidebets"]
    got = [(r["ts"].strftime("%Y-%m-%d"), r["trade_id"], r["action_type"]) for r in rows]
    assert len(got) == len(set(got)) == len(first)
    assert set(got) == set(first)
    assert first, "every fixture's gameHistory holds sidebets"
    assert {k[2] for k in first} == {"sidebet_placed", "sidebet_payout"}
    for row, key in zip(rows, got):
        e, game, sb = first[key]
        assert row["ts"] == e["ts"] and json.loads(row["raw_json"]) == sb
        assert row["game_id"] == coalesce(sb.get("gameId"), game["id"]) and row["player_id"] == sb.get("playerId")
        assert row["tick"] == coalesce(sb.get("startedAtTick"), sb.get("startTick"))
        assert row["end_tick"] == coalesce(sb.get("end"), sb.get("endTick"))
        assert row["amount"] == num(sb.get("betAmount")) and row["payout"] == num(sb.get("payout"))


def test_sent_orders_from_cdp(real, real_dir, tmp_path):
    """Only what the client sent that looks like an order becomes an action; queries do not."""
    run = real("cdp")
    sent = {e["name"] for e in run.events if e["direction"] == "sent"}
    assert {"authenticate", "getLeaderboard"} <= sent
    assert not [r for r in run.rows("player_action") if r["direction"] == "sent"]

    # The recording holds no order: add some, in the cdp envelope, after its last line.
    lines = [line for line in (real_dir / FIXTURES["cdp"][0]).read_text().splitlines() if line.strip()]
    last = json.loads(lines[-1])
    base = datetime.fromisoformat(last["ts"])
    header = {"__trace": True, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    extra = [
        ("buyOrder", {"amount": 0.001, "coin": "solana"}),
        ("sellOrder", [header, {"percentage": 100, "amount": 0.002}]),
        ("requestSidebet", {"betAmount": 0.003, "xPayout": 5}),
        ("getLeaderboard", {"period": "24h"}),
        ("authenticate", header),
    ]
    for i, (name, data) in enumerate(extra, 1):
        lines.append(json.dumps({"seq": last["seq"] + i, "ts": (base + timedelta(seconds=i)).isoformat(), "event": name,
                                 "data": data, "source": "cdp_intercept", "direction": "sent"}))
    copy = run_pipeline([write_jsonl(tmp_path / "cdp_orders.jsonl", lines)], tmp_path / "data", UTC)
    orders = [r for r in copy.rows("player_action") if r["direction"] == "sent"]
    assert [r["action_type"] for r in orders] == ["buyOrder", "sellOrder", "requestSidebet"]
    assert [r["event_name"] for r in orders] == ["buyOrder", "sellOrder", "requestSidebet"]
    assert [r["amount"] for r in orders] == [0.001, 0.002, 0.003]  # the payload, not the trace header
    assert all(r["trade_id"] is None for r in orders)
    assert [r["ts"] for r in orders] == [base + timedelta(seconds=i) for i in (1, 2, 3)]


# --- server_state ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["golden", "cdp", "example_seq", "raw", "sandbox", "keysamples"])
def test_server_state_player_snapshots(real, name):
    run = real(name)
    rows = run.rows("server_state")
    expected = [
        (e["ts"], p["id"], "playerUpdate", None, num(p.get("cash")), num(p.get("positionQty")), num(p.get("avgCost")),
         num(p.get("cumulativePnL")))
        for e in received(run.events, "playerUpdate") if (p := e["payload"]).get("id") is not None
    ] + [
        (e["ts"], b["id"], "gameStatePlayerUpdate", e["payload"].get("gameId"), None, num(b.get("positionQty")),
         num(b.get("avgCost")), num(b.get("pnl")))
        for e in received(run.events, "gameStatePlayerUpdate")
        if isinstance(b := e["payload"].get("leaderboardEntry"), dict) and b.get("id") is not None
    ]
    got = [(r["ts"], r["player_id"], r["event_name"], r["game_id"], r["cash"], r["position_qty"], r["avg_cost"], r["pnl"])
           for r in rows if r["event_name"] in ("playerUpdate", "gameStatePlayerUpdate")]
    assert sorted(got, key=str) == sorted(expected, key=str)
    if name == "cdp":  # logged in: one row per playerUpdate, with the player's cash and position
        updates = [x for x in got if x[2] == "playerUpdate"]
        assert updates and len(updates) == len(received(run.events, "playerUpdate"))
    if name == "example_seq":
        assert {x[2] for x in got} == {"playerUpdate", "gameStatePlayerUpdate"}


@pytest.mark.parametrize("name", RECORDINGS)
def test_final_leaderboard_from_last_rugged_frame(real, name):
    run = real(name)
    last: dict[str, dict] = {}
    for e in received(run.events, "gameStateUpdate"):
        if e["payload"].get("rugged") is True and e["payload"].get("leaderboard") is not None:
            last[e["payload"]["gameId"]] = e
    assert last, "every fixture holds a rugged frame with a leaderboard"
    rows = [r for r in run.rows("server_state") if r["event_name"] == "final_leaderboard"]
    expected = (
        (gid, e["ts"], entry["id"], entry.get("username"), num(entry.get("positionQty")), num(entry.get("avgCost")),
         num(entry.get("pnl")))
        for gid, e in last.items() for entry in e["payload"]["leaderboard"] if entry.get("id") is not None
    )
    got = sorted((r["game_id"], r["ts"], r["player_id"], r["username"], r["position_qty"], r["avg_cost"], r["pnl"])
                 for r in rows)
    assert sorted(got, key=str) == sorted(expected, key=str)
    for gid, e in last.items():  # one row per player of each rugged game
        ids = [r["player_id"] for r in rows if r["game_id"] == gid]
        assert len(ids) == len(set(ids)) == len(e["payload"]["leaderboard"])


# --- system_event ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_import_errors_become_system_events(real, tmp_path, name):
    original = real(name)
    lines = [line for line in original.files[0].read_text().splitlines() if line.strip()]
    bad = {
        1: '{"seq": 0, "ts": "2025-12-12T17:16:58.000000", "event": "gameStat',  # torn, before any good line
        40: "[1, 2, 3]",  # JSON, not an object
        120: '{"seq": 7, "ts": "2025-12-12T17:17:30.000000"}',  # missing event and data
        300: lines[250][: len(lines[250]) // 2],  # half a real line
    }
    corrupt = list(lines)
    for number in sorted(bad):
        corrupt.insert(number - 1, bad[number])
    assert [corrupt[n - 1] for n in sorted(bad)] == [bad[n] for n in sorted(bad)]
    run = run_pipeline([write_jsonl(tmp_path / "raw_corrupt.jsonl", corrupt)], tmp_path / "data", tz_of(name))

    errors = [r for r in run.rows("system_event") if r["event_name"] == "import_error"]
    assert len(errors) == len(bad)
    infos = [json.loads(r["raw_json"]) for r in errors]
    assert sorted(i["line"] for i in infos) == sorted(bad)
    for row, info in zip(errors, infos):
        assert info["file"] == "raw_corrupt.jsonl" and info["text"] == bad[info["line"]][:500]
        assert row["message"] == info["reason"] and row["message"]
        assert row["direction"] is None and row["start_ts"] is None and row["duration_s"] is None
    first_good = original.events[0]["ts"]
    assert next(r["ts"] for r, i in zip(errors, infos) if i["line"] == 1) == first_good  # takes the next good time
    # corrupt lines cost nothing else
    assert content(run.rows("game_tick")) == content(original.rows("game_tick"))
    key = ("event_name", "action_type", "trade_id", "ts")
    assert content(run.rows("player_action"), key) == content(original.rows("player_action"), key)
    for doc_type in DOC_TYPES:
        for day in run.days:
            assert validate_table(doc_type, run.derived[day][doc_type]) == []


@pytest.mark.parametrize("name", ["golden", "raw"])
def test_connect_pseudo_event_is_a_lifecycle_row(real, name):
    run = real(name)
    connects = [e for e in run.events if e["name"] == "connect" and not e["args"]]
    assert connects
    rows = [r for r in run.rows("system_event") if r["event_name"] == "connected"]
    assert [r["ts"] for r in rows] == [e["ts"] for e in connects]
    for r in rows:
        assert json.loads(r["raw_json"])["event"] == "connected" and r["direction"] is None
    # no frame row stands for the pseudo-event
    ws = run.ws(run.days[0])
    assert "connect" not in ws.column("event_name").to_pylist()


def _lifecycle(w: spool.SpoolWriter, ts_ns: int, event: str, **fields) -> None:
    w.append(spool.KIND_LIFECYCLE, orjson.dumps({"event": event, **fields}).decode(), ts_ns, None)


def test_outage_from_disconnect_to_next_handshake(tmp_path):
    store = Store(tmp_path / "data")
    t0 = 1_765_500_000 * 10**9  # 2025-12-12 00:40 UTC
    s = 10**9
    w = spool.SpoolWriter(store.spool_dir, "20251212T004000Z-abcd0001", "public_ws")
    _lifecycle(w, t0, "started", url="wss://example/socket.io/", pid=1)
    _lifecycle(w, t0 + 1 * s, "recovered", crashed_session="20251212T003000Z-abcd0000", records=10, last_seq=10,
               last_ts_ns=t0 - 42_500_000_000, torn_bytes=0)
    _lifecycle(w, t0 + 2 * s, "connecting", url="wss://example/socket.io/", attempt=1)
    _lifecycle(w, t0 + 3 * s, "handshake", sid="a", ping_interval_s=25.0, ping_timeout_s=20.0)
    frame = '42["gameStateUpdate",{"gameId":"20251212-0000000000000001","cooldownTimer":900}]'
    w.append(spool.KIND_FRAME, frame, t0 + 4 * s)
    _lifecycle(w, t0 + 10 * s, "disconnected", code=None, reason="no frame for 45.0 s")
    _lifecycle(w, t0 + 11 * s, "reconnecting", attempt=1, delay_s=1.0)
    _lifecycle(w, t0 + 12 * s, "connect_failed", error="OSError: unreachable")
    _lifecycle(w, t0 + 13_250_000_000, "handshake", sid="b", ping_interval_s=25.0, ping_timeout_s=20.0)
    _lifecycle(w, t0 + 20 * s, "disconnected", code=1000, reason="recorder stopping")
    _lifecycle(w, t0 + 21 * s, "stopped", frames_received=1)
    w.close()
    day = "2025-12-12"
    landing.land_day(store, day)
    rows = derive("system_event", store.read_partition("ws_event", day)).to_pylist()

    ts = lambda ns: EPOCH + timedelta(microseconds=ns // 1000)  # noqa: E731
    outages = [r for r in rows if r["event_name"] == "outage"]
    got = [(r["start_ts"], r["end_ts"], r["duration_s"], r["message"]) for r in outages]
    assert got == [
        (ts(t0 - 42_500_000_000), ts(t0 + 1 * s), 43.5,
         "recorder down: session 20251212T003000Z-abcd0000 stopped without sealing"),
        (ts(t0 + 10 * s), ts(t0 + 13_250_000_000), 3.25, "connection lost: no frame for 45.0 s"),
        (ts(t0 + 20 * s), None, None, "connection lost: recorder stopping"),  # still down when the data ends
    ]
    lifecycle = [r for r in rows if r["event_name"] != "outage"]
    assert [r["event_name"] for r in lifecycle] == [
        "started", "recovered", "connecting", "handshake", "disconnected", "reconnecting", "connect_failed",
        "handshake", "disconnected", "stopped",
    ]
    assert [r["message"] for r in lifecycle if r["event_name"] in ("disconnected", "connect_failed")] == [
        "no frame for 45.0 s", "OSError: unreachable", "recorder stopping",
    ]
    assert validate_table("system_event", derive("system_event", store.read_partition("ws_event", day))) == []


# --- validation and determinism --------------------------------------------------------------


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_derived_table_validates(real, name):
    run = real(name)
    for day in run.days:
        for doc_type in DOC_TYPES:
            assert validate_table(doc_type, run.derived[day][doc_type]) == [], (name, day, doc_type)


def _with_column(table: pa.Table, name: str, values: list) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, table.schema.field(name), pa.array(values, table.schema.field(name).type))


@pytest.mark.parametrize("name", ["golden", "sandbox"])
def test_broken_tables_fail_validation(real, name):
    run = real(name)
    ticks = run.derived[run.days[0]]["game_tick"]
    assert ticks.num_rows > 5
    prices = ticks.column("price").to_pylist()
    prices[3] = -prices[3]
    failures = validate_table("game_tick", _with_column(ticks, "price", prices))
    assert failures and all(f.startswith("price:") for f in failures)
    failures = validate_table("game_tick", pa.concat_tables([ticks, ticks.slice(5, 1)]))
    assert failures and any("uniqueness" in f for f in failures)
    actions = run.derived[run.days[0]]["player_action"]
    prices = actions.column("price").to_pylist()
    prices[0] = -1.0
    assert validate_table("player_action", _with_column(actions, "price", prices))


@pytest.mark.parametrize("name", ["golden", "raw", "cdp"])
def test_derivations_are_deterministic(real, name):
    run = real(name)
    ws = run.ws(run.days[0])
    again = {**derive_all(ws), **rebuild_games(ws, run.days[0])}
    assert set(DERIVATIONS) == set(FRAME_TYPES)
    for doc_type in DOC_TYPES:
        first = run.derived[run.days[0]][doc_type]
        assert first.num_rows > 0 or doc_type == "system_event"
        if doc_type in again:
            assert again[doc_type].equals(first), doc_type
        if doc_type in FRAME_TYPES:
            assert derive(doc_type, ws).equals(first), doc_type


# --- the golden day --------------------------------------------------------------------------


def test_golden_day_is_what_its_script_makes():
    """The committed recording is the simulator's feed for its seed, byte for byte: regenerating it
    (scripts/golden_day.py) changes nothing unless the simulator did."""
    assert gzip.decompress(GOLDEN.read_bytes()).decode() == "".join(f"{line}\n" for line in golden.golden_lines())


def test_golden_day_holds_what_a_days_feed_holds(real):
    """Read with plain json: games that rug, trades, sidebets, gameHistory, price windows, the
    on-connect snapshot (twice: at the start and after the outage), a logged-in player's updates."""
    events = real("golden").events
    names = [e["name"] for e in events]
    assert [n for n in names if n in ("connect", "disconnect")] == ["connect", "disconnect", "connect"]
    states = [e["payload"] for e in received(events, "gameStateUpdate")]
    snapshots = [i for i, e in enumerate(events) if e["name"] == "gameStateUpdate" and "prices" in e["payload"]]
    assert len(snapshots) == 2 and snapshots[0] == 1 and names[snapshots[1] - 1] == "connect"
    assert events[snapshots[1]]["payload"]["active"] is True  # the outage cut a game short
    assert len({p["gameId"] for p in states if p.get("rugged") is True}) >= 5
    assert any("partialPrices" in p for p in states)
    assert any(sb for p in states for g in p.get("gameHistory") or [] for sb in g.get("globalSidebets") or [])
    assert {"standard/newTrade", "newSideBet", "gameStatePlayerUpdate"} <= set(names)
    assert any(len(e["args"]) == 2 and e["args"][0].get("__trace") is True for e in events)


def same_rows(ours: pa.Table, theirs: pa.Table) -> list[int]:
    """[rows only in ours, rows only in theirs], ``raw_json`` compared as JSON (the bench's comparison)."""
    con = duckdb.connect()
    con.register("a", ours)
    con.register("b", theirs)
    return [con.execute(f"SELECT count(*) FROM (SELECT {_NORMAL} FROM {x} EXCEPT ALL SELECT {_NORMAL} FROM {y})")
            .fetchone()[0] for x, y in ("ab", "ba")]


def test_golden_day_derives_the_row_at_a_time_derivers_rows(real, tmp_path):
    """The expected rows committed beside the golden day are the row-at-a-time deriver's (bench.reference),
    still; the pipeline's derivations give the same rows, in the same order."""
    run = real("golden")
    (day,) = run.days
    again = golden.expected_rows(run.files[0], tmp_path)
    for doc_type in golden.EXPECTED:
        expected = pq.read_table(GOLDEN.parent / "expected" / f"{doc_type}.parquet")
        assert expected.num_rows > 0, doc_type
        assert again[doc_type].equals(expected), f"{doc_type}: regenerate with scripts/golden_day.py and review"
        assert same_rows(run.derived[day][doc_type], expected) == [0, 0], doc_type
        assert run.derived[day][doc_type]["seq"].to_pylist() == expected["seq"].to_pylist(), doc_type


# --- without the real recordings -------------------------------------------------------------


def test_tiny_recording_without_real_fixtures(tmp_path):
    """A hand-written recording in the {seq, ts, event, data} envelope: runs in any clone."""
    g1, g2, g3 = "20251212-00000000000000a1", "20251212-00000000000000b2", "20251212-00000000000000c3"
    t0 = datetime(2025, 12, 12, 12, 0, 0, tzinfo=UTC)
    header = {"__trace": True, "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    board = [{"id": "did:privy:p1", "username": "one", "pnl": 0.5, "positionQty": 0, "avgCost": 0},
             {"id": "did:privy:p2", "username": "two", "pnl": -0.1, "positionQty": 2.5, "avgCost": 1.2}]

    def gsu(gid, tick, price, *, active=True, rugged=False, end=None, **extra):
        p = {"gameId": gid, "tickCount": tick, "price": price, "active": active, "rugged": rugged, "cooldownTimer": 0}
        if end is not None:
            p["partialPrices"] = {"startTick": max(0, end - 4), "endTick": end, "values": {str(end): price}}
        return ("gameStateUpdate", {**p, **extra})

    trade1 = {"id": "t-1", "gameId": g1, "playerId": "did:privy:p1", "type": "buy", "price": 1.05, "tickIndex": 1,
              "amount": 0.01, "qty": 0.0095, "leverage": 2, "coin": "solana"}
    trade2 = {"id": "t-2", "gameId": g1, "playerId": "did:privy:p2", "type": "short_open", "price": 1.1,
              "tickIndex": 2, "amount": 0.02, "qty": 0, "coin": "solana"}
    events = [
        ("connect", None),
        ("gameStateUpdate", {"gameId": g1, "cooldownTimer": 5000, "allowPreRoundBuys": True}),
        gsu(g1, 0, 1, active=False, cooldownTimer=4900),  # presale: not a tick
        gsu(g1, 0, 1),
        gsu(g1, 2, 1.1000000000000003),  # arrives before tick 1
        gsu(g1, 1, 1.05),
        gsu(g1, 1, 1.06),  # a later, different frame of tick 1: the first received wins
        ("standard/newTrade", [header, trade1]),
        ("standard/newTrade", [header, trade1]),  # exact duplicate
        ("standard/newTrade", [header, trade2]),
        gsu(g1, 3, 1.2, end=3),  # a non-rugged frame of tick 3 first: tick R still carries the crash price
        gsu(g1, 3, 0.0123, rugged=True, end=3),
        gsu(g1, 5, 0.0123, rugged=True, end=3, leaderboard=board, gameHistory=[
            {"id": g3, "rugged": True, "globalSidebets": [
                {"id": "sb-1", "type": "placed", "playerId": "did:privy:p1", "startedAtTick": 10, "end": 50,
                 "betAmount": 0.001},
                {"id": "sb-1", "type": "payout", "playerId": "did:privy:p1", "startTick": 10, "endTick": 50,
                 "payout": 0.005},
            ]}]),  # post-rug broadcast
        gsu(g1, 6, 0.0123, rugged=True),  # another one, without a price window: tick 6 > R is no tick
        gsu(g2, 0, 1),
        gsu(g2, 1, 0.97),
        gsu(g2, 4, 0.004, rugged=True, end=2),  # only the post-rug broadcast of g2's rug at tick 2
        ("playerUpdate", {"id": "did:privy:p1", "cash": 1.5, "positionQty": 0, "avgCost": 0, "cumulativePnL": 0.5}),
    ]
    lines = [json.dumps({"seq": i, "ts": (t0 + timedelta(milliseconds=250 * i)).isoformat(), "event": name, "data": data})
             for i, (name, data) in enumerate(events, 1)]
    lines.insert(8, lines[8])  # an exact duplicate line (same time, same trade)
    lines.insert(3, "{not json")
    run = run_pipeline([write_jsonl(tmp_path / "tiny.jsonl", lines)], tmp_path / "data", UTC)
    assert run.days == ["2025-12-12"]

    ticks = {(r["game_id"], r["tick"]): (r["price"], r["is_rug_tick"], r["phase"]) for r in run.rows("game_tick")}
    assert ticks == {
        (g1, 0): (1.0, False, "active"), (g1, 1): (1.05, False, "active"), (g1, 2): (1.1000000000000003, False, "active"),
        (g1, 3): (0.0123, True, "rugged"),
        (g2, 0): (1.0, False, "active"), (g2, 1): (0.97, False, "active"), (g2, 2): (0.004, True, "rugged"),
    }
    check_game_ticks(run)

    actions = run.rows("player_action")
    trades = [(r["trade_id"], r["action_type"], r["price"], r["tick"], r["amount"], r["qty"], r["leverage"])
              for r in actions if r["event_name"] == "standard/newTrade"]
    assert trades == [("t-1", "buy", 1.05, 1, 0.01, 0.0095, 2.0), ("t-2", "short_open", 1.1, 2, 0.02, 0.0, None)]
    sidebets = sorted((r["trade_id"], r["action_type"], r["game_id"], r["tick"], r["end_tick"], r["amount"], r["payout"])
                      for r in actions if r["event_name"] == "gameHistory.globalSidebets")
    assert sidebets == [("sb-1", "sidebet_payout", g3, 10, 50, None, 0.005),
                        ("sb-1", "sidebet_placed", g3, 10, 50, 0.001, None)]

    state = run.rows("server_state")
    assert sorted((r["event_name"], r["game_id"], r["player_id"], r["pnl"]) for r in state) == [
        ("final_leaderboard", g1, "did:privy:p1", 0.5), ("final_leaderboard", g1, "did:privy:p2", -0.1),
        ("playerUpdate", None, "did:privy:p1", 0.5),
    ]
    assert [r["cash"] for r in state if r["event_name"] == "playerUpdate"] == [1.5]

    system = run.rows("system_event")
    assert [r["event_name"] for r in system] == ["connected", "import_error"]
    # the bad line takes the time of the good line before it
    assert json.loads(system[1]["raw_json"])["line"] == 4 and system[1]["ts"] == t0 + timedelta(milliseconds=750)

    day, ws = run.days[0], run.ws(run.days[0])
    for doc_type in DOC_TYPES:
        assert validate_table(doc_type, run.derived[day][doc_type]) == []
    # same rows in the same order every time, even where one frame yields rows sharing a trade id
    for _ in range(20):
        again = {**{dt: derive(dt, ws) for dt in FRAME_TYPES}, **rebuild_games(ws, day)}
        again["games"] = summarize_games(again["game_tick"], again["complete_game"], again["player_action"])
        assert [dt for dt in DOC_TYPES if not again[dt].equals(run.derived[day][dt])] == []
