"""Training episodes: one row per complete game of a range of days, its prices as one list.

Read from the derived ``games`` and ``game_tick`` partitions (README "Games, rebuilt whole"),
which already hold each game once, whatever frames, recorder sessions and days showed it:
nothing is deduplicated by hand here. A game is complete when every tick 0..R is known
(``games.message = 'complete'``); the others are left out, and ``games`` says why for each.

Invariants of the table returned (a ``pyarrow.Table``, ordered by the game's last frame's
receive time, then game_id): one row per game_id; ``len(prices) == rug_tick + 1``;
``prices[rug_tick] == final_price`` (the crash price); ``peak == max(prices)``; ``date`` is the
game's partition (the UTC day of its id), so a split by date never puts a game on both sides.
"""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pyarrow as pa

from rugs_pipeline import config
from rugs_pipeline.store.layout import Store

# One partition per game by the derivation's rule; the QUALIFY keeps "one row per game" true even
# for a store where a game was written under two days (by code older than that rule).
_EPISODES = """
WITH g AS (
  SELECT game_id, date, ts, start_ts, tick AS rug_tick, game_version, seed_verified
  FROM games WHERE date BETWEEN $start AND $end AND message = 'complete'
  QUALIFY row_number() OVER (PARTITION BY game_id ORDER BY date) = 1
), t AS (
  SELECT game_id, date, list(price ORDER BY tick) AS prices
  FROM game_tick WHERE date BETWEEN $start AND $end AND game_id IN (SELECT game_id FROM g)
  GROUP BY game_id, date
)
SELECT game_id, date, start_ts, rug_tick, prices, list_max(prices) AS peak, prices[-1] AS final_price,
       game_version, seed_verified AS server_seed_verified
FROM g JOIN t USING (game_id, date)
WHERE len(prices) = rug_tick + 1
ORDER BY ts, game_id
"""


def parse_day(value: date | str, name: str) -> date:
    """A day given as ``YYYY-MM-DD`` or a ``date`` (a ``datetime`` counts as its UTC-less date part)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a day like 2025-12-12 (a YYYY-MM-DD string or a date)") from None


def episodes(start: date | str, end: date | str | None = None, data_dir: Path | str | None = None) -> pa.Table:
    """The complete games of the days ``start``..``end`` (inclusive; ``end`` defaults to ``start``).

    Columns: ``game_id``, ``date`` (its partition), ``start_ts`` (tick 0 received; null when tick 0 was
    only filled in), ``rug_tick`` (R), ``prices`` (list of float64, ticks 0..R), ``peak`` (max of prices),
    ``final_price`` (the crash price, tick R), ``game_version``, ``server_seed_verified`` (null: the game's
    seed was never revealed in the capture).

    The store is ``data_dir`` (default ``$RUGS_DATA_DIR``); one at another schema major is refused
    (``SchemaVersionError``, as ``connect``). A range without complete games raises ``ValueError`` saying
    which days the store holds.
    """
    from rugs_pipeline.consumers import connect  # the package imports this module

    first, last = parse_day(start, "start"), parse_day(start if end is None else end, "end")
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    root = data_dir or config.Settings.from_env().data_dir
    con = connect(root)
    try:
        table = con.sql(_EPISODES, params={"start": first, "end": last}).to_arrow_table()
    finally:
        con.close()
    if table.num_rows == 0:
        raise ValueError(_nothing_in_range(Store.at(root), first, last))
    return table


def _nothing_in_range(store: Store, first: date, last: date) -> str:
    days = store.partition_days("games")
    span = f"{first}" if first == last else f"{first} to {last}"
    if not days:
        return (f"no games derived in {store.root} (none for {span}): land and derive the days first, "
                f"e.g. `rugs-pipeline backfill --from {first} --to {last} --land`")
    inside = [d for d in days if first.isoformat() <= d <= last.isoformat()]
    if not inside:
        return (f"no games derived in {store.root} for {span}: it holds games of {days[0]} to {days[-1]} "
                f"({len(days)} days)")
    return (f"no complete games in {store.root} for {span} (every game there lacks some tick: see "
            "`SELECT game_id, message FROM games`)")
