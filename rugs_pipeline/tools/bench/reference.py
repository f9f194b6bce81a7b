"""The row-at-a-time deriver: what the derivations compute, written the plain Python way.

One frame at a time: ``json.loads``, dicts, and ``pyarrow.Table.from_pylist`` at the end.
It is the benchmark's slow baseline and the unit tests' second opinion: the SQL
derivations and this must give the same rows (``raw_json`` compared as JSON).

Field values follow DuckDB's casts of JSON text (``TRY_CAST(payload->>'x' AS ...)``):
numbers round half away from zero into integers, numeric strings count as numbers,
booleans are never numbers, JSON null is SQL NULL.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from rugs_pipeline.derive.games import summarize_games
from rugs_pipeline.store import schema

Row = dict[str, Any]
ENVELOPE = ("ts", "source", "session_id", "seq", "direction")
_ORDER_LIKE = re.compile(r"(?i)(order|sidebet|trade)")
_INT64 = 2**63


# --- DuckDB's casts of JSON values ------------------------------------------------------


def text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v, separators=(",", ":"))


def integer(v: Any) -> int | None:
    if isinstance(v, str):
        try:
            v = float(v) if any(c in v for c in ".eE") else int(v)
        except ValueError:
            return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    if isinstance(v, float):
        v = int(math.copysign(math.floor(abs(v) + 0.5), v))
    return v if -_INT64 <= v < _INT64 else None


def number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v) if isinstance(v, str) else None
    except ValueError:
        return None


def boolean(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if isinstance(v, str):
        return {"true": True, "t": True, "false": False, "f": False}.get(v.lower())
    return None


def field(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, dict) else None


def first(*values: Any) -> Any:
    """SQL coalesce over the values' text: JSON null counts as missing."""
    return next((v for v in values if v is not None), None)


def _order_key(*values: Any) -> tuple:
    """ORDER BY with DuckDB's default NULLS LAST."""
    return tuple((v is None, v if v is not None else 0) for v in values)


# --- reading ---------------------------------------------------------------------------


def frames(files: list[Path], wanted) -> Iterator[Row]:
    """ws_event rows as dicts; ``args``: the event's arguments, parsed where ``wanted(row)`` says so."""
    for batch in ds.dataset(files, format="parquet").to_batches(batch_size=20_000):
        for row in batch.to_pylist():
            row["args"] = None
            if row["frame_kind"] == "event" and wanted(row):
                raw = row["raw_json"]
                row["args"] = json.loads(raw[raw.index("["):])[1:]
            yield row


def _payload(row: Row) -> Any:
    return row["args"][-1] if row["args"] else None


def _envelope(row: Row) -> Row:
    return {k: row[k] for k in ENVELOPE}


def _when(row: Row) -> tuple:
    """The order frames are told apart by: first received."""
    return row["ts"], row["session_id"], row["seq"]


def _keep_first(kept: dict, key: Any, row: Row) -> None:
    if key not in kept or _when(row) < _when(kept[key]):
        kept[key] = row


