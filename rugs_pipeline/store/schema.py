"""The current schema (1.2.0): one Arrow schema shared by every doc_type.

DuckDB binds a glob over several doc_types from the files' columns, so every
doc_type carries every column (unused ones are null). The envelope comes first,
then typed columns that consumers would otherwise dig out of ``raw_json``.
Each version's columns are kept here; ``versions.py`` is the registry of versions.
"""

from __future__ import annotations

import pyarrow as pa

from rugs_pipeline.store import doctypes

SCHEMA_VERSION = "1.2.0"
SCHEMA_VERSION_KEY = b"rugs_schema_version"
DOC_TYPE_KEY = b"rugs_doc_type"

SOURCES = ("cdp", "public_ws", "replay", "ui")
DIRECTIONS = ("received", "sent")
DOC_TYPES = tuple(doctypes.DOC_TYPES)  # the registry's (doctypes.py)
TICK_SOURCES = doctypes.TICK_SOURCES  # where a game_tick row's price came from, in order of preference

TS = pa.timestamp("us", tz="UTC")

# (name, type, nullable, description)
COLUMNS_1_0_0: list[tuple[str, pa.DataType, bool, str]] = [
    ("ts", TS, False, "receive time at the socket (UTC); derived rows keep their frame's"),
    ("source", pa.string(), False, "cdp | public_ws | replay | ui"),
    ("doc_type", pa.string(), False, "dataset name, equal to the doc_type= folder"),
    ("session_id", pa.string(), False, "recorder run (or import) that captured the frame"),
    ("seq", pa.int64(), False, "gap-free position of the record within its session"),
    ("direction", pa.string(), True, "received | sent; null for the recorder's own lifecycle records"),
    ("raw_json", pa.string(), True, "ws_event: the frame as received; derived: the payload it came from"),
    ("game_id", pa.string(), True, "YYYYMMDD-<16 hex>"),
    ("player_id", pa.string(), True, "did:privy:..."),
    ("username", pa.string(), True, "player's display name"),
    ("event_name", pa.string(), True, "Socket.IO event name, or the record's kind for non-event rows"),
    ("frame_kind", pa.string(), True, "event | ack | open | ping | pong | connect | close | malformed | lifecycle ..."),
    ("is_rebuilt", pa.bool_(), True, "frame rebuilt from a decoded recording, not captured on the wire"),
    ("parse_error", pa.string(), True, "why a malformed frame could not be interpreted"),
    ("price", pa.float64(), True, "price multiplier"),
    ("tick", pa.int64(), True, "game tick (tickCount / tickIndex / sidebet start tick)"),
    ("phase", pa.string(), True, "cooldown | presale | active | rugged"),
    ("is_rug_tick", pa.bool_(), True, "game_tick: this tick is the rug tick R"),
    ("tick_source", pa.string(), True, "game_tick: observed | partial_prices | snapshot_prices | game_history"),
    ("tick_count", pa.int64(), True, "game length in ticks (R + 1)"),
    ("peak_multiplier", pa.float64(), True, "highest price of the game"),
    ("server_seed", pa.string(), True, "revealed provably-fair server seed"),
    ("server_seed_hash", pa.string(), True, "server seed hash announced while the game ran"),
    ("seed_verified", pa.bool_(), True, "sha256(server_seed) == server_seed_hash"),
    ("price_conflicts", pa.int64(), True, "ticks whose sources disagree on the price"),
    ("cooldown_timer", pa.int64(), True, "ms left before the next game starts"),
    ("action_type", pa.string(), True, "buy | sell | short_open | short_close | sidebet_* | <sent order>"),
    ("trade_id", pa.string(), True, "trade or sidebet id (dedup key)"),
    ("amount", pa.float64(), True, "SOL amount"),
    ("qty", pa.float64(), True, "token quantity"),
    ("leverage", pa.float64(), True, "buy leverage"),
    ("coin", pa.string(), True, "coin traded"),
    ("cash", pa.float64(), True, "player cash (SOL)"),
    ("position_qty", pa.float64(), True, "player position (tokens)"),
    ("avg_cost", pa.float64(), True, "player average cost"),
    ("pnl", pa.float64(), True, "player profit and loss"),
    ("end_tick", pa.int64(), True, "sidebet window end tick (inclusive)"),
    ("payout", pa.float64(), True, "sidebet payout"),
    ("trade_count", pa.int64(), True, "games: trades in the game"),
    ("trader_count", pa.int64(), True, "games: distinct traders"),
    ("volume", pa.float64(), True, "games: SOL traded"),
    ("sidebets_placed", pa.int64(), True, "games: sidebets placed"),
    ("sidebets_won", pa.int64(), True, "games: sidebets that paid out"),
    ("observed_ticks", pa.int64(), True, "games: ticks seen live"),
    ("filled_ticks", pa.int64(), True, "games: ticks filled from partialPrices, snapshot or history"),
    ("start_ts", TS, True, "system_event: outage or episode start"),
    ("end_ts", TS, True, "system_event: outage or episode end"),
    ("duration_s", pa.float64(), True, "system_event: end_ts - start_ts in seconds"),
    ("message", pa.string(), True, "human-readable detail"),
]

