"""REPLAYER game recordings as simulator scripts: their exact price paths served as live games.

A REPLAYER file (``replayer_games/game_*.jsonl``) holds one game already processed into
records, one JSON object a line: ``game_start``, then ``tick`` records (``game_id, tick, price,
active, rugged, cooldown_timer, trade_count, timestamp``: cooldown and presale states at tick
0, the running ticks, the rug and a post-rug record), then ``game_end``. Some lines are corrupt
(two writers interleaved); they are reported as ``BadLine`` and skipped.

``GameScripts.events(path)`` turns a file into the ``gameStateUpdate`` frames the live feed
would have sent (RUGS_FEED.md), in file order and at the records' times, with the game's own
id: a cooldown / presale frame per cooldown record, a tick frame per running tick with the
``partialPrices`` window of the ticks known so far, the rug frame, the post-rug broadcast.
The first frame of each game carries the ``gameHistory`` of the games served before it, so
the previous game's history arrives as it would live; a game's entry holds its ``prices``
only when its file knows every tick 0..R (a partial path has no truthful history). The
server seed is made up (from the game id): REPLAYER did not record one.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from rugs_pipeline.formats.recordings import BadLine, RecordedEvent
from rugs_pipeline.simulator.games import GAME_VERSION, PRESALE_MS

HISTORY_LEN = 10  # games in gameHistory
WINDOW = 5  # partialPrices: the last <= 5 ticks
_SNIFF_LINES = 100  # a game file's first record is on its first line; corrupt ones are rare
_TEXT_LIMIT = 500
_TICK_FIELDS = {"game_id": str, "tick": int, "price": (int, float), "active": bool, "rugged": bool,
                "cooldown_timer": int, "timestamp": str}


def is_game_file(path: Path) -> bool:
    """Whether ``path`` is a REPLAYER game file: its first readable line is a game record."""
    with open(path, "rb") as fh:
        for raw in itertools.islice(fh, _SNIFF_LINES):
            try:
                first = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            return isinstance(first, dict) and first.get("type") in ("game_start", "tick", "game_end") \
                and "game_id" in first
    return False


def _record(raw: bytes) -> dict[str, Any] | str:
    """A tick record, or the reason the line is not one; game_start / game_end give {}."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not JSON: {exc}"
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    if obj.get("type") in ("game_start", "game_end"):
        return {}
    if obj.get("type") != "tick":
        return f"unknown record type {obj.get('type')!r}"[:200]
    for name, kind in _TICK_FIELDS.items():
        value = obj.get(name)
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            return f"field {name!r} is {value!r}"[:200]
    try:
        obj["ts"] = datetime.fromisoformat(obj["timestamp"]).replace(tzinfo=timezone.utc)  # only differences matter
    except ValueError as exc:
        return f"bad timestamp: {exc}"
    return obj


class _Game:
    """One game being served: the prices known so far, its seed, whether its end has been sent."""

    def __init__(self, game_id: str) -> None:
        self.id = game_id
        self.seed = hashlib.sha256(f"replayer:{game_id}".encode()).hexdigest()
        self.seed_hash = hashlib.sha256(self.seed.encode()).hexdigest()
        self.prices: dict[int, float] = {}  # tick -> first price seen, up to the rug
        self.rug_tick: int | None = None

    def fair(self) -> dict[str, Any]:
        return {"serverSeedHash": self.seed_hash, "version": GAME_VERSION}

    def window(self, end: int) -> dict[str, Any]:
        values = {str(t): self.prices[t] for t in range(max(0, end - WINDOW + 1), end + 1) if t in self.prices}
        return {"startTick": int(min(values, key=int)) if values else end, "endTick": end, "values": values}

    def history_entry(self, end_ms: int) -> dict[str, Any]:
        entry = {"id": self.id, "timestamp": end_ms, "rugged": True, "gameVersion": GAME_VERSION,
                 "globalTrades": [], "globalSidebets": [],
                 "provablyFair": {"serverSeed": self.seed, "serverSeedHash": self.seed_hash}}
        if set(self.prices) == set(range(self.rug_tick + 1)):
            path = [self.prices[t] for t in range(self.rug_tick + 1)]
            entry.update(prices=path, peakMultiplier=max(path))
        return entry


class GameScripts:
    """Serves REPLAYER game files one after the other, keeping the feed's 10-game history across them."""

    def __init__(self) -> None:
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LEN)

    def events(self, path: Path) -> Iterator[RecordedEvent | BadLine]:
        """The file's frames as received events, in file order; unreadable lines as BadLine."""
        game: _Game | None = None
        first_frame = True
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                record = _record(raw)
                if isinstance(record, str):
                    yield BadLine(number, record, raw.decode("utf-8", "replace").strip()[:_TEXT_LIMIT])
                    continue
                if not record:
                    continue
                if game is None or record["game_id"] != game.id:
                    self._finish(game)
                    game, first_frame = _Game(record["game_id"]), True
                frame = self._frame(game, record)
                if first_frame:
                    frame["gameHistory"] = list(self._history)
                    first_frame = False
                yield RecordedEvent(ts=record["ts"], name="gameStateUpdate", args=(frame,), line=number)
        self._finish(game)

    def _finish(self, game: _Game | None) -> None:
        if game is not None and game.rug_tick is not None:
            self._history.appendleft(game.history_entry(time_ms()))

    def _frame(self, game: _Game, record: dict[str, Any]) -> dict[str, Any]:
        tick, price, timer = record["tick"], record["price"], record["cooldown_timer"]
        if not record["active"] and not record["rugged"]:  # cooldown / presale (shape 1)
            return {"gameId": game.id, "cooldownTimer": timer, "cooldownPaused": False,
                    "allowPreRoundBuys": 0 < timer <= PRESALE_MS, "leaderboard": [], "connectedPlayers": 0,
                    "provablyFair": game.fair()}
        post_rug = game.rug_tick is not None
        if not post_rug:
            game.prices.setdefault(tick, price)
            if record["rugged"]:
                game.rug_tick = tick
        frame = {"active": record["active"], "price": price, "rugged": record["rugged"], "tickCount": tick,
                 "cooldownTimer": timer, "allowPreRoundBuys": False, "gameId": game.id,
                 # a post-rug broadcast counts tickCount on past R; its window still ends at R
                 "partialPrices": game.window(game.rug_tick if post_rug else tick),
                 "tradeCount": record.get("trade_count", 0), "leaderboard": [], "provablyFair": game.fair()}
        if post_rug:
            frame["gameHistory"] = list(self._history)  # not holding this game yet: that comes with the next
        return frame


def time_ms() -> int:
    return time.time_ns() // 1_000_000
