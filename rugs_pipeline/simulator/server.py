"""A local Socket.IO server that speaks the rugs.fun feed protocol (see RUGS_FEED.md).

The feed is either the live game cycle generated from a seed (``games.py``) or a
replay of earlier recordings. Every connection gets the Engine.IO/Socket.IO
handshake, the on-connect snapshot (live mode), Engine.IO heartbeats, then the
broadcast that all clients receive identically. Each client has its own outbox
drained by its own writer task, so a slow client never holds up the others and
per-client faults can later be injected at that one point.

The frame *content* is a function of the seed alone; only wall-clock fields
(``timestamp``s, the date in game ids) and pacing vary between runs. ``speed``
divides every delay of the game cycle and of a replay; the Engine.IO heartbeat is
not scaled, since clients hold the server to the intervals announced in OPEN.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from rugs_pipeline.errors import RugsError
from rugs_pipeline.formats.protocol import PING, encode_event, trace_header
from rugs_pipeline.formats.recordings import BadLine, RecordedEvent, read_recording
from rugs_pipeline.formats.sent_log import SentLog
from rugs_pipeline.formats.sio_server import (SIO_PATH, check_request, handshake, heartbeat, json_response, read_client,
                                              serve_until_signal)
from rugs_pipeline.simulator.faults import Episodes, FaultConfig, load_frame, malformed_frame, oversized_frame
from rugs_pipeline.simulator.games import (
    COOLDOWN_MS, COOLDOWN_STEP_MS, GAME_VERSION, PRESALE_MS, Game, GameGenerator, Ledger, Scheduled,
)
from rugs_pipeline.simulator.replayer_games import GameScripts, is_game_file

log = logging.getLogger(__name__)

TICK_MS = 250
HISTORY_LEN = 10
DRAIN_TIMEOUT_S = 5.0
DRAIN_PAUSE_S = 0.2
INSTARUG_TICKS = 5  # a rug this early counts towards the rug pool
# Socket.IO cannot emit these names: in recordings they are the recorder's own notes.
RESERVED_EVENTS = frozenset({"connect", "connect_error", "disconnect", "disconnecting"})

SHITCOINS = [{"address": "0xPractice", "ticker": "FREE", "name": "Practice SOL", "max_bet": 10000, "max_win": 100000}]
RUG_ROYALE = {"status": "INACTIVE", "activeEventId": None, "currentEvent": None, "upcomingEvents": [], "events": []}
BATTLE = {"status": "SCHEDULED", "startTime": None, "endTime": None, "nextEventStartTime": None, "currentEvent": None,
          "nextEvent": None, "leaderboard": [], "fullLeaderboardSize": 0, "playerPosition": None,
          "participantCount": 0, "activeBattleCount": 0, "lobbyCreationDisabled": False,
          "queue": {"active": False, "queueSize": 0, "availableLobbies": 0}, "isShowingPreviousEvent": None,
          "eventSchedule": [], "config": {"token": "0xPractice", "startingBalance": 100, "prepTimeMinutes": 30,
                                          "levelRequired": 1}}
# Low-rate public events: (name, traced, payload, chance per state frame).
SIDE_EVENTS = (
    ("goldenHourUpdate", True, {"status": "INACTIVE", "active": False, "currentEvent": None, "nextEvent": None}, 0.002),
    ("rugRoyaleUpdate", False, {**RUG_ROYALE, "leaderboard": []}, 0.002),
    ("battleEventUpdate", True, BATTLE, 0.002),
    ("maintenanceUpdate", True, {"active": False, "message": "", "mega": False}, 0.0005),
)


class SimulatorError(RugsError, RuntimeError):
    """A problem to report as one line (port in use, unreadable recording)."""


@dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    seed: int = 1
    speed: float = 1.0
    ping_interval_ms: int = 25000
    ping_timeout_ms: int = 20000
    replay: list[Path] = field(default_factory=list)  # recordings to serve instead of generated games
    protocol_drift: bool = False  # serve the changed protocol of PROTOCOL_DRIFT
    faults: FaultConfig = field(default_factory=FaultConfig)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Pacer:
    """Sleeps towards an absolute schedule, so per-frame work does not add up (it would at high speed)."""

    def __init__(self, speed: float) -> None:
        self._speed = speed
        self._due: float | None = None

    async def wait(self, ms: float) -> None:
        loop = asyncio.get_running_loop()
        if self._due is None:
            self._due = loop.time()
        self._due += ms / 1000 / self._speed
        await asyncio.sleep(max(0.0, self._due - loop.time()))


class Simulator:
    def __init__(self, config: SimulatorConfig) -> None:
        if config.speed <= 0:
            raise SimulatorError(f"speed must be positive, not {config.speed}")
        if problems := config.faults.check():
            raise SimulatorError("; ".join(problems))
        self.config = config
        # Each outbox item is (feed number or None for a per-connection frame, frame).
        self._clients: dict[ServerConnection, asyncio.Queue[tuple[int | None, str | bytes]]] = {}
        self._episodes = Episodes(config.faults)
        self._sent = SentLog(None)
        self._flowing = asyncio.Event()  # cleared while a burst is held back
        self._flowing.set()
        self._feed_no = self._conn_no = self._broadcasts = 0
        self._aux: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._feed: asyncio.Task[None] | None = None
        self._games = None if config.replay else _GameFeed(config.seed, config.speed, self._broadcast,
                                                           drift=config.protocol_drift)
        self._first_client = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}{SIO_PATH}?EIO=4&transport=websocket"

    async def start(self) -> int:
        """Listen and start the feed; returns the bound port."""
        cfg = self.config
        games = GameScripts()  # REPLAYER game files: one feed, its game history running across the files
        recordings = [self._open_recording(path, games) for path in cfg.replay]
        if cfg.faults.sent_log is not None:
            try:
                self._sent = SentLog(cfg.faults.sent_log)
            except OSError as exc:
                raise SimulatorError(f"cannot write the sent-log {cfg.faults.sent_log}: {exc.strerror or exc}") from None
        try:
            self._server = await serve(
                self._serve_client, cfg.host, cfg.port, process_request=self._check_request,
                ping_interval=None, max_size=None, close_timeout=2,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SimulatorError(f"port {cfg.port} on {cfg.host} is in use") from None
            raise SimulatorError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        self._feed = asyncio.create_task(self._replay(recordings) if recordings else self._games.run())
        self._aux = [asyncio.create_task(job) for job in (self._load(), self._bursts(), self._flush_sent_log())]
        return self.port

    async def wait_done(self) -> None:
        """Return when the feed ends: a replay has been served, or the simulator was stopped."""
        try:
            await asyncio.shield(self._feed)
        except asyncio.CancelledError:
            if not self._feed.cancelled():
                raise

    async def stop(self) -> None:
        for task in [self._feed, *self._aux]:
            if task is not None:
                task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._sent.close()

    # --- connections ------------------------------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if (answer := check_request(connection, request)) is not None:
            return answer
        status = self._episodes.reject()
        if status is not None:
            self._sent.event(None, "rejected", status=status)
            extra = {"Retry-After": str(self.config.faults.retry_after_s)} if self.config.faults.retry_after_s else {}
            return json_response(HTTPStatus(status), '{"message":"injected fault"}', extra)
        return None

    async def _serve_client(self, ws: ServerConnection) -> None:
        cfg = self.config
        self._conn_no += 1
        conn = self._conn_no
        if self._episodes.flap():
            self._sent.event(conn, "flapped")
            await ws.close(1013, "try again later")
            return
        try:
            if not await handshake(ws, lambda m: self._send(ws, conn, None, m), cfg.ping_interval_ms,
                                   cfg.ping_timeout_ms):
                return
        except ConnectionClosed:
            return
        outbox: asyncio.Queue[tuple[int | None, str | bytes]] = asyncio.Queue()
        if self._games is not None:
            outbox.put_nowait((None, self._games.snapshot()))
        # Registered in the same step as the snapshot is queued: no broadcast can fall between them.
        self._clients[ws] = outbox
        self._first_client.set()
        pinged, pong = asyncio.Event(), asyncio.Event()
        reader = asyncio.create_task(read_client(ws, outbox, pong))
        sending = [asyncio.create_task(self._write(ws, conn, outbox, pinged))]
        if not cfg.faults.no_pings:
            interval_s = cfg.ping_interval_ms / 1000 + cfg.faults.ping_delay_s
            sending.append(asyncio.create_task(heartbeat(ws, outbox, pinged, pong, interval_s,
                                                         cfg.ping_timeout_ms / 1000)))
        fault = asyncio.create_task(self._connection_fault())
        tasks = [reader, fault, *sending]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if fault in done:
                action = fault.result()
                self._sent.event(conn, action)
                self._episodes.begin()
                if action == "silent":  # the socket stays open, unfed, until the client gives up
                    del self._clients[ws]
                    for task in sending:
                        task.cancel()
                    await reader
                    return
                await ws.close(1001, "going away")
            for task in done:
                task.result()
        finally:
            self._clients.pop(ws, None)
            for task in tasks:
                task.cancel()
            await ws.close()
            self._sent.event(conn, "ended")

    async def _connection_fault(self) -> str:
        """Wait for this connection's injected fault, if any: 'closed' or 'silent'."""
        faults = self.config.faults
        if faults.close_every_s is None and faults.silent_after_s is None:
            await asyncio.Future()
        close_at = faults.close_every_s or float("inf")
        silent_at = faults.silent_after_s or float("inf")
        await asyncio.sleep(min(close_at, silent_at))
        return "closed" if close_at <= silent_at else "silent"

    async def _send(self, ws: ServerConnection, conn: int, feed_no: int | None, message: str | bytes) -> None:
        # On an open connection send() hands the frame to the socket before its first await,
        # so logging it here logs exactly what the peer gets (unless the peer dies).
        if ws.state is State.OPEN:
            self._sent.frame(conn, feed_no, message)
        await ws.send(message)

    async def _write(self, ws: ServerConnection, conn: int, outbox: asyncio.Queue, pinged: asyncio.Event) -> None:
        try:
            while True:
                feed_no, message = await outbox.get()
                await self._flowing.wait()
                await self._send(ws, conn, feed_no, message)
                outbox.task_done()
                if message == PING:
                    pinged.set()
                await asyncio.sleep(0)  # send() need not suspend: let pongs and closes be read under load
        except ConnectionClosed:
            pass

    # --- feed faults --------------------------------------------------------------------

    async def _load(self) -> None:
        faults = self.config.faults
        if not faults.rate:
            return
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        while True:
            await asyncio.sleep(0.01)  # batches of ~rate/100: a sleep per frame could not keep up
            due = int((loop.time() - start) * faults.rate)
            while sent < due:
                sent += 1
                self._broadcast(load_frame(sent, faults.rate_bytes))

    async def _bursts(self) -> None:
        faults = self.config.faults
        if faults.burst_every_s is None:
            return
        while True:
            await asyncio.sleep(faults.burst_every_s)
            self._flowing.clear()
            await asyncio.sleep(faults.burst_hold_s)
            self._flowing.set()

    async def _flush_sent_log(self) -> None:
        while True:
            await asyncio.sleep(1)
            self._sent.flush()

    def _broadcast(self, message: str) -> None:
        """One feed frame to every client, then any feed fault that is due after it."""
        self._emit(message)
        self._broadcasts += 1
        faults, n = self.config.faults, self._broadcasts
        if faults.malformed_every and n % faults.malformed_every == 0:
            self._emit(malformed_frame(n // faults.malformed_every - 1, message))
        if faults.oversized_every and n % faults.oversized_every == 0:
            self._emit(oversized_frame(n, faults.oversized_bytes))

    def _emit(self, message: str | bytes) -> None:
        self._feed_no += 1
        self._sent.feed(self._feed_no)
        for outbox in self._clients.values():
            outbox.put_nowait((self._feed_no, message))

    # --- replay -----------------------------------------------------------------------

    @staticmethod
    def _open_recording(path: Path, games: GameScripts) -> tuple[Path, Iterator[RecordedEvent | BadLine]]:
        try:
            if is_game_file(Path(path)):
                return path, games.events(Path(path))
            return path, read_recording(Path(path), timezone.utc)
        except (OSError, ValueError) as exc:
            raise SimulatorError(f"cannot replay {path}: {exc}") from None

    async def _replay(self, recordings: list[tuple[Path, Iterator[RecordedEvent | BadLine]]]) -> None:
        """Serve the recordings' received events once, keeping their pacing, then shut down."""
        await self._first_client.wait()
        pace = _Pacer(self.config.speed)
        for path, items in recordings:
            previous = None  # pacing restarts with each file: files may be days apart
            for item in items:
                if isinstance(item, BadLine):
                    log.warning("%s:%d: skipped: %s", path, item.line, item.reason)
                    continue
                if item.direction != "received" or item.name in RESERVED_EVENTS:
                    continue
                if previous is not None:
                    await pace.wait(max(0.0, (item.ts - previous).total_seconds() * 1000))
                previous = item.ts
                self._broadcast(encode_event(item.name, *item.args))
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                await asyncio.gather(*(outbox.join() for outbox in self._clients.values()))
        except TimeoutError:
            log.warning("replay done; %d client(s) still had frames queued", len(self._clients))
        await asyncio.sleep(DRAIN_PAUSE_S)
        self._server.close()
        await self._server.wait_closed()


class _GameFeed:
    """The live game cycle as one deterministic sequence of frames."""

    def __init__(self, seed: int, speed: float, emit: Callable[[str], None], drift: bool = False) -> None:
        self._generator = GameGenerator(seed)
        self._drift, self._state_frames = drift, 0
        self._rng = random.Random(f"{seed}:feed")  # connectedPlayers, delays, trace ids, side events
        self._speed, self._emit = speed, emit
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LEN)
        # Running totals: the feed's "today" figures cover every game since start.
        self._games_done, self._peak_sum = 0, 0.0
        self._counts = dict.fromkeys((2, 10, 50, 100), 0)
        self._highest: dict[str, Any] = {"highestToday": None, "highestTodayTimestamp": None, "highestTodayPrices": []}
        self._god_candles = {n: _no_god_candle(n) for n in (2, 10, 50)}
        self._rugpool = {"instarugCount": 0, "threshold": 10, "rugpoolAmount": 0.0}
        self._connected = 200
        self._board: list[dict[str, Any]] = []  # shown during cooldown: the previous game's final standings
        # Ten games already played, so the very first genesis frame has a full gameHistory.
        now = _now_ms()
        for index in range(HISTORY_LEN):
            self._begin(index)
            end_ms = now - (HISTORY_LEN - index) * 60_000
            for event in self._game.events:
                self._apply(event, end_ms)
            self._settle(self._game.rug_tick, end_ms)
            self._finish(end_ms)
        self._begin(HISTORY_LEN)

    def _begin(self, index: int) -> None:
        self._game: Game = self._generator.game(index, datetime.now(timezone.utc).date())
        self._ledger = Ledger()
        self._sidebets: list[dict[str, Any]] = []
        self._trade_count = self._cursor = self._payouts_done = 0
        self._timer, self._tick, self._active, self._rugged = COOLDOWN_MS, 0, False, False

    async def run(self) -> None:
        pace = _Pacer(self._speed)
        while True:
            game = self._game
            self._step(self._transition_frame())  # genesis: gameHistory[0] is the game that just ended
            for timer in range(COOLDOWN_MS - COOLDOWN_STEP_MS, 0, -COOLDOWN_STEP_MS):
                await pace.wait(COOLDOWN_STEP_MS)
                self._timer = timer
                self._step(self._cooldown_frame(), ("cooldown", timer))
            await pace.wait(COOLDOWN_STEP_MS)
            self._timer, self._active = 0, True
            self._step(self._core(), ("tick", 0))
            for tick in range(1, game.rug_tick + 1):
                await pace.wait(TICK_MS)
                self._tick, self._rugged = tick, tick == game.rug_tick
                self._settle(tick, _now_ms())
                self._step(self._tick_frame(), ("tick", tick))
            rugged_ms = _now_ms()
            post_ms = self._rng.uniform(800, 1800)
            next_ms = post_ms + self._rng.uniform(100, 600)
            await pace.wait(post_ms)
            self._tick = game.rug_tick + self._rng.randint(1, 3)
            self._step(self._transition_frame())  # gameHistory does not hold this game yet
            await pace.wait(next_ms - post_ms)
            self._finish(rugged_ms)
            self._begin(game.index + 1)

    def snapshot(self) -> str:
        """The on-connect frame: the transition shape with the whole price history in place of partialPrices.

        It only reads the state: the feed's random stream must not depend on who connects when.
        """
        frame = {}
        for key, value in self._transition_frame().items():
            if key == "partialPrices":
                key, value = "prices", list(self._game.prices[: self._price_tick() + 1])
            frame[key] = value
        return encode_event("gameStateUpdate", _drifted(frame) if self._drift else frame)

    # --- sending ----------------------------------------------------------------------

    def _step(self, state: dict[str, Any], at: tuple[str, int] | None = None) -> None:
        """One state frame, then the game's events scheduled at it, then maybe a low-rate event."""
        self._emit(encode_event("gameStateUpdate", _drifted(state) if self._drift else state))
        self._state_frames += 1
        if self._drift and self._state_frames % DRIFT_EVENT_EVERY == 0:
            self._emit(encode_event(DRIFT_EVENT, {"gameId": state.get("gameId"), "mood": "calm", "level": 1}))
        events = self._game.events
        while at is not None and self._cursor < len(events) and events[self._cursor].at == at:
            event = events[self._cursor]
            self._cursor += 1
            self._traced(event.name, self._apply(event, _now_ms()))
        roll = self._rng.random()
        for name, traced, payload, chance in SIDE_EVENTS:
            if roll < chance:
                if traced:
                    self._traced(name, payload)
                else:
                    self._emit(encode_event(name, payload))
                break
            roll -= chance
        self._connected = max(1, self._connected + self._rng.choice((-1, 0, 0, 1)))

    def _traced(self, name: str, payload: dict[str, Any]) -> None:
        header = trace_header(f"{self._rng.getrandbits(128):032x}", f"{self._rng.getrandbits(64):016x}")
        self._emit(encode_event(name, header, payload))

    # --- game bookkeeping -------------------------------------------------------------

    def _apply(self, event: Scheduled, now_ms: int) -> dict[str, Any]:
        payload = _stamped(event.payload, now_ms)
        if event.name == "standard/newTrade":
            self._ledger.apply_trade(payload)
            self._trade_count += 1
            self._rugpool["rugpoolAmount"] = round(self._rugpool["rugpoolAmount"] + payload["amount"] * 0.001, 9)
        elif event.name == "newSideBet":
            self._ledger.apply_sidebet(payload)
            self._sidebets.append(payload)
        return payload

    def _settle(self, tick: int, now_ms: int) -> None:
        payouts = self._game.payouts
        while self._payouts_done < len(payouts) and payouts[self._payouts_done]["tickIndex"] <= tick:
            record = _stamped(payouts[self._payouts_done], now_ms)
            self._payouts_done += 1
            self._ledger.apply_sidebet(record)
            self._sidebets.append(record)

    def _finish(self, end_ms: int) -> None:
        game = self._game
        self._history.appendleft({
            "id": game.id, "timestamp": end_ms, "prices": list(game.prices), "peakMultiplier": game.peak,
            "rugged": True, "globalTrades": [], "globalSidebets": self._sidebets,
            "provablyFair": {"serverSeed": game.server_seed, "serverSeedHash": game.server_seed_hash},
            "gameVersion": GAME_VERSION,
        })
        self._games_done += 1
        self._peak_sum += game.peak
        for n in self._counts:
            self._counts[n] += game.peak >= n
        if self._highest["highestToday"] is None or game.peak > self._highest["highestToday"]:
            self._highest = {"highestToday": game.peak, "highestTodayTimestamp": end_ms,
                             "highestTodayPrices": list(game.prices)}
        if game.god_candle is not None:
            bucket = max((n for n in self._god_candles if game.peak >= n), default=None)
            if bucket is not None:
                self._god_candles[bucket] = {
                    f"godCandle{bucket}x": game.peak, f"godCandle{bucket}xTimestamp": end_ms,
                    f"godCandle{bucket}xPrices": list(game.prices),
                    f"godCandle{bucket}xMassiveJump": list(game.god_candle),
                }
        if game.rug_tick <= INSTARUG_TICKS:
            self._rugpool["instarugCount"] += 1
            if self._rugpool["instarugCount"] >= self._rugpool["threshold"]:  # the pool pays out and restarts
                self._rugpool.update(instarugCount=0, rugpoolAmount=0.0)
        self._board = self._ledger.leaderboard(game.prices[-1])

    # --- frames -----------------------------------------------------------------------

    def _price_tick(self) -> int:
        return min(self._tick, self._game.rug_tick)  # post-rug frames count on past the rug tick

    def _leaderboard(self) -> list[dict[str, Any]]:
        return self._board if self._timer > 0 else self._ledger.leaderboard(self._game.prices[self._price_tick()])

    def _fair(self) -> dict[str, Any]:
        return {"serverSeedHash": self._game.server_seed_hash, "version": GAME_VERSION}

    def _partial_prices(self) -> dict[str, Any]:
        end = self._price_tick()
        start = max(0, end - 4)
        return {"startTick": start, "endTick": end,
                "values": {str(t): self._game.prices[t] for t in range(start, end + 1)}}

    def _stats(self) -> dict[str, Any]:
        return {"averageMultiplier": self._peak_sum / self._games_done,
                **{f"count{n}x": count for n, count in self._counts.items()}}

    def _cooldown_frame(self) -> dict[str, Any]:  # shape 1, 7 keys
        return {"gameId": self._game.id, "cooldownTimer": self._timer, "cooldownPaused": False,
                "allowPreRoundBuys": self._timer <= PRESALE_MS, "leaderboard": self._leaderboard(),
                "connectedPlayers": self._connected, "provablyFair": self._fair()}

    def _core(self) -> dict[str, Any]:  # shape 2 (tick 0), 14 keys
        return {"active": self._active, "price": self._game.prices[self._price_tick()], "rugged": self._rugged,
                "tickCount": self._tick, "cooldownTimer": self._timer, "cooldownPaused": False, "pauseMessage": "",
                "allowPreRoundBuys": 0 < self._timer <= PRESALE_MS, "leaderboard": self._leaderboard(),
                "gameId": self._game.id, "connectedPlayers": self._connected, "gameVersion": GAME_VERSION,
                "partialPrices": self._partial_prices(), "provablyFair": self._fair()}

    def _tick_frame(self) -> dict[str, Any]:  # shape 3, 21 keys
        return {"active": True, "price": self._game.prices[self._price_tick()], "partialPrices": self._partial_prices(),
                "tradeCount": self._trade_count, "rugged": self._rugged, "tickCount": self._tick,
                "cooldownTimer": 0, "cooldownPaused": False, "pauseMessage": "", "allowPreRoundBuys": False,
                **self._stats(), "leaderboard": self._leaderboard(), "gameId": self._game.id,
                "connectedPlayers": self._connected, "rugpool": dict(self._rugpool),
                "rugRoyale": RUG_ROYALE, "provablyFair": self._fair()}

    def _transition_frame(self) -> dict[str, Any]:  # shape 4, 36 keys
        god_candles = {k: v for n in (2, 10, 50) for k, v in self._god_candles[n].items()}
        return {"gameHistory": list(self._history), **self._stats(), **self._highest, **god_candles,
                "availableShitcoins": SHITCOINS, **self._core()}


# --protocol-drift: the server changed its protocol overnight. Each kind of change the catalog's
# protocol_drift check names, once: a new event, a new field, a retyped field, a removed field.
PROTOCOL_DRIFT = {
    "new event": "marketPulse (after every 50th state frame)",
    "new field": "gameStateUpdate.serverRegion",
    "retyped field": "gameStateUpdate.price: number -> string",
    "removed field": "gameStateUpdate.connectedPlayers",
}
DRIFT_EVENT, DRIFT_EVENT_EVERY = "marketPulse", 50


def _drifted(state: dict[str, Any]) -> dict[str, Any]:
    """A state frame as the changed protocol sends it (a copy: the feed's own state stays as it was)."""
    out = {k: v for k, v in state.items() if k != "connectedPlayers"}
    if "price" in out:
        out["price"] = repr(float(out["price"]))
    out["serverRegion"] = "eu-west"
    return out


def _no_god_candle(n: int) -> dict[str, Any]:
    return {f"godCandle{n}x": None, f"godCandle{n}xTimestamp": None, f"godCandle{n}xPrices": [],
            f"godCandle{n}xMassiveJump": None}


def _stamped(payload: dict[str, Any], now_ms: int) -> dict[str, Any]:
    return {**payload, "timestamp": now_ms} if "timestamp" in payload else payload


def run(config: SimulatorConfig) -> None:
    """Serve until SIGINT/SIGTERM (or, replaying, until the recordings are served)."""

    async def main() -> None:
        simulator = Simulator(config)
        await simulator.start()
        print(f"simulator listening on {simulator.url}", flush=True)
        await serve_until_signal(simulator.wait_done(), simulator.stop)

    asyncio.run(main())
