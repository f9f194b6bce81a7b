"""The registry of doc types: each dataset's name, partitioning rule, description, unique key, column rules
and metadata parts. The schema's ``DOC_TYPES``, the pandera models, the assets' descriptions, checks and
metadata, and the tests are generated from it: a new doc type touches this registry and its derivation.
It names pandera checks and metadata parts (``defs.assets.METADATA_PARTS``), importing neither library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

# The longest game measured lasts 1,815 ticks (~8 min) and a history stays in the feed for
# ten games (~12 min typical): half an hour of the next day holds what a day's games left.
NEXT_DAY_HEAD = timedelta(minutes=30)
TICK_SOURCES = ("observed", "partial_prices", "snapshot_prices", "game_history")  # in order of preference
FRAME, GAME = "frame", "game"  # a row's partition: the day of its frame, or the day in its game's id
PARTITION_RULES = {FRAME: "", GAME: (
    " Partition: the UTC day in the game id (the day the server created the game), so each game has one partition "
    "whatever frames, recorder sessions or days saw it; a day also reads the first "
    f"{int(NEXT_DAY_HEAD.total_seconds() // 60)} min of the next day's frames, where the end and the gameHistory of "
    "its last games arrive. A game first seen outside that span (a replay served live, a recorder with a wrong "
    "clock) goes to the day of its last frame.")}


@dataclass(frozen=True)
class Rule:
    """A column's invariant in a doc type: whether it may be null, and a pandera ``Check`` as (name, argument)."""

    nullable: bool
    check: tuple[str, object] | None = None


def required(**check: object) -> Rule:
    return Rule(False, next(iter(check.items()), None))


def optional(**check: object) -> Rule:
    return Rule(True, next(iter(check.items()), None))


@dataclass(frozen=True)
class DocType:
    name: str
    partition: str  # FRAME or GAME
    summary: str
    unique: tuple[str, ...] | None = None  # the key no two rows share
    rules: dict[str, Rule] = field(default_factory=dict)  # over the schema's types and nullability
    metadata: tuple[str, ...] = ()  # of the asset's metadata, beyond rows, games and files

    @property
    def description(self) -> str:
        return self.summary + PARTITION_RULES[self.partition]


_COUNTS = ("trade_count", "trader_count", "sidebets_placed", "sidebets_won", "observed_ticks", "filled_ticks",
           "price_conflicts")
REGISTRY = (
    DocType("ws_event", FRAME, "Every frame the recorder kept (received and sent), byte-exact, with its receive time "
            "in UTC; the recorder's lifecycle records too. Lands sealed spool segments exactly once.",
            unique=("session_id", "seq"), rules={"frame_kind": required(), "raw_json": required()}),
    DocType("game_tick", GAME, "One row per (game_id, tick): ticks 0..R of every game whose end was seen (R = the "
            "first rugged frame's tick, else the gameHistory's last), the ticks known so far of others. tick_source "
            "says where the price came from: observed (the tick's own frame; for R the rug frame), else filled from "
            "partial_prices, snapshot_prices or game_history, in that order of preference; price_conflicts counts the "
            "other prices sources gave for the tick. Post-rug broadcasts are not ticks.",
            unique=("game_id", "tick"),
            rules={"game_id": required(), "tick": required(ge=0), "price": required(gt=0), "is_rug_tick": required(),
                   "phase": required(isin=("active", "rugged")), "tick_source": required(isin=TICK_SOURCES),
                   "price_conflicts": required(ge=0)},
            metadata=("rug_ticks", "price_paths", "ticks_by_source")),
    DocType("player_action", FRAME, "Public trades (dedup by trade id), sidebets (live events and finished games' "
            "history), and orders the client sent.",
            rules={"action_type": required(), "tick": optional(ge=0), "price": optional(ge=0)},
            metadata=("rows_by_action_type",)),
    DocType("server_state", FRAME, "playerUpdate / gameStatePlayerUpdate snapshots and each finished game's final "
            "leaderboard.", rules={"player_id": required()}, metadata=("rows_by_event_name",)),
    DocType("system_event", FRAME, "Recorder lifecycle, outages with start and end, parse errors, and server notices.",
            rules={"event_name": required(), "duration_s": optional(ge=0)}, metadata=("outages", "rows_by_event_name")),
    DocType("complete_game", GAME, "One row per game with a gameHistory entry, deduplicated by game id over frames, "
            "recorder sessions and days (the first copy received): rug tick and crash price, tick count, "
            "peakMultiplier, end time (the server's), serverSeed and seed_verified = sha256(serverSeed) == the "
            "serverSeedHash the game's frames announced while it ran.",
            unique=("game_id",),
            rules={"game_id": required(), "tick": optional(ge=0),  # null tick: a history without prices
                   "tick_count": optional(ge=1), "peak_multiplier": optional(gt=0), "price_conflicts": required(ge=0)}),
    DocType("games", GAME, "One row per game of game_tick / complete_game, for reading first: start and end time, "
            "duration in ticks and seconds, rug tick and price, peak, trades, traders, volume (player_action of the "
            "day and the next, a trade id once), sidebets placed and won, observed vs filled ticks and whether the "
            "game is complete.",
            unique=("game_id",), rules={"game_id": required(), "volume": required(), "duration_s": optional(ge=0),
                                        "message": required(), **{name: required(ge=0) for name in _COUNTS}},
            metadata=("games_summary",)),
)
DOC_TYPES = {d.name: d for d in REGISTRY}
FRAME_DERIVED = tuple(d.name for d in REGISTRY if d.partition == FRAME and d.name != "ws_event")  # derive/datasets.py
GAME_DERIVED = tuple(d.name for d in REGISTRY if d.partition == GAME)  # derive/games.py
