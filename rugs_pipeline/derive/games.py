"""Games rebuilt whole: every tick 0..R with its provenance, each game's history record, a summary.

The feed shows one game's prices several times over (RUGS_FEED.md). A tick's price comes
from the first of these sources that has it, the first frame received within a source:

1. ``observed``: the tick's own ``gameStateUpdate`` (for tick R, the rug frame: the crash price);
2. ``partial_prices``: a later tick frame's ``partialPrices`` window (the last <= 5 ticks);
3. ``snapshot_prices``: the on-connect snapshot's ``prices`` (the running game so far);
4. ``game_history``: the finished game's ``gameHistory[].prices`` (ticks 0..R), sent again with
   each of the next ten games, so a capture that joined mid-game, or missed frames, still gets
   the whole game once the history arrives.

Every tick any source knows becomes one row; a value seen for the tick that differs from
another counts in ``price_conflicts``, nothing is dropped silently. The rug tick R is the
first rugged frame's (read from its price window: post-rug broadcasts count ``tickCount`` on
past R), else ``len(prices) - 1`` of the history; nothing after R is a tick.

Partition rule: a game belongs to the UTC day in its id (``YYYYMMDD-<hex>``, the day the
server created it). Every frame that names a game carries that id, so all recorder sessions,
frames and days agree on the game's one partition. A game's frames start on that day, but
its end and its history (repeated for the next ten games) can fall after midnight, so a day
is rebuilt from its own frames plus the first ``NEXT_DAY_HEAD`` of the next day's. A game
whose first frame is not within that span was not captured live on its id's day (a replay
served live, a recorder with a wrong clock, an id without a date): it belongs to the day of
its last frame, which every day that sees part of it agrees on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import pyarrow as pa

from rugs_pipeline.derive.datasets import (
    BATCH_ROWS, ENVELOPE, FRAME, PAYLOAD, STATE_FRAMES, Frames, connection, envelope_of, naming_unreadable_frames,
    read_parquet,
)
from rugs_pipeline.store import schema
from rugs_pipeline.store.doctypes import NEXT_DAY_HEAD
from rugs_pipeline.store.layout import sql_literal

_HISTORY = json.dumps({
    "id": "VARCHAR", "timestamp": "BIGINT", "peakMultiplier": "DOUBLE", "prices": "DOUBLE[]", "gameVersion": "VARCHAR",
    "provablyFair": {"serverSeed": "VARCHAR", "serverSeedHash": "VARCHAR"},
})

FIRST_RECEIVED = "ts, session_id, seq"  # "first received": a total order over frames

# Each received gameStateUpdate: its fields typed at landing (1.2.0), only its snapshot prices parsed (the
# on-connect frames). The payload text stays in ws (joined back for observed ticks).
_PARSE = [
    f"""CREATE TEMP TABLE gsu AS
    SELECT {ENVELOPE}, filename, game_id, tick AS tick_count, price, phase IN ('active', 'rugged') AS live,
           phase = 'rugged' AS rugged, cooldown_timer, TRY_CAST(w[1] AS BIGINT) AS window_end,
           TRY_CAST(w[2] AS MAP(VARCHAR, DOUBLE)) AS window_prices, prices, server_seed_hash AS seed_hash,
           connected_players, game_version, event_args <= 1 AS two_elements  -- no trace header before the payload
    FROM (SELECT *, json_extract(partial_prices, ['$.endTick', '$.values']) AS w FROM ws WHERE {STATE_FRAMES})
    -- the frame text only of the few snapshots: a query that reads it for one row of a row group decompresses all
    LEFT JOIN (SELECT session_id, seq, TRY_CAST(json_extract({FRAME}, '$[#-1].prices') AS DOUBLE[]) AS prices
               FROM ws WHERE {STATE_FRAMES} AND snapshot_ticks IS NOT NULL) USING (session_id, seq)""",
    # Each finished game's record: a record is repeated by the ~20 state frames around the next ten rugs, so each
    # distinct text is parsed once, with the first frame that carried it and the last time it was seen.
    f"""CREATE TEMP TABLE history AS
    SELECT unnest(f), last_ts, entry, json_transform(entry, '{_HISTORY}') AS h
    FROM (SELECT entry::VARCHAR AS entry, arg_min(struct_pack({ENVELOPE}), ({FIRST_RECEIVED})) AS f, max(ts) AS last_ts
          FROM (SELECT {ENVELOPE}, unnest(json_extract({FRAME}, '$[#-1].gameHistory[*]')) AS entry
                FROM ws WHERE {STATE_FRAMES} AND history_games IS NOT NULL)
          GROUP BY entry)""",
    # Every price any source gives for a (game, tick), ranked by source. Live sources count only from frames
    # of a running or rugged game: a presale frame's window {"0": 1} is the price tick 0 will have, not a tick.
    f"""CREATE TEMP TABLE cand AS
    WITH frames AS (
      -- a rugged frame's price is the crash price of the tick its price window ends at (R): post-rug
      -- broadcasts count tickCount on to R+1..R+3, which would invent ticks that never existed. An
      -- on-connect snapshot taken after the rug carries the whole history (prices, ticks 0..R) instead.
      SELECT {ENVELOPE}, game_id, price, coalesce(rugged, false) AS rugged, cooldown_timer, connected_players, game_version,
             two_elements, filename,
             CASE WHEN rugged AND window_end BETWEEN 0 AND tick_count THEN window_end
                  WHEN rugged AND len(prices) BETWEEN 1 AND tick_count + 1 THEN len(prices) - 1
                  ELSE tick_count END AS tick
      -- presale frames repeat tickCount 0 with active=false: not ticks
      FROM gsu WHERE tick_count >= 0 AND live
    ), windows AS (
      SELECT {ENVELOPE}, game_id, unnest(map_keys(window_prices)) AS k, unnest(map_values(window_prices)) AS price
      FROM gsu WHERE window_prices IS NOT NULL AND live
    ), snapshots AS (
      SELECT {ENVELOPE}, game_id, generate_subscripts(prices, 1) - 1 AS tick, unnest(prices) AS price
      FROM gsu WHERE prices IS NOT NULL AND live
    ), histories AS (  -- each differing copy of a game's history once, from the first frame that sent it
      SELECT {ENVELOPE}, h.id AS game_id, generate_subscripts(h.prices, 1) - 1 AS tick, unnest(h.prices) AS price,
             h.gameVersion AS game_version
      FROM history WHERE h.prices IS NOT NULL
      QUALIFY row_number() OVER (PARTITION BY h.id, h.prices ORDER BY {FIRST_RECEIVED}) = 1
    ), all_sources AS (
      -- by name: the frame's connectedPlayers and gameVersion only where the row is that frame's own tick (or
      -- history); an observed tick's file: where game_tick reads its payload
      SELECT {ENVELOPE}, game_id, tick, price, 0 AS rank, 'observed' AS tick_source, rugged, cooldown_timer,
             connected_players, game_version, two_elements, filename FROM frames
      UNION ALL BY NAME
      SELECT {ENVELOPE}, game_id, TRY_CAST(k AS BIGINT) AS tick, price, 1 AS rank, 'partial_prices' AS tick_source,
             false AS rugged
      FROM windows
      UNION ALL BY NAME
      SELECT {ENVELOPE}, game_id, tick, price, 2 AS rank, 'snapshot_prices' AS tick_source, false AS rugged FROM snapshots
      UNION ALL BY NAME
      SELECT {ENVELOPE}, game_id, tick, price, 3 AS rank, 'game_history' AS tick_source, false AS rugged, game_version
      FROM histories
    )
    SELECT * FROM all_sources WHERE game_id IS NOT NULL AND tick >= 0 AND isfinite(price) AND price > 0""",
    # Each game's rug tick and partition day; only the games of the day asked for are kept.
    f"""CREATE TEMP TABLE games AS
    WITH mentions AS (
      SELECT game_id, ts FROM cand
      UNION ALL SELECT h.id, ts FROM history WHERE h.id IS NOT NULL
      UNION ALL SELECT h.id, last_ts FROM history WHERE h.id IS NOT NULL
    ), live_rug AS (
      SELECT game_id, min(tick) AS rug_tick FROM cand WHERE rugged GROUP BY game_id
    ), history_rug AS (
      SELECT h.id AS game_id, arg_min(len(h.prices) - 1, ({FIRST_RECEIVED})) AS rug_tick
      FROM history WHERE len(h.prices) > 0 GROUP BY h.id
    )
    SELECT game_id, coalesce(live_rug.rug_tick, history_rug.rug_tick) AS rug_tick
    FROM (
      SELECT game_id, min(ts) AS first_ts, max(ts) AS last_ts,
             CASE WHEN regexp_matches(game_id, '^[0-9]{{8}}-') THEN TRY_STRPTIME(left(game_id, 8), '%Y%m%d')::DATE END AS id_day
      FROM mentions GROUP BY game_id
    ) LEFT JOIN live_rug USING (game_id) LEFT JOIN history_rug USING (game_id)
    WHERE getvariable('day') IS NULL OR getvariable('day') =
      CASE WHEN first_ts >= id_day AND first_ts < id_day + INTERVAL 1 DAY + getvariable('head') THEN id_day
           ELSE last_ts::DATE END""",
    # one row per (game, tick): the preferred candidate, and how many other prices were given for it
    # (an aggregate, not a window: a day has millions of candidates)
    # (the chosen candidate's row id, not the whole candidate: carrying every column of ~3 M candidates
    # through the aggregate was most of its cost)
    f"""CREATE TEMP TABLE ticks AS
    SELECT cand.*, rug_tick, price_conflicts
    FROM cand JOIN (SELECT g.rug_tick, count(DISTINCT c.price) - 1 AS price_conflicts,
                           -- for tick R the rug frame first (its price is the crash price)
                           arg_min(c.rowid, (c.rank, NOT (c.rugged AND c.tick = g.rug_tick),
                                             {', '.join('c.' + k for k in FIRST_RECEIVED.split(', '))})) AS chosen
                    FROM cand c JOIN games g USING (game_id)
                    WHERE g.rug_tick IS NULL OR c.tick <= g.rug_tick
                    GROUP BY c.game_id, c.tick, g.rug_tick) t ON cand.rowid = t.chosen""",
]

# An observed tick's payload: for the plain frame ``42["gameStateUpdate",{...}]`` it is cut from the
# text as received (parsing ~5 KB of leaderboard again per tick would cost as much as the first
# parse); any other shape (a trace header, an escaped name, whitespace) is re-serialized.
_PLAIN = '42["gameStateUpdate",'
_PAYLOAD_TEXT = f"""CASE
         WHEN t.two_elements AND starts_with(raw_json, '{_PLAIN}{{') AND ends_with(raw_json, '}}]')
         THEN substring(raw_json, {len(_PLAIN) + 1}, length(raw_json) - {len(_PLAIN) + 1})
         ELSE ({PAYLOAD})::VARCHAR END"""

# game_tick, in parts of ~TICK_PART_ROWS ticks, in order: DuckDB's sort does not spill rows as wide as a
# tick with its payload, so a day's ticks sorted at once would all have to fit in memory. A part is
# a range of the output order; its frames are those of its (session_id, seq) range, read from the
# files its observed ticks came from (each part scanning every file of the day cost ~1.5 s of
# file opening per part), whose row-group statistics let DuckDB skip the rest of each file.
TICK_PART_ROWS = 100_000
_TICK_PARTS = """CREATE TEMP TABLE tick_parts AS
    SELECT *, (row_number() OVER (ORDER BY session_id, seq, game_id, tick) - 1) // $rows AS part FROM ticks"""
