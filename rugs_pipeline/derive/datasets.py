"""Pure derivations: one day's ``ws_event`` rows (Arrow) -> each frame-partitioned doc_type (Arrow).

A row of these belongs to the day of the frame it came from. Games (``game_tick``,
``complete_game``, ``games``) are partitioned by game instead: see ``games.py``.

They run as DuckDB SQL over the Arrow table, or over the Parquet files read in
place (``Frames``: a day need not fit in memory, and DuckDB spills to disk).
What they need of the big state frames is typed on ``ws_event`` at landing (schema
1.2.0), so deriving parses only the small frames and the few state frames with a
history or a leaderboard to read, with DuckDB's JSON reader, in parallel, without
building Python objects. Rows landed before 1.2.0 get the typed columns computed on
the way in, as landing computes them.
Every derivation is a full rebuild of its input, so the same input always gives
the same rows in the same order.

An event's payload is its last argument (a trace header may come first), read
from the frame text after the packet prefix (``42``, ``4312``, ...).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from rugs_pipeline import config
from rugs_pipeline.store import schema
from rugs_pipeline.store.compaction import merged_version
from rugs_pipeline.store.layout import naming_unreadable, parse_version, sql_list
from rugs_pipeline.store.versions import FRAME, TYPED_SINCE, typed_columns_sql

# An event frame's payload (its last argument) as JSON.
PAYLOAD = f"json_extract({FRAME}, '$[#-1]')"


# the envelope every derived row copies from its frame
ENVELOPE_COLUMNS = ("ts", "source", "session_id", "seq", "direction")
ENVELOPE = ", ".join(ENVELOPE_COLUMNS)


def envelope_of(alias: str) -> str:
    """SQL: the envelope columns of ``alias`` (a struct or table), by their names."""
    return ", ".join(f"{alias}.{c}" for c in ENVELOPE_COLUMNS)


def _payload_and(*keys: str) -> str:
    """SQL: an event frame's payload and its ``keys`` (JSON paths) as one JSON[], the payload first: one parse
    of the frame (``payload->>key`` would parse the payload again for every key)."""
    paths = ", ".join(["'$[#-1]'", *(f"'$[#-1].{k}'" for k in keys)])
    return f"json_extract({FRAME}, [{paths}])"


def _scan(columns: str, *conditions: str, clustered: bool) -> str:
    """SQL: ``columns`` of the ws rows that meet one of ``conditions`` (disjoint conjunctions).

    ``clustered``: the files are a compacted day's, whose row groups each hold one event
    (store.compaction). There it is a UNION ALL of one scan per condition: DuckDB pushes a
    conjunction's column filters into the Parquet reader, whose row-group statistics then skip the
    other events without decompressing their text (most of it the state frames'), which an OR across
    columns cannot. A landed file's one row group mixes every event: there each scan would decompress
    every file's text, so it is one scan with the conditions OR'ed.
    """
    if clustered:
        return "\n  UNION ALL\n  ".join(f"SELECT {columns} FROM ws WHERE {c}" for c in conditions)
    return f"SELECT {columns} FROM ws WHERE " + " OR ".join(f"({c})" for c in conditions)


_UNTYPED = "frame_kind = 'event' AND event_args IS NULL"  # an event frame without its typed columns
# the state frames the server sent (gameStateUpdate)
STATE_FRAMES = "frame_kind = 'event' AND event_name = 'gameStateUpdate' AND direction = 'received'"
_SIDEBET_EVENTS = "('newSideBet', 'currentSidebet', 'currentSidebetResult')"


def _player_action(clustered: bool) -> str:
    """Trades (dedup by trade id), sidebets (events and the finished games' history), and orders the client sent."""
    frames = _scan(f"{ENVELOPE}, event_name, {PAYLOAD} AS payload", "frame_kind = 'event' AND direction = 'sent'",
                   "frame_kind = 'event' AND direction = 'received' "
                   f"AND event_name IN ('standard/newTrade', {_SIDEBET_EVENTS[1:-1]})", clustered=clustered)
    return f"""
WITH frames AS MATERIALIZED (  -- the day's frames for every part below
  {frames}
), trades AS (
  SELECT {ENVELOPE}, payload, event_name,
         payload->>'id' AS trade_id, payload->>'type' AS action_type,
         payload->>'gameId' AS game_id, payload->>'playerId' AS player_id, payload->>'username' AS username,
         TRY_CAST(payload->>'price' AS DOUBLE) AS price, TRY_CAST(payload->>'tickIndex' AS BIGINT) AS tick,
         TRY_CAST(payload->>'amount' AS DOUBLE) AS amount, TRY_CAST(payload->>'qty' AS DOUBLE) AS qty,
         TRY_CAST(payload->>'leverage' AS DOUBLE) AS leverage, payload->>'coin' AS coin,
         TRY_CAST(payload->>'bonusPortion' AS DOUBLE) AS bonus_portion,
         TRY_CAST(payload->>'realPortion' AS DOUBLE) AS real_portion, TRY_CAST(payload->>'level' AS BIGINT) AS level
  FROM frames WHERE event_name = 'standard/newTrade' AND direction = 'received' AND (payload->>'id') IS NOT NULL
), live_sidebets AS (
  SELECT {ENVELOPE}, payload, event_name,
         coalesce(payload->>'id', payload->>'sidebetId') AS trade_id,
         'sidebet_' || coalesce(payload->>'type', 'placed') AS action_type,
         payload->>'gameId' AS game_id, payload->>'playerId' AS player_id, payload->>'username' AS username,
         TRY_CAST(payload->>'price' AS DOUBLE) AS price,
         TRY_CAST(coalesce(payload->>'startedAtTick', payload->>'startTick') AS BIGINT) AS tick,
         TRY_CAST(payload->>'betAmount' AS DOUBLE) AS amount,
         coalesce(payload->>'coinAddress', payload->>'coin') AS coin,
         TRY_CAST(coalesce(payload->>'end', payload->>'endTick') AS BIGINT) AS end_tick,
         TRY_CAST(payload->>'payout' AS DOUBLE) AS payout
  FROM frames WHERE event_name IN {_SIDEBET_EVENTS} AND direction = 'received'
), history AS (
  -- each finished game's id and sidebets (not its whole record: one per sidebet would be copied), from the
  -- state frames that carry a history (typed at landing: the others are not read). Each distinct record
  -- once, from the first frame that carried it: the ~20 frames that repeat it add only later duplicates.
  SELECT unnest(f), game->>'id' AS history_game, game->'$.globalSidebets' AS game_sidebets
  FROM (SELECT game, arg_min(struct_pack({ENVELOPE}), (ts, session_id, seq)) AS f
        FROM (SELECT {ENVELOPE}, unnest(json_extract({FRAME}, '$[#-1].gameHistory[*]')) AS game
              FROM ws WHERE {STATE_FRAMES} AND history_games IS NOT NULL)
        GROUP BY game)
), history_sidebets AS (
  SELECT {ENVELOPE}, sb AS payload, 'gameHistory.globalSidebets' AS event_name,
         sb->>'id' AS trade_id, 'sidebet_' || coalesce(sb->>'type', 'placed') AS action_type,
         coalesce(sb->>'gameId', history_game) AS game_id, sb->>'playerId' AS player_id, sb->>'username' AS username,
         TRY_CAST(sb->>'price' AS DOUBLE) AS price,
         TRY_CAST(coalesce(sb->>'startedAtTick', sb->>'startTick') AS BIGINT) AS tick,
         TRY_CAST(sb->>'betAmount' AS DOUBLE) AS amount, sb->>'coinAddress' AS coin,
         TRY_CAST(coalesce(sb->>'end', sb->>'endTick') AS BIGINT) AS end_tick,
         TRY_CAST(sb->>'payout' AS DOUBLE) AS payout
  FROM (SELECT *, unnest(CAST(game_sidebets AS JSON[])) AS sb FROM history)
), sidebets AS (
  SELECT * FROM live_sidebets UNION ALL SELECT * FROM history_sidebets
), orders AS (
  SELECT {ENVELOPE}, payload, event_name, event_name AS action_type,
         payload->>'gameId' AS game_id, payload->>'playerId' AS player_id,
         TRY_CAST(payload->>'price' AS DOUBLE) AS price, TRY_CAST(payload->>'tickIndex' AS BIGINT) AS tick,
         TRY_CAST(coalesce(payload->>'amount', payload->>'betAmount') AS DOUBLE) AS amount,
         TRY_CAST(payload->>'qty' AS DOUBLE) AS qty, TRY_CAST(payload->>'leverage' AS DOUBLE) AS leverage,
         payload->>'coin' AS coin
  FROM frames WHERE direction = 'sent' AND regexp_matches(event_name, '(?i)(order|sidebet|trade)')
), deduped AS (  -- by name: a column a part lacks is null in its rows
  SELECT * FROM trades QUALIFY row_number() OVER (PARTITION BY trade_id ORDER BY ts, session_id, seq) = 1
  UNION ALL BY NAME
  SELECT * FROM sidebets WHERE trade_id IS NOT NULL
  QUALIFY row_number() OVER (PARTITION BY trade_id, action_type ORDER BY ts, session_id, seq) = 1
  UNION ALL BY NAME
  SELECT * FROM orders
)
SELECT {ENVELOPE}, 'player_action' AS doc_type, payload::VARCHAR AS raw_json, game_id, player_id, username,
       event_name, action_type, trade_id, price, tick, amount, qty, leverage, coin, end_tick, payout,
       bonus_portion, real_portion, level
FROM deduped
-- a total order: one frame's gameHistory can hold a sidebet's placed and payout records under one id
ORDER BY ts, session_id, seq, trade_id, action_type
"""


_ENTRY_KEYS = ("id", "username", "positionQty", "avgCost", "pnl", "level")  # of a gameStatePlayerUpdate's entry
_SERVER_STATE_COLUMNS = f"""{ENVELOPE}, event_name,
         -- rugged frames carry gameHistory too (~170 KB): only two fields of the few rugged ones
         CASE WHEN event_name = 'gameStateUpdate'
              THEN json_extract({FRAME}, ['$[#-1].gameId', '$[#-1].leaderboard']) END AS v,
         CASE WHEN event_name = 'playerUpdate'
              THEN {_payload_and("id", "username", "cash", "positionQty", "avgCost", "cumulativePnL", "level")}
              WHEN event_name = 'gameStatePlayerUpdate'
              THEN {_payload_and("gameId", *(f"leaderboardEntry.{k}" for k in _ENTRY_KEYS))}
              END AS p"""


def _server_state(clustered: bool) -> str:
    """Player snapshots, and each finished game's final leaderboard (from its last rugged frame)."""
    frames = _scan(_SERVER_STATE_COLUMNS, "frame_kind = 'event' AND direction = 'received' "
                   "AND event_name IN ('playerUpdate', 'gameStatePlayerUpdate')",
                   f"{STATE_FRAMES} AND phase = 'rugged'", clustered=clustered)
    return f"""
WITH frames AS MATERIALIZED (  -- the day's frames for every part below
  {frames}
), player AS (
  SELECT {ENVELOPE}, p[1] AS payload, event_name, p[2]->>'$' AS player_id, p[3]->>'$' AS username,
         TRY_CAST(p[4]->>'$' AS DOUBLE) AS cash, TRY_CAST(p[5]->>'$' AS DOUBLE) AS position_qty,
         TRY_CAST(p[6]->>'$' AS DOUBLE) AS avg_cost, TRY_CAST(p[7]->>'$' AS DOUBLE) AS pnl,
         TRY_CAST(p[8]->>'$' AS BIGINT) AS level
  FROM frames WHERE event_name = 'playerUpdate'
), game_player AS (
  SELECT {ENVELOPE}, p[1] AS payload, event_name, p[2]->>'$' AS game_id, p[3]->>'$' AS player_id,
         p[4]->>'$' AS username, TRY_CAST(p[5]->>'$' AS DOUBLE) AS position_qty,
         TRY_CAST(p[6]->>'$' AS DOUBLE) AS avg_cost, TRY_CAST(p[7]->>'$' AS DOUBLE) AS pnl,
         TRY_CAST(p[8]->>'$' AS BIGINT) AS level
  FROM frames WHERE event_name = 'gameStatePlayerUpdate'
), final_frame AS (
  -- arg_max holds one frame per game, not all of them with their boards
  SELECT v[1]->>'$' AS game_id, arg_max(struct_pack({ENVELOPE}, leaderboard := v[2]), (ts, session_id, seq)) AS f
  FROM frames WHERE event_name = 'gameStateUpdate' AND v[2] IS NOT NULL
  GROUP BY game_id
), final_board AS (
  SELECT {envelope_of("f")}, entry AS payload, 'final_leaderboard' AS event_name, game_id,
         entry->>'id' AS player_id, entry->>'username' AS username,
         TRY_CAST(entry->>'positionQty' AS DOUBLE) AS position_qty, TRY_CAST(entry->>'avgCost' AS DOUBLE) AS avg_cost,
         TRY_CAST(entry->>'pnl' AS DOUBLE) AS pnl, TRY_CAST(entry->>'level' AS BIGINT) AS level
  FROM (SELECT *, unnest(CAST(f.leaderboard AS JSON[])) AS entry FROM final_frame)
)
SELECT {ENVELOPE}, 'server_state' AS doc_type, payload::VARCHAR AS raw_json, game_id, player_id, username,
       event_name, cash, position_qty, avg_cost, pnl, level
FROM (SELECT * FROM player UNION ALL BY NAME SELECT * FROM game_player UNION ALL BY NAME SELECT * FROM final_board)
WHERE player_id IS NOT NULL
ORDER BY ts, session_id, seq, player_id
"""


# recorder lifecycle, outages, parse errors, server notices. Since lifecycle version 2 the recorder
# writes one 'outage' record per outage when it ends, with its start and end (across reconnect
# attempts, crashes and midnight); older records (no "v") pair disconnect -> next handshake and
# crash -> restart here.
def _system_event(clustered: bool) -> str:
    frames = _scan(f"{ENVELOPE}, raw_json, event_name, frame_kind, parse_error, "
                   f"CASE WHEN frame_kind = 'event' THEN {PAYLOAD} END AS payload",
                   "frame_kind IN ('lifecycle', 'malformed', 'close', 'disconnect', 'connect_error')",
                   "frame_kind = 'event' AND event_name = 'maintenanceUpdate'", clustered=clustered)
    return f"""
WITH frames AS MATERIALIZED (  -- the few rows every part below needs
  {frames}
), life AS (
  SELECT {ENVELOPE}, raw_json, event_name, raw_json::JSON AS info
  FROM frames WHERE frame_kind = 'lifecycle'
), lifecycle AS (
  SELECT {ENVELOPE}, raw_json, event_name,
         CASE WHEN event_name = 'outage' THEN (info->>'cause') || coalesce(' (' || (info->>'ended_by') || ')', '')
              ELSE coalesce(info->>'reason', info->>'error', info->>'url') END AS message,
         make_timestamptz(TRY_CAST(info->>'start_ns' AS BIGINT) // 1000) AS start_ts,
         make_timestamptz(TRY_CAST(info->>'end_ns' AS BIGINT) // 1000) AS end_ts
  FROM life
), v1 AS (
  SELECT * FROM life WHERE (info->>'v') IS NULL
), downs AS (
  SELECT *, min(CASE WHEN event_name = 'handshake' THEN ts END) OVER (
           PARTITION BY session_id ORDER BY seq ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS back_ts
  FROM v1
), outages AS (
  SELECT {ENVELOPE}, raw_json, 'outage' AS event_name,
         'connection lost: ' || coalesce(info->>'reason', 'unknown') AS message, ts AS start_ts, back_ts AS end_ts
  FROM downs WHERE event_name = 'disconnected'
  UNION ALL
  SELECT {ENVELOPE}, raw_json, 'outage' AS event_name,
         'recorder down: session ' || (info->>'crashed_session') || ' stopped without sealing' AS message,
         make_timestamptz(TRY_CAST(info->>'last_ts_ns' AS BIGINT) // 1000) AS start_ts, ts AS end_ts
  FROM v1 WHERE event_name = 'recovered' AND (info->>'last_ts_ns') IS NOT NULL
), parse_errors AS (
  SELECT {ENVELOPE}, raw_json, 'parse_error' AS event_name, parse_error AS message
  FROM frames WHERE frame_kind = 'malformed'
), notices AS (
  SELECT {ENVELOPE}, payload::VARCHAR AS raw_json, event_name,
         coalesce(payload->>'message', payload::VARCHAR) AS message
  FROM frames WHERE frame_kind = 'event' AND event_name = 'maintenanceUpdate'
  UNION ALL
  SELECT {ENVELOPE}, raw_json, 'server_' || frame_kind AS event_name, raw_json AS message
  FROM frames WHERE frame_kind IN ('close', 'disconnect', 'connect_error')
), unioned AS (
  SELECT * FROM lifecycle UNION ALL BY NAME SELECT * FROM outages UNION ALL BY NAME SELECT * FROM parse_errors
  UNION ALL BY NAME SELECT * FROM notices
)
SELECT {ENVELOPE}, 'system_event' AS doc_type, raw_json, event_name, message, start_ts, end_ts,
       (epoch_us(end_ts) - epoch_us(start_ts)) / 1e6 AS duration_s
FROM unioned
ORDER BY ts, session_id, seq, event_name
"""

# each doc_type's SQL, by whether its input is a compacted day's (see _scan)
DERIVATIONS: dict[str, dict[bool, str]] = {
    name: {clustered: sql(clustered) for clustered in (False, True)}
    for name, sql in (("player_action", _player_action), ("server_state", _server_state),
                      ("system_event", _system_event))
}


BATCH_ROWS = 8192  # rows per Arrow batch of a streamed result


@dataclass(frozen=True)
class Frames:
    """``ws_event`` rows read in place: ``files``, plus the rows of ``head`` received before ``until``.

    ``filesystem``: the fsspec filesystem the paths are on (an s3 lake's), None for local files.
    """

    files: tuple[Path, ...]
    head: tuple[Path, ...] = ()
    until: datetime | None = None
    filesystem: object = None

    @property
    def clustered(self) -> bool:
        """Whether every file is one compaction wrote (row groups of one event each)."""
        return all(merged_version(f) is not None for f in self.files + self.head)

    def sql(self, versions: dict[str, str | None]) -> str:
        """SQL: the rows, with the typed columns computed for files older than 1.2.0 (``versions``: each file's)."""
        parts = [self._read(self.files, versions)] if self.files else []
        if self.head:
            parts.append(f"SELECT * FROM ({self._read(self.head, versions)}) "
                         f"WHERE ts < '{self.until.isoformat()}'::TIMESTAMPTZ")
        return " UNION ALL BY NAME ".join(parts) or "SELECT * FROM _no_frames"

    @staticmethod
    def _read(files: tuple[Path, ...], versions: dict[str, str | None]) -> str:
        """SQL: the rows of ``files``, each with every column of this code's version."""
        if {versions.get(str(f)) for f in files} == {schema.SCHEMA_VERSION}:
            # the common case, every file at this code's version: no column to reconcile between them
            return read_parquet(files, by_name=False)
        typed, untyped = [], []
        for f in files:
            (typed if (parse_version(versions.get(str(f))) or (0,)) >= TYPED_SINCE else untyped).append(f)
        parts = [read_parquet(typed)] if typed else []
        if untyped:
            parts.append(typed_columns_sql(f"{read_parquet(untyped)} UNION ALL BY NAME SELECT * FROM _no_frames"))
        # by name with an empty table of every column: files of older versions lack the newer columns
        return " UNION ALL BY NAME ".join([*parts, "SELECT * FROM _no_frames"])


def read_parquet(files: tuple[Path, ...] | list[str], by_name: bool = True) -> str:
    """SQL: the rows of ``files``, with each row's file in column ``filename``.

    ``by_name``: the files may differ in columns (a day part-way through a migration holds two schema versions).
    """
    return (f"SELECT * FROM read_parquet({sql_list(files)}, hive_partitioning = false, union_by_name = {str(by_name).lower()}, "
            "filename = true)")


def connection(ws_event: pa.Table | Frames) -> duckdb.DuckDBPyConnection:
    """DuckDB over ``ws_event`` as view ``ws``, with each row's file in ``filename`` (null for an Arrow table)."""
    con = duckdb.connect(config={"temp_directory": os.path.join(tempfile.gettempdir(), f"rugs-duckdb-{os.getpid()}")})
    memory = config.Settings.from_env().duckdb_memory
    try:
        con.execute("SET memory_limit = ?", [memory])
    except duckdb.Error as exc:
        con.close()
        raise config.ConfigError(f"RUGS_DUCKDB_MEMORY={memory!r} is not a memory size DuckDB accepts "
                         "(e.g. 1GiB, 512MB)") from exc
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    # a day's queries read the same files' footers again and again (thousands of files on a live day)
    con.execute("SET parquet_metadata_cache = true")
    # rows landed before 1.2.0 (and rows built by hand) get their typed columns here, as landing computes them
    if isinstance(ws_event, Frames):
        if ws_event.filesystem is not None:
            con.register_filesystem(ws_event.filesystem)
        con.register("_no_frames", schema.empty_table().append_column("filename", pa.array([], pa.string())))
        con.execute(f"CREATE VIEW ws AS {ws_event.sql(_file_versions(con, ws_event.files + ws_event.head))}")
    else:
        con.register("_ws_rows", schema.conform(ws_event))
        con.execute("CREATE VIEW ws AS "
                    + typed_columns_sql("SELECT *, NULL::VARCHAR AS filename FROM _ws_rows", refill=_UNTYPED))
    return con


def _clustered(ws_event: pa.Table | Frames) -> bool:
    return isinstance(ws_event, Frames) and ws_event.clustered


def _file_versions(con: duckdb.DuckDBPyConnection, files: tuple[Path, ...]) -> dict[str, str | None]:
    """Each file's schema version (footers only; the connection caches them for the scans)."""
    if not files:
        return {}
    found = dict(con.execute(f"SELECT file_name, decode(value) FROM parquet_kv_metadata({sql_list(files)}) "
                             f"WHERE decode(key) = '{schema.SCHEMA_VERSION_KEY.decode()}'").fetchall())
    return {str(f): found.get(str(f)) for f in files}


def naming_unreadable_frames(ws_event: pa.Table | Frames):
    """Inside: an error reading ``ws_event``'s files names the unreadable one (DuckDB's errors may not)."""
    if isinstance(ws_event, Frames):
        return naming_unreadable(ws_event.files + ws_event.head, ws_event.filesystem)
    return naming_unreadable(())


@contextmanager
def derived(doc_type: str, ws_event: pa.Table | Frames) -> Iterator[pa.RecordBatchReader]:
    """One doc_type derived from ``ws_event``, as a stream of batches (valid inside the ``with``)."""
    with naming_unreadable_frames(ws_event):
        con = connection(ws_event)
        try:
            yield con.sql(DERIVATIONS[doc_type][_clustered(ws_event)]).to_arrow_reader(BATCH_ROWS)
        finally:
            con.close()


def derive(doc_type: str, ws_event: pa.Table | Frames) -> pa.Table:
    """Derive one doc_type from ``ws_event`` rows; the result conforms to the schema."""
    with derived(doc_type, ws_event) as rows:
        return schema.conform(rows.read_all())


def derive_all(ws_event: pa.Table | Frames) -> dict[str, pa.Table]:
    with naming_unreadable_frames(ws_event):
        con = connection(ws_event)
        try:
            return {name: schema.conform(con.sql(sql[_clustered(ws_event)]).to_arrow_table())
                    for name, sql in DERIVATIONS.items()}
        finally:
            con.close()


