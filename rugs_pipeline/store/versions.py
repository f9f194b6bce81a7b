"""The schema registry: every version's Arrow schema, pandera models and how to migrate from the previous one.

A change that only appends nullable columns is a minor bump: a consumer of the older minor reads
the new files unchanged (it never names the new columns). Anything else (a column removed,
renamed, retyped, moved, or made non-nullable) is a major bump, which old consumers refuse.
``classify_change`` says which a change is; the tests hold each declared ``bump`` to it.

Migrating a store to a version rewrites its ``ws_event`` files with ``upgrade_ws_event`` (a pure
Arrow -> Arrow function of the previous version's rows) and re-derives every derived partition
from them (``store/migration.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
from pandera.polars import DataFrameSchema
import pyarrow as pa

from rugs_pipeline.store import schema
from rugs_pipeline.store.models import pandera_schema


def classify_change(old: pa.Schema, new: pa.Schema) -> str:
    """``"none"``, ``"minor"`` (nullable columns appended) or ``"major"`` (anything else), from the columns alone."""
    def columns(s: pa.Schema) -> list[tuple]:
        return [(f.name, f.type, f.nullable) for f in s]

    before, after = columns(old), columns(new)
    if after == before:
        return "none"
    if after[:len(before)] == before and all(f.nullable for f in list(new)[len(before):]):
        return "minor"
    return "major"


@dataclass(frozen=True)
class SchemaVersion:
    version: str
    schema: pa.Schema
    bump: str  # from the previous version: "initial", "minor" or "major"
    # the previous version's ws_event rows -> this version's (None for the first version)
    upgrade_ws_event: Callable[[pa.Table], pa.Table] | None
    summary: str

    def pandera(self, doc_type: str) -> DataFrameSchema:
        return pandera_schema(doc_type, self.schema)


FRAME = "substr(raw_json, strpos(raw_json, '['))"  # an event frame's JSON array
_GSU = "gameStateUpdate"


@dataclass(frozen=True)
class Typed:
    """A ``ws_event`` column computed from its frame: ``sql`` over ``{0}, {1}, ...``, the payload's ``keys`` as JSON.

    ``event``: the event whose frames carry it; None for every event frame (``sql`` then reads the frame itself).
    """

    column: str
    event: str | None
    keys: tuple[str, ...]
    sql: str


def _key(column: str, event: str, key: str, kind: str) -> Typed:
    """One payload key as ``kind``; null when absent or not of that type."""
    return Typed(column, event, (key,), "{0}->>'$'" if kind == "VARCHAR" else f"TRY_CAST({{0}} AS {kind})")


# json_extract writes its values minified: an array's text starts with "[" (json_type would parse it again)
_LENGTH = "CASE WHEN starts_with({0}::VARCHAR, '[') THEN json_array_length({0}) END"
# rugged wins over active (the rug frame says both); a stopped game is presale once pre-round buys open
_PHASE = ("CASE WHEN TRY_CAST({0} AS BOOLEAN) THEN 'rugged' WHEN TRY_CAST({1} AS BOOLEAN) THEN 'active' "
          "WHEN TRY_CAST({2} AS BOOLEAN) THEN 'presale' WHEN {1} IS NOT NULL OR {3} IS NOT NULL THEN 'cooldown' END")

# 1.1.0: fields of gameStateUpdate / newTrade payloads the derived datasets need
TYPED_1_1_0 = (
    _key("connected_players", _GSU, "connectedPlayers", "BIGINT"),
    _key("game_version", _GSU, "gameVersion", "VARCHAR"),
    _key("bonus_portion", "standard/newTrade", "bonusPortion", "DOUBLE"),
    _key("real_portion", "standard/newTrade", "realPortion", "DOUBLE"),
    _key("level", "standard/newTrade", "level", "BIGINT"),
)
# 1.2.0: everything the game derivations read of a gameStateUpdate but its leaderboard, history and snapshot,
# so that deriving a day parses those few frames, not the day's GBs of state (the 1.0.0 columns tick, price,
# phase, cooldown_timer and server_seed_hash are filled on ws_event rows from 1.2.0 on)
TYPED_1_2_0 = (
    _key("tick", _GSU, "tickCount", "BIGINT"),
    _key("price", _GSU, "price", "DOUBLE"),
    Typed("phase", _GSU, ("rugged", "active", "allowPreRoundBuys", "cooldownTimer"), _PHASE),
    _key("cooldown_timer", _GSU, "cooldownTimer", "BIGINT"),
    _key("server_seed_hash", _GSU, "provablyFair.serverSeedHash", "VARCHAR"),
    Typed("partial_prices", _GSU, ("partialPrices",), "{0}::VARCHAR"),
    Typed("history_games", _GSU, ("gameHistory",), _LENGTH),
    Typed("snapshot_ticks", _GSU, ("prices",), _LENGTH),
    Typed("event_args", None, (), f"json_array_length({FRAME}) - 1"),
)
TYPED = TYPED_1_1_0 + TYPED_1_2_0
TYPED_SINCE = (1, 2, 0)  # files of this version on hold every typed column


def typed_columns_sql(source: str, typed: tuple[Typed, ...] = TYPED, refill: str | None = None) -> str:
    """SQL over the ``ws_event`` rows of ``source`` computing the ``typed`` columns from each frame.

    One parse per frame, and only of the frames of an event that has typed columns. ``refill``: a
    condition; only rows meeting it are computed, the others keep their values.
    """
    guard = f" AND ({refill})" if refill else ""
    parsed, replaced, helpers = [], [], []
    for n, event in enumerate(dict.fromkeys(t.event for t in typed)):
        fields = [t for t in typed if t.event == event]
        if event is None:  # read from the frame itself, no payload keys
            values = {}
        else:
            keys = list(dict.fromkeys(k for t in fields for k in t.keys))
            paths = ", ".join(f"'$[#-1].{k}'" for k in keys)
            # try(): a frame the feed garbled stays null
            parsed.append(f"CASE WHEN frame_kind = 'event' AND event_name = '{event}'{guard} "
                          f"THEN try(json_extract({FRAME}, [{paths}])) END AS _v{n}")
            helpers.append(f"_v{n}")
            values = {k: f"_v{n}[{i}]" for i, k in enumerate(keys, 1)}
        for t in fields:
            expr = t.sql.format(*(values[k] for k in t.keys))
            if event is None:
                expr = f"CASE WHEN frame_kind = 'event' THEN try({expr}) END"
            replaced.append(f"CASE WHEN {refill} THEN {expr} ELSE {t.column} END AS {t.column}" if refill
                            else f"{expr} AS {t.column}")
    cols = ", ".join(t.column for t in typed)
    inner = f"SELECT *, {', '.join(parsed)} FROM ({source})" if parsed else f"SELECT * FROM ({source})"
    return f"SELECT * EXCLUDE ({', '.join([cols, *helpers])}), {', '.join(replaced)} FROM ({inner})"


_TYPED_SQL = {typed: typed_columns_sql("SELECT * FROM t", typed) for typed in (TYPED, TYPED_1_1_0, TYPED_1_2_0)}


_local = threading.local()


def fill_typed_columns(ws_event: pa.Table, typed: tuple[Typed, ...] = TYPED) -> pa.Table:
    """``ws_event`` rows (of any 1.x version) with the ``typed`` columns computed from their ``raw_json``.

    Landing (every typed column) and the migration (each version's) both use it, so new and
    migrated files hold the same values.
    """
    # Called once per landed segment or migrated file: opening a DuckDB connection each time
    # cost twice the query. One per thread (a connection is not shared between threads).
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
    con.register("t", schema.conform(ws_event))
    try:
        return schema.conform(con.sql(_TYPED_SQL[typed]).to_arrow_table())
    finally:
        con.unregister("t")


VERSIONS = (
    SchemaVersion("1.0.0", schema.arrow_schema(schema.COLUMNS_1_0_0), "initial", None,
                  "one shared schema for every doc_type"),
    SchemaVersion("1.1.0", schema.arrow_schema(schema.COLUMNS_1_1_0), "minor",
                  lambda rows: fill_typed_columns(rows, TYPED_1_1_0),
                  "connected_players, game_version, bonus_portion, real_portion, level: typed, not dug out of raw_json"),
    SchemaVersion("1.2.0", schema.arrow_schema(schema.COLUMNS_1_2_0), "minor",
                  lambda rows: fill_typed_columns(rows, TYPED_1_2_0),
                  "ws_event gameStateUpdate rows typed (tick, price, phase, cooldown_timer, server_seed_hash, "
                  "partial_prices, history_games, snapshot_ticks) and every event's event_args: deriving a day "
                  "parses only its history and snapshot frames"),
)
CURRENT = VERSIONS[-1]
BY_VERSION = {v.version: v for v in VERSIONS}


def readable(version: object) -> bool:
    """A version this code reads and validates: one of the registry's (same major, not newer than ours)."""
    return version in BY_VERSION