_PART_BOUNDS = """SELECT part, min(session_id), max(session_id), min(seq), max(seq),
    min(seq) FILTER (WHERE session_id = first_session), max(seq) FILTER (WHERE session_id = last_session),
    list(DISTINCT filename ORDER BY filename) FILTER (WHERE tick_source = 'observed') AS files,
    -- an Arrow table's rows have no file: then the part's frames are found in ws
    bool_or(tick_source = 'observed' AND filename IS NULL) AS unfiled
    FROM (SELECT *, min(session_id) OVER p AS first_session, max(session_id) OVER p AS last_session
          FROM tick_parts WINDOW p AS (PARTITION BY part))
    GROUP BY part ORDER BY part"""

def _part_query(source: str, frames: str, part: int) -> str:
    """SQL: game_tick's rows of tick part ``part``, their frames those of ``source`` that meet ``frames``."""
    return f"""
SELECT {envelope_of("t")}, 'game_tick' AS doc_type,
       -- observed ticks keep their frame's payload; a filled tick's frame is found by (session_id, seq)
       CASE WHEN t.tick_source = 'observed' THEN {_PAYLOAD_TEXT} END AS raw_json,
       t.game_id, 'gameStateUpdate' AS event_name, t.price, t.tick,
       CASE WHEN t.tick = t.rug_tick THEN 'rugged' ELSE 'active' END AS phase,
       coalesce(t.tick = t.rug_tick, false) AS is_rug_tick, t.tick_source, t.price_conflicts,
       t.cooldown_timer, t.connected_players, t.game_version
-- the frames are the probe side: the join's hash table holds the part's ticks, not frame text
FROM (SELECT session_id, seq, raw_json FROM ({source}) WHERE event_name = 'gameStateUpdate' AND {frames}) w
  RIGHT JOIN (SELECT * FROM tick_parts WHERE part = {part}) t
  ON t.tick_source = 'observed' AND w.session_id = t.session_id AND w.seq = t.seq
ORDER BY t.session_id, t.seq, t.game_id, t.tick
"""


