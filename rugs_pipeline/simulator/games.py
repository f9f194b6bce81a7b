"""Deterministic rugs.fun games for the simulator: prices, players, trades, sidebets, chat.

Everything here is a pure function of the seed (and of the UTC day, which only
shows in game ids), so two simulators with the same seed tell the same story.
The price model follows the shape of rugs.fun's published drift function: a small
random drift with price-scaled volatility, occasional big moves, rare 10x "god
candles" and a constant per-tick rug hazard, which makes game lengths geometric
(mean ~200 ticks, median ~140, min 2) with a median peak near 1.8x, close to the
10,810 measured games (mean 201, median 145, median peak 1.89x).

Payload fields named ``timestamp`` carry wall-clock time: they are left at 0 here
and stamped by whoever broadcasts the payload.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

RUG_HAZARD = 0.005  # per tick after tick 0
DRIFT_MIN, DRIFT_MAX = -0.02, 0.03
BIG_MOVE_CHANCE, BIG_MOVE_MIN, BIG_MOVE_MAX = 0.125, 0.15, 0.25
# Far likelier than rugs.fun's 1e-5 so that a simulated hour shows a few.
GOD_CANDLE_CHANCE, GOD_CANDLE_MOVE, GOD_CANDLE_CEILING = 0.0002, 10.0, 100.0
MAX_TICKS = 5000
CRASH_MIN, CRASH_MAX = 0.01, 0.02  # rug price as a fraction of the last price

COOLDOWN_MS, PRESALE_MS, COOLDOWN_STEP_MS = 15000, 10000, 100
SIDEBET_WINDOW, SIDEBET_X = 40, 5
GAME_VERSION = "v3"
SOL = "So11111111111111111111111111111111111111112"

TRADE_RATE, SIDEBET_RATE = 0.12, 0.03  # per tick
CHAT_RATE_TICK, CHAT_RATE_COOLDOWN = 0.025, 0.012  # per tick / per cooldown step
PRESALE_BUYS_MAX = 8
PLAYER_POOL = 400

_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_NAME_HEADS = ("moon", "degen", "rug", "sol", "ape", "chad", "based", "pump", "lambo", "hodl", "whale",
               "jeet", "giga", "wen", "fomo", "gm", "lucky", "king", "paper", "diamond", "sniper", "turbo")
_NAME_TAILS = ("lord", "boi", "king", "master", "x", "man", "guy", "trader", "hands", "god", "cat", "dog",
               "ninja", "wizard", "", "")
_CHAT = ("gm", "lfg", "rugged again", "send it", "who's holding", "2x incoming", "sell sell sell",
         "this one is going to 10x", "im out", "wen moon", "gg", "buy the dip", "brutal", "nice call",
         "instarug lol", "one more game", "sidebet hit!", "paper hands everywhere", "ape in", "ngmi")


@dataclass(frozen=True)
class Player:
    id: str
    username: str
    level: int


@dataclass(frozen=True)
class Scheduled:
    """An event of a game's script: sent after the state frame of ``at``.

    ``at`` is ``("cooldown", cooldownTimer)`` before the game or ``("tick", tickIndex)`` during it.
    """

    at: tuple[str, int]
    name: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Game:
    index: int
    id: str
    server_seed: str
    server_seed_hash: str
    prices: tuple[float, ...]  # ticks 0..R; prices[R] is the crash price
    god_candle: tuple[float, float] | None  # (before, after) of the first god candle
    events: tuple[Scheduled, ...]  # in sending order
    payouts: tuple[dict[str, Any], ...]  # sidebet settlements, by tickIndex

    @property
    def rug_tick(self) -> int:
        return len(self.prices) - 1

    @property
    def peak(self) -> float:
        return max(self.prices)


def make_players(seed: int, count: int = PLAYER_POOL) -> tuple[Player, ...]:
    rng = random.Random(f"{seed}:players")
    players = []
    for _ in range(count):
        pid = "did:privy:cm" + "".join(rng.choice(_ID_CHARS) for _ in range(23))
        name = rng.choice(_NAME_HEADS) + rng.choice(_NAME_TAILS)
        if rng.random() < 0.5:
            name += str(rng.randint(1, 999))
        players.append(Player(pid, name if rng.random() < 0.7 else name.capitalize(), rng.randint(0, 70)))
    return tuple(players)


def price_step(price: float, rng: random.Random) -> tuple[float, bool]:
    """The next tick's price, and whether it was a god candle."""
    if rng.random() < GOD_CANDLE_CHANCE and price <= GOD_CANDLE_CEILING:
        return price * GOD_CANDLE_MOVE, True
    if rng.random() < BIG_MOVE_CHANCE:
        move = rng.uniform(BIG_MOVE_MIN, BIG_MOVE_MAX)
        change = move if rng.random() < 0.5 else -move
    else:
        volatility = 0.005 * min(10.0, price**0.5)
        change = rng.uniform(DRIFT_MIN, DRIFT_MAX) + volatility * (2 * rng.random() - 1)
    return price * (1 + change), False