# 1.1.0: fields of gameStateUpdate / newTrade payloads the derived datasets need, typed (appended, nullable)
COLUMNS_1_1_0 = COLUMNS_1_0_0 + [
    ("connected_players", pa.int64(), True, "gameStateUpdate connectedPlayers: players connected to the server"),
    ("game_version", pa.string(), True, "gameStateUpdate / gameHistory gameVersion (e.g. v3)"),
    ("bonus_portion", pa.float64(), True, "newTrade bonusPortion: part of the amount paid from bonus balance"),
    ("real_portion", pa.float64(), True, "newTrade realPortion: part of the amount paid in real SOL"),
    ("level", pa.int64(), True, "trader's level (newTrade, leaderboard entry)"),
]
# 1.2.0: what the game derivations read of a gameStateUpdate, typed on ws_event rows at landing (appended, nullable)
COLUMNS_1_2_0 = COLUMNS_1_1_0 + [
    ("partial_prices", pa.string(), True, "ws_event gameStateUpdate partialPrices (the last <= 5 ticks' prices), as JSON"),
    ("history_games", pa.int64(), True, "ws_event gameStateUpdate: entries in its gameHistory (null: none sent)"),
    ("snapshot_ticks", pa.int64(), True, "ws_event gameStateUpdate: entries in its prices snapshot (null: none sent)"),
    ("event_args", pa.int64(), True, "ws_event event frame: arguments after the event name (2: a trace header first)"),
]
_COLUMNS = COLUMNS_1_2_0


def arrow_schema(columns: list[tuple[str, pa.DataType, bool, str]]) -> pa.Schema:
    return pa.schema(
        [pa.field(name, dtype, nullable=nullable, metadata={"description": desc}) for name, dtype, nullable, desc in columns]
    )


SCHEMA = arrow_schema(_COLUMNS)
COLUMNS = tuple(SCHEMA.names)
DESCRIPTIONS = {name: desc for name, _, _, desc in _COLUMNS}


def conform(table: pa.Table, target: pa.Schema = SCHEMA) -> pa.Table:
    """Return ``table`` with exactly ``target``'s columns, in order; missing columns become null.

    Raises ``ValueError`` naming the column when a value cannot take its schema type.
    """
    arrays = []
    for fld in target:
        if fld.name in table.column_names:
            col = table.column(fld.name)
            if col.type != fld.type:
                try:
                    col = col.cast(fld.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise ValueError(f"column {fld.name!r} cannot be {fld.type}: {exc}") from exc
            arrays.append(col)
        else:
            arrays.append(pa.nulls(table.num_rows, fld.type))
    return pa.Table.from_arrays(arrays, schema=target)


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def manifest_fields(target: pa.Schema = SCHEMA) -> list[dict[str, object]]:
    return [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in target]