def _part_frames(first_session: str, last_session: str, lo: int, hi: int, first_lo: int, last_hi: int) -> str:
    """SQL: the frames of a part's (session_id, seq) range."""
    if first_session == last_session:
        return f"session_id = {sql_literal(first_session)} AND seq BETWEEN {lo} AND {hi}"
    # the first session from first_lo on, the last up to last_hi, every session between
    return (f"session_id BETWEEN {sql_literal(first_session)} AND {sql_literal(last_session)} "
            f"AND (session_id <> {sql_literal(first_session)} OR seq >= {first_lo}) "
            f"AND (session_id <> {sql_literal(last_session)} OR seq <= {last_hi})")


def _game_tick(con: duckdb.DuckDBPyConnection) -> pa.RecordBatchReader:
    """game_tick from the connection's ``ticks``, one part after the other (see TICK_PART_ROWS)."""
    con.execute(_TICK_PARTS, {"rows": TICK_PART_ROWS})
    queries = []
    for part, *bounds, files, unfiled in con.sql(_PART_BOUNDS).fetchall():
        # (session_id, seq) names one frame: the files hold no other frame of the part's ticks
        source = "SELECT * FROM ws" if unfiled or not files else read_parquet(files)
        queries.append(_part_query(source, _part_frames(*bounds) if files or unfiled else "false", part))
    first = con.sql(queries[0] if queries else _part_query("SELECT * FROM ws", "false", -1)).to_arrow_reader(BATCH_ROWS)

    def batches() -> Iterator[pa.RecordBatch]:
        yield from first
        for query in queries[1:]:  # each started when the one before is read
            yield from con.sql(query).to_arrow_reader(BATCH_ROWS)

    return pa.RecordBatchReader.from_batches(first.schema, batches())


