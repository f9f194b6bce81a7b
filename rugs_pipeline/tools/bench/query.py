"""Queries over 30 days: the store's layout against one Parquet file holding the same rows.

One synthetic day is landed, compacted by the real compaction and derived; 30 dated
partitions then hold hard links to its files (identical days, so the 30-day store costs
no disk). The single file holds the same 30 days' rows in the same row groups (copied
from the compacted files), so the two differ only in how many files hold them. The queries
are the README's seed queries: game_tick ordered by (session_id, seq), and ws_event
filtered by event_name over the whole store's glob (here: all of one event's frames, not
the first 100, so that the query reads something).
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from rugs_pipeline.tools.bench.synth import DAY, SyntheticDay
from rugs_pipeline.store import compaction, landing
from rugs_pipeline.store.layout import Store

DAYS = 30
ROUNDS = 5
WS_EVENT = "standard/newTrade"


def seed_queries(ticks: str, frames: str) -> dict[str, str]:
    """The README's two seed queries, reading game_tick from ``ticks`` and ws_event from ``frames``."""
    return {
        "game_tick": f"SELECT game_id, tick, price, ts FROM '{ticks}' ORDER BY session_id, seq",
        "ws_event": f"SELECT count(*), sum(strlen(raw_json)) FROM '{frames}' "
                    f"WHERE doc_type = 'ws_event' AND event_name = '{WS_EVENT}'",
    }


@dataclass(frozen=True)
class QueryResult:
    frames_per_day: int
    compaction_s: float  # compacting the one day
    files: dict[str, int]  # layout -> Parquet files
    seconds: dict[tuple[str, str], float]  # (layout, query) -> median seconds

    def ratio(self, layout: str, query: str) -> float:
        return self.seconds[layout, query] / self.seconds[SINGLE, query]


SINGLE = "single file"


def measure_queries(day: SyntheticDay, frames: int, work: Path, derive_game_tick) -> QueryResult:
    """``derive_game_tick(files) -> pa.Table``: a day's game_tick as the pipeline derives it."""
    one = _one_day(day, frames, work / "day", derive_game_tick)
    _thirty_days(one, work / "landed")
    start = time.perf_counter()
    compaction.compact_day(one, DAY)
    compaction_s = time.perf_counter() - start
    _thirty_days(one, work / "compacted")
    _single_files(work / "compacted", work / SINGLE)
    queries = {name: seed_queries(f"{work / name}/events_parquet/doc_type=game_tick/**/*.parquet",
                                  f"{work / name}/events_parquet/**/*.parquet") for name in ("landed", "compacted")}
    queries[SINGLE] = seed_queries(str(work / SINGLE / "game_tick.parquet"), str(work / SINGLE / "ws_event.parquet"))
    files = {name: sum(1 for _ in (work / name).rglob("*.parquet")) for name in queries}
    seconds: dict[tuple[str, str], list[float]] = {}
    for _ in range(ROUNDS):  # interleaved, so that the machine's drift hits every layout alike
        for layout, by_name in queries.items():
            for query, sql in by_name.items():
                seconds.setdefault((layout, query), []).append(_time(sql))
    return QueryResult(frames, compaction_s, files, {k: statistics.median(v) for k, v in seconds.items()})


def _time(sql: str) -> float:
    con = duckdb.connect()
    try:
        start = time.perf_counter()
        con.sql(sql).to_arrow_table()
        return time.perf_counter() - start
    finally:
        con.close()


def _one_day(day: SyntheticDay, frames: int, root: Path, derive_game_tick) -> Store:
    """A store holding the day's first segments (at least ``frames`` frames), landed and derived."""
    store = day.landed_copy(root, frames)
    store.replace_partition("game_tick", DAY, derive_game_tick(store.partition_files(landing.DOC_TYPE, DAY)))
    return store


def _thirty_days(one: Store, root: Path) -> None:
    """``root/events_parquet``: 30 dated copies (hard links) of ``one``'s day."""
    shutil.rmtree(root, ignore_errors=True)
    first = date.fromisoformat(DAY)
    for doc_type in ("ws_event", "game_tick"):
        for n in range(DAYS):
            target = Store(root).partition_dir(doc_type, first + timedelta(days=n))
            shutil.copytree(one.partition_dir(doc_type, DAY), target, copy_function=os.link)


def _single_files(thirty: Path, out: Path) -> None:
    """Each doc_type's 30 days in one file, row group by row group as the store holds them."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for doc_type in ("ws_event", "game_tick"):
        files = sorted((thirty / "events_parquet" / f"doc_type={doc_type}").rglob("*.parquet"))
        with pq.ParquetWriter(out / f"{doc_type}.parquet", pq.read_schema(files[0]), compression="zstd") as writer:
            for f in files:
                source = pq.ParquetFile(f)
                for g in range(source.num_row_groups):
                    writer.write_table(source.read_row_group(g))