def _raw(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# --- player_action ---------------------------------------------------------------------

HISTORY_SIDEBET = "gameHistory.globalSidebets"
LIVE_SIDEBETS = ("newSideBet", "currentSidebet", "currentSidebetResult")


class PlayerAction:
    """Trades (first copy of an id), sidebets (live and from gameHistory; first copy of (id, kind)), orders sent."""

    def __init__(self) -> None:
        self.trades: dict[str, Row] = {}
        self.sidebets: dict[tuple[str, str], Row] = {}
        self.orders: list[Row] = []

    @staticmethod
    def wanted(row: Row) -> bool:
        name = row["event_name"]
        if row["direction"] == "sent":
            return bool(_ORDER_LIKE.search(name))
        return name in ("standard/newTrade", "gameStateUpdate", *LIVE_SIDEBETS)

    def add(self, row: Row) -> None:
        name, p = row["event_name"], _payload(row)
        if row["frame_kind"] != "event":
            return
        if row["direction"] == "sent":
            if _ORDER_LIKE.search(name):
                self.orders.append(self._row(row, p, name, None, name, field(p, "gameId"), None,
                                             integer(field(p, "tickIndex")),
                                             number(first(text(field(p, "amount")), text(field(p, "betAmount")))),
                                             number(field(p, "qty")), number(field(p, "leverage")), field(p, "coin")))
            return
        if row["direction"] != "received":
            return
        if name == "standard/newTrade" and field(p, "id") is not None:
            trade = self._row(row, p, name, p["id"], field(p, "type"), field(p, "gameId"), field(p, "username"),
                              integer(field(p, "tickIndex")), number(field(p, "amount")), number(field(p, "qty")),
                              number(field(p, "leverage")), field(p, "coin"))
            trade.update(bonus_portion=number(field(p, "bonusPortion")), real_portion=number(field(p, "realPortion")),
                         level=integer(field(p, "level")))
            _keep_first(self.trades, text(p["id"]), trade)
        elif name in LIVE_SIDEBETS:
            self._sidebet(row, p, name, first(field(p, "id"), field(p, "sidebetId")), field(p, "gameId"),
                          first(text(field(p, "coinAddress")), text(field(p, "coin"))))
        elif name == "gameStateUpdate" and isinstance(field(p, "gameHistory"), list):
            for game in p["gameHistory"]:
                for sb in field(game, "globalSidebets") or []:
                    self._sidebet(row, sb, HISTORY_SIDEBET, field(sb, "id"),
                                  first(text(field(sb, "gameId")), text(field(game, "id"))), field(sb, "coinAddress"))

    def _sidebet(self, row: Row, sb: Any, event_name: str, trade_id: Any, game_id: Any, coin: Any) -> None:
        if trade_id is None:
            return
        out = self._row(row, sb, event_name, trade_id, "sidebet_" + (text(field(sb, "type")) or "placed"), game_id,
                        field(sb, "username"), integer(first(text(field(sb, "startedAtTick")), text(field(sb, "startTick")))),
                        number(field(sb, "betAmount")), None, None, coin)
        out["end_tick"] = integer(first(text(field(sb, "end")), text(field(sb, "endTick"))))
        out["payout"] = number(field(sb, "payout"))
        _keep_first(self.sidebets, (out["trade_id"], out["action_type"]), out)

    @staticmethod
    def _row(row: Row, p: Any, event_name: str, trade_id: Any, action_type: Any, game_id: Any, username: Any,
             tick: int | None, amount: float | None, qty: float | None, leverage: float | None, coin: Any) -> Row:
        return {**_envelope(row), "raw_json": _raw(p), "event_name": event_name, "trade_id": text(trade_id),
                "action_type": text(action_type), "game_id": text(game_id), "player_id": text(field(p, "playerId")),
                "username": text(username), "price": number(field(p, "price")), "tick": tick, "amount": amount,
                "qty": qty, "leverage": leverage, "coin": text(coin), "end_tick": None, "payout": None,
                "bonus_portion": None, "real_portion": None, "level": None}  # from_pylist takes the first row's keys

    def rows(self) -> list[Row]:
        out = [*self.trades.values(), *self.sidebets.values(), *self.orders]
        return sorted(out, key=lambda r: _order_key(*_when(r), r["trade_id"], r["action_type"]))


# --- server_state ----------------------------------------------------------------------


class ServerState:
    """Player snapshots, and each game's final leaderboard (its last rugged frame that has one)."""

    def __init__(self) -> None:
        self.out: list[Row] = []
        self.final: dict[Any, Row] = {}  # game id -> its last rugged frame with a leaderboard

    @staticmethod
    def wanted(row: Row) -> bool:
        return row["direction"] == "received" and row["event_name"] in (
            "playerUpdate", "gameStatePlayerUpdate", "gameStateUpdate")

    def add(self, row: Row) -> None:
        name, p = row["event_name"], _payload(row)
        if row["frame_kind"] != "event" or row["direction"] != "received":
            return
        if name == "playerUpdate":
            self.out.append(self._row(row, p, name, None, p, field(p, "cash"), "cumulativePnL"))
        elif name == "gameStatePlayerUpdate":
            self.out.append(self._row(row, p, name, field(p, "gameId"), field(p, "leaderboardEntry"), None, "pnl"))
        elif name == "gameStateUpdate" and boolean(text(field(p, "rugged"))) and "leaderboard" in p:
            game = text(p.get("gameId"))
            if game not in self.final or _when(row) > _when(self.final[game]):
                self.final[game] = {**_envelope(row), "board": p["leaderboard"]}

    @staticmethod
    def _row(row: Row, raw: Any, event_name: str, game_id: Any, entry: Any, cash: Any, pnl_key: str) -> Row:
        return {**_envelope(row), "raw_json": _raw(raw), "event_name": event_name, "game_id": text(game_id),
                "player_id": text(field(entry, "id")), "username": text(field(entry, "username")),
                "cash": number(cash), "position_qty": number(field(entry, "positionQty")),
                "avg_cost": number(field(entry, "avgCost")), "pnl": number(field(entry, pnl_key)),
                "level": integer(field(entry, "level"))}

    def rows(self) -> list[Row]:
        out = list(self.out)
        for game, row in self.final.items():
            board = row["board"]
            out += [self._row(row, e, "final_leaderboard", game, e, None, "pnl") for e in board] if isinstance(
                board, list) else []
        out = [r for r in out if r["player_id"] is not None]
        return sorted(out, key=lambda r: _order_key(*_when(r), r["player_id"]))


# --- system_event ----------------------------------------------------------------------


def _ts_ns(value: Any) -> datetime | None:
    ns = integer(text(value))
    return None if ns is None else datetime.fromtimestamp(ns // 1000 // 10**6, timezone.utc).replace(
        microsecond=ns // 1000 % 10**6)


class SystemEvent:
    """Recorder lifecycle and outages, parse errors, server notices."""

    def __init__(self) -> None:
        self.out: list[Row] = []
        self.v1: dict[str, list[tuple[Row, Any]]] = defaultdict(list)  # session -> its version-1 lifecycle records

    @staticmethod
    def wanted(row: Row) -> bool:
        return row["event_name"] == "maintenanceUpdate"

    def add(self, row: Row) -> None:
        kind, name = row["frame_kind"], row["event_name"]
        if kind == "lifecycle":
            info = json.loads(row["raw_json"])
            if name == "outage":
                cause, ended = text(field(info, "cause")), text(field(info, "ended_by"))
                message = None if cause is None else cause + (f" ({ended})" if ended is not None else "")
            else:
                message = first(text(field(info, "reason")), text(field(info, "error")), text(field(info, "url")))
            self._add(row, row["raw_json"], name, message, _ts_ns(field(info, "start_ns")), _ts_ns(field(info, "end_ns")))
            if field(info, "v") is None:
                self.v1[row["session_id"]].append((row, info))
        elif kind == "malformed":
            self._add(row, row["raw_json"], "parse_error", row["parse_error"])
        elif kind == "event" and name == "maintenanceUpdate":
            p = _payload(row)
            self._add(row, _raw(p), name, first(text(field(p, "message")), _raw(p)))
        elif kind in ("close", "disconnect", "connect_error"):
            self._add(row, row["raw_json"], f"server_{kind}", row["raw_json"])

    def _add(self, row: Row, raw: str, event_name: str, message: Any, start: Any = None, end: Any = None) -> None:
        duration = None if start is None or end is None else (end - start).total_seconds()
        self.out.append({**_envelope(row), "raw_json": raw, "event_name": event_name, "message": message,
                         "start_ts": start, "end_ts": end, "duration_s": duration})

    def rows(self) -> list[Row]:
        for records in self.v1.values():  # version 1: an outage is a disconnect until the next handshake
            records.sort(key=lambda r: r[0]["seq"])
            for i, (row, info) in enumerate(records):
                if row["event_name"] == "disconnected":
                    back = min((r["ts"] for r, _ in records[i + 1:] if r["event_name"] == "handshake"), default=None)
                    self._add(row, row["raw_json"], "outage",
                              "connection lost: " + first(text(field(info, "reason")), "unknown"), row["ts"], back)
                elif row["event_name"] == "recovered" and field(info, "last_ts_ns") is not None:
                    crashed = text(field(info, "crashed_session"))
                    self._add(row, row["raw_json"], "outage", None if crashed is None else
                              f"recorder down: session {crashed} stopped without sealing",
                              _ts_ns(info["last_ts_ns"]), row["ts"])
        return sorted(self.out, key=lambda r: _order_key(*_when(r), r["event_name"]))


# --- game_tick and complete_game ------------------------------------------------------
# DuckDB's casts of JSON (not of its text): true is 1, "5" is 5, a number is true when not 0.


def jint(v: Any) -> int | None:
    return int(v) if isinstance(v, bool) else integer(v)


def jnum(v: Any) -> float | None:
    return float(v) if isinstance(v, bool) else number(v)


def jbool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    return v != 0 if isinstance(v, (int, float)) else None


def jlist(v: Any) -> list | None:
    return [jnum(x) for x in v] if isinstance(v, list) else None


_HISTORY_KIND = {"id": text, "timestamp": jint, "peakMultiplier": jnum, "prices": jlist, "gameVersion": text}
_SOURCES = ("observed", "partial_prices", "snapshot_prices", "game_history")


class Games:
    """Every tick any source knows, the best source per tick; one history record per game (games.py)."""

    def __init__(self, day: str | None, head) -> None:
        self.day, self.head = day, head
        self.cand: dict[tuple[str, int], dict] = defaultdict(dict)  # (game, tick) -> best row per source kind
        self.prices: dict[tuple[str, int], set] = defaultdict(set)
        self.mentions: dict[str, list] = {}  # game -> [first ts, last ts]
        self.live_rug: dict[str, int] = {}
        self.history_rug: dict[str, tuple] = {}  # game -> (when, rug tick)
        self.first_copy: dict[str, Row] = {}
        self.copies: dict[str, set] = defaultdict(set)
        self.announced: dict[str, list] = {}  # game -> [when, hash, hashes]

    @staticmethod
    def wanted(row: Row) -> bool:
        return row["direction"] == "received" and row["event_name"] == "gameStateUpdate"

    def add(self, row: Row) -> None:
        if row["frame_kind"] != "event" or not self.wanted(row):
            return
        p = _payload(row)
        game, when = text(field(p, "gameId")), _when(row)
        seed_hash = text(field(field(p, "provablyFair"), "serverSeedHash"))
        if game is not None and seed_hash is not None:
            known = self.announced.setdefault(game, [when, seed_hash, set()])
            known[2].add(seed_hash)
            if when < known[0]:
                known[:2] = [when, seed_hash]
        for entry in field(p, "gameHistory") if isinstance(field(p, "gameHistory"), list) else []:
            self._history(row, entry)
        tick_count, rugged = jint(field(p, "tickCount")), jbool(field(p, "rugged"))
        if not (jbool(field(p, "active")) or rugged):  # running or rugged; presale frames are not ticks
            return
        window = field(p, "partialPrices")
        window_end = jint(field(window, "endTick"))
        if tick_count is not None and tick_count >= 0:
            tick = window_end if rugged and window_end is not None and 0 <= window_end <= tick_count else tick_count
            self._candidate(row, game, tick, jnum(field(p, "price")), 0, bool(rugged), jint(field(p, "cooldownTimer")), p)
        if isinstance(field(window, "values"), dict):
            for k, v in window["values"].items():
                self._candidate(row, game, integer(k), jnum(v), 1)
        for i, v in enumerate(jlist(field(p, "prices")) or []):
            self._candidate(row, game, i, v, 2)

    def _history(self, row: Row, entry: Any) -> None:
        h = {k: cast(field(entry, k)) for k, cast in _HISTORY_KIND.items()}
        fair = field(entry, "provablyFair")
        h["serverSeed"], h["serverSeedHash"] = text(field(fair, "serverSeed")), text(field(fair, "serverSeedHash"))
        game, when, prices = h["id"], _when(row), h["prices"]
        if game is None:
            return
        self._mention(game, row["ts"])
        if prices is not None:
            self.copies[game].add(tuple(prices))
            if prices and (game not in self.history_rug or when < self.history_rug[game][0]):
                self.history_rug[game] = (when, len(prices) - 1)
            for i, v in enumerate(prices):
                self._candidate(row, game, i, v, 3, version=h["gameVersion"])
        if game not in self.first_copy or when < _when(self.first_copy[game]):
            self.first_copy[game] = {**_envelope(row), "entry": _raw(entry), "h": h}

    def _mention(self, game: str, ts: datetime) -> None:
        span = self.mentions.setdefault(game, [ts, ts])
        span[0], span[1] = min(span[0], ts), max(span[1], ts)

    def _candidate(self, row: Row, game: str | None, tick: int | None, price: float | None, rank: int,
                   rugged: bool = False, cooldown: int | None = None, payload: Any = None, version: Any = None) -> None:
        if game is None or tick is None or tick < 0 or price is None or not math.isfinite(price) or price <= 0:
            return
        self._mention(game, row["ts"])
        if rugged:
            self.live_rug[game] = min(self.live_rug.get(game, tick), tick)
        self.prices[game, tick].add(price)
        kind = (rank, rugged)  # at the rug tick the rug frame beats the first frame
        best = self.cand[game, tick].get(kind)
        if best is None or _when(row) < best["when"]:
            self.cand[game, tick][kind] = {**_envelope(row), "when": _when(row), "price": price, "rank": rank,
                                           "rugged": rugged, "cooldown_timer": cooldown,
                                           "raw_json": _raw(payload) if rank == 0 else None,
                                           "connected_players": jint(field(payload, "connectedPlayers")),
                                           "game_version": text(field(payload, "gameVersion")) if rank == 0 else version}

    def _kept(self) -> dict[str, int | None]:
        """The games of the day, with their rug tick."""
        kept = {}
        for game, (first_ts, last_ts) in self.mentions.items():
            rug = self.live_rug.get(game, self.history_rug.get(game, (None, None))[1])
            if self.day is not None:
                try:
                    id_day = datetime.strptime(game[:8], "%Y%m%d").replace(tzinfo=timezone.utc) if re.match(
                        r"^[0-9]{8}-", game) else None
                except ValueError:
                    id_day = None
                live_on_id_day = id_day is not None and id_day <= first_ts < id_day + timedelta(days=1) + self.head
                home = id_day.date() if live_on_id_day else last_ts.date()
                if home.isoformat() != self.day:
                    continue
            kept[game] = rug
        return kept

    def rows(self) -> tuple[list[Row], list[Row]]:
        kept = self._kept()
        ticks = []
        for (game, tick), kinds in self.cand.items():
            rug = kept.get(game, "gone")
            if rug == "gone" or (rug is not None and tick > rug):
                continue
            best = min(kinds.values(), key=lambda c: (c["rank"], not (c["rugged"] and tick == rug), c["when"]))
            conflicts = len(self.prices[game, tick]) - 1
            ticks.append({**{k: best[k] for k in ENVELOPE}, "raw_json": best["raw_json"], "game_id": game,
                          "event_name": "gameStateUpdate", "price": best["price"], "tick": tick,
                          "phase": "rugged" if tick == rug else "active", "is_rug_tick": tick == rug,
                          "tick_source": _SOURCES[best["rank"]], "price_conflicts": conflicts,
                          "cooldown_timer": best["cooldown_timer"], "connected_players": best["connected_players"],
                          "game_version": best["game_version"]})
        ticks.sort(key=lambda r: _order_key(r["session_id"], r["seq"], r["game_id"], r["tick"]))
        conflicted = defaultdict(int)
        for r in ticks:
            conflicted[r["game_id"]] += r["price_conflicts"] > 0
        games = [self._complete(game, copy, conflicted[game]) for game, copy in self.first_copy.items() if game in kept]
        games.sort(key=lambda r: _order_key(*_when(r), r["game_id"]))
        return ticks, games

    def _complete(self, game: str, copy: Row, conflicts: int) -> Row:
        h = copy["h"]
        prices = h["prices"]
        announced = self.announced.get(game)
        hashes = len(announced[2]) if announced else None
        seed_hash = announced[1] if announced else h["serverSeedHash"]
        seed = h["serverSeed"]
        same = None if seed is None or seed_hash is None else hashlib.sha256(seed.encode()).hexdigest() == seed_hash
        versions = len(self.copies[game])
        message = "; ".join(m for m, on in (
            ("serverSeedHash from gameHistory: the game was not seen running", hashes is None),
            (f"the game announced {hashes} different serverSeedHash values", hashes is not None and hashes > 1),
            (f"{versions} differing gameHistory copies", versions > 1),
            ("gameHistory holds no prices", prices is None)) if on)
        return {**_envelope(copy), "raw_json": copy["entry"], "game_id": game, "event_name": "gameHistory",
                "tick": len(prices) - 1 if prices is not None else None,
                "price": prices[-1] if prices else None, "tick_count": len(prices) if prices is not None else None,
                "peak_multiplier": h["peakMultiplier"], "server_seed": seed, "server_seed_hash": seed_hash,
                "seed_verified": same if hashes is None or hashes == 1 else False,
                "price_conflicts": conflicts, "game_version": h["gameVersion"],
                "end_ts": None if h["timestamp"] is None else datetime.fromtimestamp(0, timezone.utc) + timedelta(
                    milliseconds=h["timestamp"]),
                "message": message or None}


# --- all of it -------------------------------------------------------------------------

DERIVERS = {"player_action": PlayerAction, "server_state": ServerState, "system_event": SystemEvent}


def derive(files: list[Path], day: str | None = None, head_files: list[Path] = (), until: datetime | None = None,
           head=timedelta(minutes=30)) -> dict[str, pa.Table]:
    """Every doc_type of one day from its ws_event files (and the head of the next day's), one frame at a time.

    ``games`` is the one exception: it sums the others up, with the pipeline's own SQL.
    """
    derivers = {name: cls() for name, cls in DERIVERS.items()}
    games = Games(day, head)
    everyone = [*derivers.values(), games]
    for row in frames(files, lambda r: any(d.wanted(r) for d in everyone)):
        for deriver in everyone:
            deriver.add(row)
    for row in frames(head_files, games.wanted):
        if until is None or row["ts"] < until:
            games.add(row)
    out = {name: _table(name, deriver.rows()) for name, deriver in derivers.items()}
    ticks, complete = games.rows()
    out["game_tick"], out["complete_game"] = _table("game_tick", ticks), _table("complete_game", complete)
    out["games"] = summarize_games(out["game_tick"], out["complete_game"], out["player_action"])
    return out


def _table(doc_type: str, rows: list[Row]) -> pa.Table:
    for row in rows:
        row["doc_type"] = doc_type
    return schema.conform(pa.Table.from_pylist(rows)) if rows else schema.empty_table()