# One row per game with a gameHistory entry, from the first frame that carried it. The seed is
# checked against the hash the game's own frames announced while it ran; only for a game never
# seen live does the hash come from the history entry itself (the message says so).
_COMPLETE_GAME = f"""
WITH first_copy AS (
  SELECT * FROM history JOIN games ON h.id = games.game_id
  QUALIFY row_number() OVER (PARTITION BY h.id ORDER BY {FIRST_RECEIVED}) = 1
), copies AS (
  SELECT h.id AS game_id, count(DISTINCT h.prices) AS versions FROM history GROUP BY h.id
), announced AS (
  SELECT game_id, arg_min(seed_hash, ({FIRST_RECEIVED})) AS hash, count(DISTINCT seed_hash) AS hashes
  FROM gsu WHERE seed_hash IS NOT NULL GROUP BY game_id
), conflicts AS (
  SELECT game_id, count(*) FILTER (WHERE price_conflicts > 0) AS ticks FROM ticks GROUP BY game_id
), rows AS (
  SELECT c.*, a.hashes, v.versions, coalesce(a.hash, c.h.provablyFair.serverSeedHash) AS server_seed_hash,
         coalesce(k.ticks, 0) AS price_conflicts
  FROM first_copy c LEFT JOIN announced a USING (game_id) LEFT JOIN copies v USING (game_id)
  LEFT JOIN conflicts k USING (game_id)
)
SELECT {ENVELOPE}, 'complete_game' AS doc_type, entry AS raw_json, game_id, 'gameHistory' AS event_name,
       len(h.prices) - 1 AS tick, h.prices[-1] AS price, len(h.prices) AS tick_count,
       h.peakMultiplier AS peak_multiplier, h.provablyFair.serverSeed AS server_seed, server_seed_hash,
       sha256(h.provablyFair.serverSeed) = server_seed_hash AND coalesce(hashes, 1) = 1 AS seed_verified,
       price_conflicts, make_timestamptz(h.timestamp * 1000) AS end_ts, h.gameVersion AS game_version,
       nullif(concat_ws('; ',
         CASE WHEN hashes IS NULL THEN 'serverSeedHash from gameHistory: the game was not seen running' END,
         CASE WHEN hashes > 1 THEN 'the game announced ' || hashes || ' different serverSeedHash values' END,
         CASE WHEN versions > 1 THEN versions || ' differing gameHistory copies' END,
         CASE WHEN h.prices IS NULL THEN 'gameHistory holds no prices' END), '') AS message
FROM rows
ORDER BY ts, session_id, seq, game_id
"""