def price_path(rng: random.Random) -> tuple[tuple[float, ...], tuple[float, float] | None]:
    prices: list[float] = [1]  # an int, as the feed sends tick 0's price
    god = None
    for _ in range(1, MAX_TICKS):
        if rng.random() < RUG_HAZARD:
            break
        price, candle = price_step(prices[-1], rng)
        if candle and god is None:
            god = (prices[-1], price)
        prices.append(price)
    prices.append(prices[-1] * rng.uniform(CRASH_MIN, CRASH_MAX))
    return tuple(prices), god


@dataclass
class _Holding:
    """One player's stake in the current game."""

    player: Player
    qty: float = 0.0
    cost: float = 0.0  # SOL paid for the tokens still held
    invested: float = 0.0
    realized: float = 0.0
    short: dict[str, Any] | None = None
    short_pnl: float = 0.0
    sidebet: dict[str, Any] | None = None
    sidebet_pnl: float = 0.0


def short_value(short: dict[str, Any], price: float) -> float:
    return max(0.0, short["amount"] * (2 - price / short["entryPrice"]))


class Ledger:
    """Positions per player for one game: keeps generated trades plausible and feeds leaderboards."""

    def __init__(self) -> None:
        self._holdings: dict[str, _Holding] = {}

    def get(self, player_id: str) -> _Holding | None:
        return self._holdings.get(player_id)

    def open_sidebets(self) -> list[_Holding]:
        return [h for h in self._holdings.values() if h.sidebet]

    def _from(self, record: dict[str, Any]) -> _Holding:
        pid = record["playerId"]
        if pid not in self._holdings:
            self._holdings[pid] = _Holding(Player(pid, record["username"], record.get("level", 0)))
        return self._holdings[pid]

    def apply_trade(self, trade: dict[str, Any]) -> None:
        h = self._from(trade)
        kind, amount = trade["type"], trade["amount"]
        if kind == "buy":
            h.qty += trade["qty"]
            h.cost += amount
            h.invested += amount
        elif kind == "sell":
            part = h.cost * min(1.0, trade["qty"] / h.qty) if h.qty else 0.0
            h.realized += amount - part
            h.qty = max(0.0, h.qty - trade["qty"])
            h.cost -= part
        elif kind == "short_open":
            h.short = {"amount": amount, "entryPrice": trade["price"], "entryTick": trade["tickIndex"]}
            h.invested += amount
        elif kind == "short_close" and h.short:
            h.short_pnl += amount - h.short["amount"]
            h.short = None

    def apply_sidebet(self, record: dict[str, Any]) -> None:
        h = self._from(record)
        if record["type"] == "placed":
            h.sidebet = {k: record[k] for k in ("startedAtTick", "gameId", "end", "betAmount", "xPayout",
                                                 "coinAddress", "bonusPortion", "realPortion")}
            h.invested += record["betAmount"]
        else:
            h.sidebet_pnl += record["profit"]
            h.sidebet = None

    def leaderboard(self, price: float, limit: int = 10) -> list[dict[str, Any]]:
        rows = []
        for h in self._holdings.values():
            regular = h.realized + h.qty * price - h.cost
            short_now = h.short_pnl + (short_value(h.short, price) - h.short["amount"] if h.short else 0.0)
            pnl = regular + short_now + h.sidebet_pnl
            rows.append({
                "id": h.player.id, "username": h.player.username, "level": h.player.level,
                "pnl": _r(pnl), "regularPnl": _r(regular), "sidebetPnl": _r(h.sidebet_pnl), "shortPnl": _r(short_now),
                "sidebetActive": True if h.sidebet else None, "sideBet": h.sidebet,
                "shortPosition": _short_position(h.short, price),
                "pnlPercent": pnl / h.invested * 100 if h.invested else 0,
                "hasActiveTrades": True, "positionQty": _r(h.qty), "avgCost": h.cost / h.qty if h.qty else 0,
                "totalInvested": _r(h.invested), "selectedCoin": None,
            })
        rows.sort(key=lambda row: row["pnl"], reverse=True)
        return [{**row, "position": rank} for rank, row in enumerate(rows[:limit], 1)]


