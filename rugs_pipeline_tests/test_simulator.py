"""The feed simulator, served on 127.0.0.1 and read by a real websockets client."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import signal
import statistics
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from datetime import date

import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from rugs_pipeline.simulator.games import GameGenerator
from rugs_pipeline.formats.protocol import Frame, parse_frame
from rugs_pipeline.simulator.server import Simulator, SimulatorConfig, SimulatorError

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")
GAME_ID = re.compile(r"\d{8}-[0-9a-f]{16}")
TRACED = {"standard/newTrade", "newSideBet", "newChatMessage"}


def arun(coro, timeout: float = 20.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@asynccontextmanager
async def simulator(**options):
    sim = Simulator(SimulatorConfig(**options))
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@asynccontextmanager
async def joined(sim: Simulator):
    """A client past the handshake; yields (connection, OPEN frame)."""
    async with connect(sim.url, ping_interval=None, max_size=None) as ws:
        opened = parse_frame(await ws.recv())
        assert opened.kind == "open"
        await ws.send("40")
        accepted = parse_frame(await ws.recv())
        assert accepted.kind == "connect" and isinstance(accepted.data["sid"], str)
        yield ws, opened


async def frames(ws: ClientConnection):
    """Parsed frames, answering pings as a client must."""
    while True:
        frame = parse_frame(await ws.recv())
        if frame.kind == "ping":
            await ws.send("3")
            continue
        yield frame


def is_genesis(state: dict) -> bool:
    return "gameHistory" in state and state["cooldownTimer"] == 15000


async def game_cycle(ws: ClientConnection) -> tuple[Frame, list[Frame]]:
    """(the snapshot, every frame from the next genesis frame up to and including the one after)."""
    snapshot, collected, geneses = None, [], 0
    async for frame in frames(ws):
        if snapshot is None:
            snapshot = frame
            continue
        genesis = frame.event_name == "gameStateUpdate" and is_genesis(frame.payload)
        geneses += genesis
        if geneses:
            collected.append(frame)
        if genesis and geneses == 2:
            return snapshot, collected


# --- handshake and heartbeat --------------------------------------------------------


def test_handshake_snapshot_acks_and_bad_paths():
    async def scenario():
        async with simulator(ping_interval_ms=1234, ping_timeout_ms=567) as sim:
            async with joined(sim) as (ws, opened):
                assert opened.data["pingInterval"] == 1234 and opened.data["pingTimeout"] == 567
                assert opened.data["upgrades"] == [] and opened.data["sid"]
                snapshot = parse_frame(await ws.recv())
                state = snapshot.payload
                assert snapshot.event_name == "gameStateUpdate" and len(state) == 36
                assert "prices" in state and "gameHistory" in state and "partialPrices" not in state
                assert state["prices"][0] == 1 and len(state["prices"]) == state["tickCount"] + 1
                # A logged-in client's events are accepted; one with an ack id is acked.
                await ws.send('42["authenticate",{"__trace":true,"traceparent":"00-' + "a" * 32 + "-" + "b" * 16
                              + '-01"},{"token":"x"}]')
                await ws.send('4217["getLeaderboard",{"period":"7d"}]')
                async for frame in frames(ws):
                    if frame.kind == "ack":
                        assert frame.ack_id == 17 and frame.args == ()
                        break
            for path in ("/", "/socket.io/x/?EIO=4&transport=websocket"):
                with pytest.raises(InvalidStatus) as bad:
                    async with connect(f"ws://127.0.0.1:{sim.port}{path}"):
                        pass
                assert bad.value.response.status_code == 404
            with pytest.raises(InvalidStatus) as bad:
                async with connect(f"ws://127.0.0.1:{sim.port}/socket.io/?EIO=3&transport=websocket"):
                    pass
            assert bad.value.response.status_code == 400

    arun(scenario())


def test_answered_pings_keep_the_connection_and_silence_closes_it():
    async def answering():
        async with simulator(ping_interval_ms=100, ping_timeout_ms=100) as sim, joined(sim) as (ws, _):
            pings, deadline = 0, time.monotonic() + 1.0
            while time.monotonic() < deadline:
                try:
                    message = await asyncio.wait_for(ws.recv(), deadline - time.monotonic())
                except TimeoutError:
                    break
                if message == "2":
                    pings += 1
                    await ws.send("3")
            assert pings >= 5
            await ws.send("3")  # still open: a closed connection raises here
            return pings

    async def silent():
        async with simulator(ping_interval_ms=100, ping_timeout_ms=100) as sim, joined(sim) as (ws, _):
            started = time.monotonic()
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await ws.recv()
            assert closed.value.rcvd.code == 1011 and closed.value.rcvd.reason == "ping timeout"
            assert time.monotonic() - started < 1.0

    arun(answering())
    arun(silent())


def test_port_in_use_is_a_one_line_error():
    async def scenario():
        async with simulator() as first:
            with pytest.raises(SimulatorError, match=f"port {first.port} on 127.0.0.1 is in use"):
                await Simulator(SimulatorConfig(port=first.port)).start()

    arun(scenario())


def start_process(*config: str) -> tuple[subprocess.Popen, str]:
    code = f"from pathlib import Path; from rugs_pipeline.simulator.server import *; run(SimulatorConfig({', '.join(config)}))"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.fullmatch(r"simulator listening on (ws://127\.0\.0\.1:\d+/socket\.io/\?EIO=4&transport=websocket)\n", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, match.group(1)


def test_run_prints_its_address_and_stops_cleanly_on_a_signal():
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc, url = start_process("speed=50")

        async def handshake():
            async with connect(url) as ws:
                assert parse_frame(await ws.recv()).kind == "open"

        arun(handshake())
        proc.send_signal(sig)
        assert proc.wait(timeout=10) == 0
        assert proc.stderr.read() == ""


# --- the game cycle -----------------------------------------------------------------


def check_trade(frame: Frame, game_id: str) -> dict:
    assert frame.trace is not None and TRACEPARENT.fullmatch(frame.trace["traceparent"])
    assert len(frame.args) == 2 and frame.args[0] is frame.trace
    trade = frame.payload
    assert trade["gameId"] == game_id and trade["playerId"].startswith("did:privy:")
    assert trade["type"] in {"buy", "sell", "short_open", "short_close"}
    assert ("leverage" in trade) == (trade["type"] == "buy")
    if trade["type"].startswith("short"):
        assert trade["qty"] == 0
    return trade


def test_one_full_game_cycle_at_200x():
    async def scenario():
        async with simulator(seed=7, speed=200) as sim, joined(sim) as (ws, _):
            return await game_cycle(ws)

    snapshot, cycle = arun(scenario())
    assert "prices" in snapshot.payload
    states = [f.payload for f in cycle if f.event_name == "gameStateUpdate"]
    genesis, final = states[0], states[-1]
    game_id = genesis["gameId"]
    assert GAME_ID.fullmatch(game_id) and len(genesis) == 36 and len(genesis["gameHistory"]) == 10
    assert (genesis["active"], genesis["rugged"], genesis["tickCount"]) == (False, False, 0)
    announced = genesis["provablyFair"]["serverSeedHash"]

    cooldown = [s for s in states if len(s) == 7]
    assert [s["cooldownTimer"] for s in cooldown] == list(range(14900, 0, -100))
    assert all(s["allowPreRoundBuys"] == (s["cooldownTimer"] <= 10000) for s in cooldown)
    assert all(s["gameId"] == game_id and s["provablyFair"]["serverSeedHash"] == announced for s in cooldown)

    tick0 = states[len(cooldown) + 1]
    assert len(tick0) == 14 and (tick0["active"], tick0["price"], tick0["tickCount"], tick0["cooldownTimer"]) == (
        True, 1, 0, 0)
    ticks = [s for s in states if len(s) == 21]
    rug_tick = len(ticks)
    assert [s["tickCount"] for s in ticks] == list(range(1, rug_tick + 1))
    for state in ticks:
        partial = state["partialPrices"]
        assert partial["endTick"] == state["tickCount"] and len(partial["values"]) <= 5
        assert list(partial["values"]) == [str(t) for t in range(partial["startTick"], partial["endTick"] + 1)]
        assert partial["values"][str(state["tickCount"])] == state["price"]
    assert [s["rugged"] for s in ticks] == [False] * (rug_tick - 1) + [True]
    rug = ticks[-1]
    before_rug = ticks[-2]["price"] if rug_tick > 1 else 1
    assert 0 < rug["price"] < 0.05 * before_rug

    post_rug = states[-2]
    assert len(post_rug) == 36 and post_rug["gameId"] == game_id and post_rug["rugged"] is True
    assert rug_tick + 1 <= post_rug["tickCount"] <= rug_tick + 3
    assert game_id not in {g["id"] for g in post_rug["gameHistory"]}
    assert states == [genesis, *cooldown, tick0, *ticks, post_rug, final]

    assert final["gameId"] != game_id and final["cooldownTimer"] == 15000 and len(final) == 36
    revealed = final["gameHistory"][0]
    assert revealed["id"] == game_id
    assert hashlib.sha256(revealed["provablyFair"]["serverSeed"].encode()).hexdigest() == announced
    assert revealed["provablyFair"]["serverSeedHash"] == announced
    assert len(revealed["prices"]) == rug_tick + 1 and revealed["prices"][-1] == rug["price"]
    assert revealed["peakMultiplier"] == max(revealed["prices"])
    assert [g["id"] for g in final["gameHistory"][1:]] == [g["id"] for g in post_rug["gameHistory"][:9]]

    events = [f for f in cycle if f.event_name != "gameStateUpdate"]
    trades = [check_trade(f, game_id) for f in events if f.event_name == "standard/newTrade"]
    assert trades, "seed 7's game should have trades"
    for frame in events:
        if frame.event_name in TRACED:
            assert frame.trace is not None and len(frame.args) == 2
    # Presale buys arrive before tick 0, at price 1; the rest arrive at or after their tick.
    position = {id(f): i for i, f in enumerate(cycle)}
    tick0_at = next(i for i, f in enumerate(cycle) if f.payload is tick0)
    for frame in (f for f in events if f.event_name == "standard/newTrade"):
        if position[id(frame)] < tick0_at:
            assert (frame.payload["type"], frame.payload["price"], frame.payload["tickIndex"]) == ("buy", 1, 0)
    placed = [f.payload for f in events if f.event_name == "newSideBet"]
    assert all(p["end"] == p["startedAtTick"] + 40 and p["xPayout"] == 5 for p in placed)
    for record in revealed["globalSidebets"]:
        if record["type"] == "payout":
            won = rug_tick <= record["endTick"]
            assert record["payout"] == pytest.approx(5 * record["betAmount"] if won else 0)


def _normalized(cycle: list[Frame]) -> list[bytes]:
    """The frames without wall-clock fields (timestamps, the date in game ids)."""

    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k != "timestamp" and not k.endswith("Timestamp")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and GAME_ID.fullmatch(value):
            return value[9:]
        return value

    return [orjson.dumps([f.event_name, strip(list(f.args))]) for f in cycle]


def test_same_seed_same_frames():
    # A seed whose game 10 (the first live one) is long, so that both clients join before game 11 begins.
    seed = next(s for s in range(100) if GameGenerator(s).game(10, date.today()).rug_tick >= 300)
    last_id = GameGenerator(seed).game(12, date.today()).id[9:]  # the date part is wall-clock

    async def watch(sim: Simulator):
        async with joined(sim) as (ws, _):
            return (await game_cycle(ws))[1]

    async def scenario():
        async with simulator(seed=seed, speed=200) as a, simulator(seed=seed, speed=200) as b:
            return await asyncio.gather(watch(a), watch(b))

    first, second = arun(scenario())
    assert first[-1].payload["gameId"].endswith(last_id)
    assert len(first) > 150 and _normalized(first) == _normalized(second)


# --- the generator ------------------------------------------------------------------


def test_generated_games_match_the_measured_distribution():
    generator, day = GameGenerator(1), date(2026, 2, 6)
    games = [generator.game(i, day) for i in range(2000)]
    lengths = [len(g.prices) for g in games]
    peaks = [g.peak for g in games]
    assert 150 <= statistics.mean(lengths) <= 260
    assert 110 <= statistics.median(lengths) <= 180
    assert min(lengths) >= 2 and max(lengths) > 800
    assert 1.6 <= statistics.median(peaks) <= 2.3
    assert any(g.god_candle for g in games)
    assert len({g.id for g in games}) == len(games)
    for game in games[:200]:
        assert game.id.startswith("20260206-") and GAME_ID.fullmatch(game.id)
        assert hashlib.sha256(game.server_seed.encode()).hexdigest() == game.server_seed_hash
        assert game.prices[0] == 1 and 0 < game.prices[-1] < 0.05 * game.prices[-2]
        for record in game.payouts:
            won = game.rug_tick <= record["endTick"]
            assert record["payout"] == (record["betAmount"] * 5 if won else 0)
            assert record["tickIndex"] == (game.rug_tick if won else record["endTick"])
    assert GameGenerator(1).game(5, day) == games[5]
    assert GameGenerator(2).game(5, day) != games[5]


# --- replay -------------------------------------------------------------------------


def test_replay_serves_recorded_events_in_order_then_exits(tmp_path, caplog):
    header = {"__trace": True, "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}
    first = [
        {"seq": 1, "ts": "2025-12-12T17:16:58.000000", "event": "connect", "data": None},
        {"seq": 2, "ts": "2025-12-12T17:16:58.000000", "event": "gameStateUpdate", "data": {"gameId": "g", "tickCount": 4}},
        {"seq": 3, "ts": "2025-12-12T17:16:59.000000", "event": "standard/newTrade", "data": [header, {"id": "t1"}]},
        {"seq": 4, "ts": "2025-12-12T17:17:00.000000", "event": "gameStateUpdate", "data": {"gameId": "g", "tickCount": 5}},
    ]
    lines = [orjson.dumps(r).decode() for r in first]
    lines.insert(3, "{not json")  # line 4
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    (tmp_path / "b.jsonl").write_text(orjson.dumps(
        {"seq": 1, "ts": "2026-01-01T00:00:00", "event": "newChatMessage", "data": {"message": "gm"}}).decode() + "\n")

    async def scenario():
        async with simulator(speed=10, replay=[tmp_path / "a.jsonl", tmp_path / "b.jsonl"]) as sim:
            received, started = [], None
            async with joined(sim) as (ws, _):
                try:
                    async for frame in frames(ws):
                        started = started or time.monotonic()
                        received.append(frame)
                except ConnectionClosed:
                    pass
            elapsed = time.monotonic() - started
            await asyncio.wait_for(sim.wait_done(), 2)
            return received, elapsed

    with caplog.at_level(logging.WARNING, logger="rugs_pipeline.simulator.server"):
        received, elapsed = arun(scenario())
    assert [(f.event_name, f.args) for f in received] == [
        ("gameStateUpdate", ({"gameId": "g", "tickCount": 4},)),
        ("standard/newTrade", (header, {"id": "t1"})),
        ("gameStateUpdate", ({"gameId": "g", "tickCount": 5},)),
        ("newChatMessage", ({"message": "gm"},)),
    ]
    assert 0.18 <= elapsed < 1.5  # 2 s of recording at 10x, then the drain
    assert any("a.jsonl:4:" in r.getMessage() for r in caplog.records)


def test_replay_of_a_missing_file_is_a_one_line_error(tmp_path):
    with pytest.raises(SimulatorError, match="cannot replay"):
        arun(Simulator(SimulatorConfig(replay=[tmp_path / "missing.jsonl"])).start())


def test_run_returns_once_the_replay_is_served(tmp_path):
    recording = tmp_path / "one.jsonl"
    recording.write_text('{"seq": 1, "ts": "2025-12-12T17:16:58", "event": "newChatMessage", "data": {"message": "gm"}}\n')
    proc, url = start_process(f"replay=[Path({str(recording)!r})]")

    async def watch():
        async with connect(url) as ws:
            await ws.recv()
            await ws.send("40")
            return [message async for message in ws]

    assert arun(watch())[1:] == ['42["newChatMessage",{"message":"gm"}]']
    assert proc.wait(timeout=10) == 0


def test_protocol_drift_serves_the_changed_protocol() -> None:
    async def scenario() -> tuple[list[dict], set[str]]:
        states, names = [], set()
        async with simulator(seed=2, speed=200, protocol_drift=True) as sim, joined(sim) as (ws, _):
            async for frame in frames(ws):
                names.add(frame.event_name)
                if frame.event_name == "gameStateUpdate":
                    states.append(frame.payload)
                if "marketPulse" in names and any("price" in s for s in states):
                    return states, names
        return states, names

    states, names = arun(scenario(), timeout=60)
    assert "marketPulse" in names
    assert all(s["serverRegion"] == "eu-west" and "connectedPlayers" not in s for s in states)  # the snapshot too
    assert all(isinstance(s["price"], str) for s in states if "price" in s)