@contextmanager
def games_rebuilt(ws_event: pa.Table | Frames, day: str | None = None) -> Iterator[Iterator[tuple[str, pa.RecordBatchReader]]]:
    """``game_tick`` and ``complete_game`` from ``ws_event`` rows, for the games of ``day`` (all if None), as
    (doc_type, stream of batches) pairs, one after the other: read each stream before taking the next.

    For ``day`` D, ``ws_event`` should hold D's rows and the next day's first ``NEXT_DAY_HEAD``.
    A day's ticks keep their frames' payloads (~5 KB each, GBs a day): streamed, they never have to fit in memory.
    """
    with naming_unreadable_frames(ws_event):
        con = connection(ws_event)
        try:
            con.execute("SET VARIABLE day = ?::DATE", [day])
            con.execute("SET VARIABLE head = ?::INTERVAL", [NEXT_DAY_HEAD])
            # each join here is written with its small side on the right, the side DuckDB hashes; its optimizer
            # would swap game_tick's on a wrong estimate and hash a day of frame text (GBs) instead of the ticks
            con.execute("SET disabled_optimizers = 'build_side_probe_side'")
            for statement in _PARSE:
                con.execute(statement)
            def results() -> Iterator[tuple[str, pa.RecordBatchReader]]:  # a query starts once the one before is read
                yield "game_tick", _game_tick(con)
                yield "complete_game", con.sql(_COMPLETE_GAME).to_arrow_reader(BATCH_ROWS)

            yield results()
        finally:
            con.close()


def rebuild_games(ws_event: pa.Table | Frames, day: str | None = None) -> dict[str, pa.Table]:
    """``games_rebuilt``, each doc_type as one table."""
    with games_rebuilt(ws_event, day) as results:
        return {name: schema.conform(rows.read_all()) for name, rows in results}