def _short_position(short: dict[str, Any] | None, price: float) -> dict[str, Any] | None:
    if short is None:
        return None
    value = short_value(short, price)
    return {**short, "currentValue": _r(value), "pnl": _r(value - short["amount"]), "coinAddress": SOL}


def _r(value: float) -> float:
    return round(value, 9)


class GameGenerator:
    """Game ``index`` of seed ``seed``: each game has its own random stream, so any game can be made alone."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.players = make_players(seed)

    def game(self, index: int, day: date) -> Game:
        rng = random.Random(f"{self.seed}:game:{index}")
        game_id = f"{day:%Y%m%d}-{rng.getrandbits(64):016x}"
        server_seed = f"{rng.getrandbits(256):064x}"
        prices, god = price_path(rng)
        script = _Script(rng, game_id, prices, rng.sample(self.players, rng.randint(8, 40)), self.players)
        return Game(
            index=index, id=game_id, server_seed=server_seed,
            server_seed_hash=hashlib.sha256(server_seed.encode()).hexdigest(),
            prices=prices, god_candle=god, events=tuple(script.events), payouts=tuple(script.payouts),
        )


@dataclass
class _Script:
    """Writes one game's events in sending order, keeping each player's position consistent."""

    rng: random.Random
    game_id: str
    prices: tuple[float, ...]
    traders: list[Player]
    everyone: tuple[Player, ...]
    events: list[Scheduled] = field(default_factory=list)
    payouts: list[dict[str, Any]] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)

    def __post_init__(self) -> None:
        rng, rug = self.rng, len(self.prices) - 1
        presale_buys = set(rng.sample(range(COOLDOWN_STEP_MS, PRESALE_MS + 1, COOLDOWN_STEP_MS),
                                      rng.randint(0, PRESALE_BUYS_MAX)))
        for timer in range(COOLDOWN_MS - COOLDOWN_STEP_MS, 0, -COOLDOWN_STEP_MS):
            at = ("cooldown", timer)
            if timer in presale_buys:
                self._trade(at, rng.choice(self.traders), 0, "buy")
            if timer <= PRESALE_MS and rng.random() < SIDEBET_RATE:
                self._sidebet(at, 0)
            if rng.random() < CHAT_RATE_COOLDOWN:
                self._chat(at)
        for tick in range(rug):
            at = ("tick", tick)
            self._settle(tick)
            while rng.random() < TRADE_RATE:
                self._trade(at, rng.choice(self.traders), tick)
            if rng.random() < SIDEBET_RATE:
                self._sidebet(at, tick)
            if rng.random() < CHAT_RATE_TICK:
                self._chat(at)
        self._settle(rug)

    def _id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _amount(self) -> float:
        return round(10 ** self.rng.uniform(-3, 0.7), 3)

    def _portions(self, amount: float) -> dict[str, float]:
        bonus = self.rng.random() < 0.2
        return {"bonusPortion": amount if bonus else 0, "realPortion": 0 if bonus else amount}

    def _trade(self, at: tuple[str, int], player: Player, tick: int, kind: str | None = None) -> None:
        rng, price = self.rng, self.prices[tick]
        h = self.ledger.get(player.id)
        if kind is None:
            roll = rng.random()
            if h and h.qty > 0 and roll < 0.45:
                kind = "sell"
            elif h and h.short and roll < 0.6:
                kind = "short_close"
            elif not (h and h.short) and roll > 0.85:
                kind = "short_open"
            else:
                kind = "buy"
        head = {"id": self._id(), "gameId": self.game_id, "playerId": player.id}
        tail = {"username": player.username, "level": player.level}
        # Key orders follow the recorded payloads of each trade type.
        if kind == "buy":
            amount = self._amount()
            trade = {**head, "price": price, "type": kind, "qty": _r(amount / price), "tickIndex": tick,
                     "coin": "solana", "amount": amount, "leverage": rng.choice((1, 1, 1, 1, 2, 3, 4, 5, 10)),
                     **self._portions(amount), **tail}
        elif kind == "sell":
            qty = h.qty if rng.random() < 0.6 else _r(h.qty * rng.uniform(0.2, 0.8))
            amount = _r(qty * price)
            trade = {**head, "type": kind, "price": price, "tickIndex": tick, "coin": "solana", "amount": amount,
                     "qty": qty, **self._portions(amount), **tail}
        else:
            amount = self._amount() if kind == "short_open" else _r(short_value(h.short, price))
            trade = {**head, "price": price, "type": kind, "qty": 0, "tickIndex": tick, "coin": "solana",
                     "amount": amount, **tail}
        self.ledger.apply_trade(trade)
        self.events.append(Scheduled(at, "standard/newTrade", trade))

    def _sidebet(self, at: tuple[str, int], tick: int) -> None:
        player = self.rng.choice(self.traders)
        h = self.ledger.get(player.id)
        if h and h.sidebet:
            return
        bet = self.rng.choice((0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5))
        placed = {"playerId": player.id, "username": player.username, "gameId": self.game_id, "betAmount": bet,
                  "xPayout": SIDEBET_X, "coinAddress": SOL, **self._portions(bet), "timestamp": 0,
                  "type": "placed", "startedAtTick": tick, "end": tick + SIDEBET_WINDOW, "id": self._id()}
        self.ledger.apply_sidebet(placed)
        self.events.append(Scheduled(at, "newSideBet", placed))

    def _settle(self, tick: int) -> None:
        """Sidebets end at their window's last tick, or at the rug, which wins them (rug tick <= end)."""
        rug = len(self.prices) - 1
        for h in self.ledger.open_sidebets():
            bet = h.sidebet
            if tick < bet["end"] and tick < rug:
                continue
            won = tick == rug and rug <= bet["end"]
            stake = bet["betAmount"]
            payout = stake * SIDEBET_X if won else 0
            record = {"playerId": h.player.id, "gameId": self.game_id, "username": h.player.username,
                      "level": h.player.level, "betAmount": stake, "payout": payout, "profit": _r(payout - stake),
                      "xPayout": SIDEBET_X, "coinAddress": SOL, "endTick": bet["end"],
                      "startTick": bet["startedAtTick"], "tickIndex": tick, "price": self.prices[tick],
                      "timestamp": 0, "type": "payout", "id": self._id()}
            self.ledger.apply_sidebet(record)
            self.payouts.append(record)

    def _chat(self, at: tuple[str, int]) -> None:
        player = self.rng.choice(self.everyone)
        verified = self.rng.random() < 0.7
        self.events.append(Scheduled(at, "newChatMessage", {
            "playerId": player.id, "username": player.username, "level": player.level,
            "message": self.rng.choice(_CHAT), "timestamp": 0, "filtered": False, "role": None, "tag": None,
            "verified": verified, "discordUsername": player.username.lower() + "." if verified else None,
            "replyTo": None,
        }))