# Per game: when and how it ran, its trades and sidebets, and how much of it was seen live.
# The row's envelope is that of the game's last tick row (the rug frame when it was seen).
_GAMES = f"""
WITH t AS (
  SELECT game_id,
         arg_max(struct_pack({ENVELOPE}), tick) AS env,
         count(*) FILTER (WHERE tick_source = 'observed') AS observed_ticks,
         count(*) FILTER (WHERE tick_source <> 'observed') AS filled_ticks,
         count(*) FILTER (WHERE price_conflicts > 0) AS price_conflicts,
         max(tick) FILTER (WHERE is_rug_tick) AS rug_tick, max(price) FILTER (WHERE is_rug_tick) AS rug_price,
         max(price) AS peak, count(*) AS ticks,
         min(ts) FILTER (WHERE tick = 0 AND tick_source = 'observed') AS start_ts,
         min(ts) FILTER (WHERE is_rug_tick AND tick_source = 'observed') AS rug_ts,
         max(connected_players) AS connected_players, arg_min(game_version, tick) AS game_version
  FROM game_tick GROUP BY game_id
), trades AS (  -- a trade id once, whichever partition of player_action holds it; summed in one order (floats)
  SELECT game_id, count(*) AS trade_count, count(DISTINCT player_id) AS trader_count, sum(amount ORDER BY trade_id) AS volume
  FROM (SELECT * FROM player_action WHERE event_name = 'standard/newTrade'
        QUALIFY row_number() OVER (PARTITION BY trade_id ORDER BY {FIRST_RECEIVED}) = 1)
  GROUP BY game_id
), sidebets AS (
  SELECT game_id, count(DISTINCT trade_id) FILTER (WHERE action_type = 'sidebet_placed') AS placed,
         count(DISTINCT trade_id) FILTER (WHERE action_type = 'sidebet_payout' AND payout > 0) AS won
  FROM player_action GROUP BY game_id
), g AS (
  SELECT game_id, t.*, c.ts AS c_ts, c.source AS c_source, c.session_id AS c_session_id, c.seq AS c_seq,
         c.direction AS c_direction, c.tick AS c_tick, c.price AS c_price, c.peak_multiplier AS c_peak,
         c.end_ts AS c_end_ts, c.server_seed, c.server_seed_hash, c.seed_verified, c.game_version AS c_game_version,
         coalesce(t.rug_tick, c.tick) AS r
  FROM t FULL JOIN complete_game c USING (game_id)
)
SELECT coalesce(env.ts, c_ts) AS ts, coalesce(env.source, c_source) AS source,
       coalesce(env.session_id, c_session_id) AS session_id, coalesce(env.seq, c_seq) AS seq,
       coalesce(env.direction, c_direction) AS direction, 'games' AS doc_type, game_id,
       'game_summary' AS event_name, start_ts, coalesce(rug_ts, c_end_ts) AS end_ts,
       (epoch_us(coalesce(rug_ts, c_end_ts)) - epoch_us(start_ts)) / 1e6 AS duration_s,
       r AS tick, coalesce(rug_price, c_price) AS price, r + 1 AS tick_count,
       -- a peak is only known for a game whose every tick is known
       coalesce(c_peak, CASE WHEN ticks = r + 1 THEN peak END) AS peak_multiplier,
       coalesce(trade_count, 0) AS trade_count, coalesce(trader_count, 0) AS trader_count,
       coalesce(volume, 0) AS volume, coalesce(placed, 0) AS sidebets_placed, coalesce(won, 0) AS sidebets_won,
       coalesce(observed_ticks, 0) AS observed_ticks, coalesce(filled_ticks, 0) AS filled_ticks,
       coalesce(price_conflicts, 0) AS price_conflicts, server_seed, server_seed_hash, seed_verified,
       connected_players, coalesce(c_game_version, game_version) AS game_version,
       CASE WHEN r IS NULL AND c_ts IS NOT NULL THEN 'ended, ticks unknown: its gameHistory holds no prices'
            WHEN r IS NULL THEN 'unfinished: no rug seen'
            WHEN coalesce(ticks, 0) = r + 1 THEN 'complete'
            ELSE 'incomplete: ' || (r + 1 - coalesce(ticks, 0)) || ' of ' || (r + 1) || ' ticks unknown' END AS message
FROM g LEFT JOIN trades USING (game_id) LEFT JOIN sidebets USING (game_id)
ORDER BY ts, session_id, seq, game_id
"""


def summarize_games(game_tick: pa.Table, complete_game: pa.Table, player_action: pa.Table) -> pa.Table:
    """``games``: one row per game of ``game_tick`` / ``complete_game`` (one day's), with its trades and
    sidebets from ``player_action`` (that day's and the next day's: a game can end after midnight)."""
    con = connection(schema.empty_table())
    try:
        for name, table in (("game_tick", game_tick), ("complete_game", complete_game), ("player_action", player_action)):
            con.register(name, schema.conform(table))
        return schema.conform(con.sql(_GAMES).to_arrow_table())
    finally:
        con.close()
