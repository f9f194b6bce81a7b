"""Derivation: the pipeline's derivation of a day against two baselines over the same frames.

- ``orjson_loop``: ``orjson.loads`` of every event frame's JSON, one core, nothing kept: what
  merely parsing the day with the fastest Python JSON library costs. Reading the frames into
  Python strings is not timed.
- ``reference_derive`` (``bench.reference``): the row-at-a-time deriver.
- ``pipeline_derive``: every derived doc_type of the day, as the derived assets compute and
  write them, from the day's ws_event files: a finalised day's (compacted after midnight, what
  re-deriving months reads: ``finalised_files``) or a day's as landed.

Each runs in a fresh process (``measure.isolated``), which also gives its peak memory; the
modules the steps need are imported before the clock starts (this module imports them), and
``pipeline_derive`` first derives one segment untimed, as a process re-deriving months pays its
first-use setup (lazy imports, caches) once, not per day.
"""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from rugs_pipeline.tools.bench import reference
from rugs_pipeline.tools.bench.synth import DAY, SyntheticDay, store_holding
from rugs_pipeline.defs.assets import derived_assets
from rugs_pipeline.defs.games import game_assets
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive.datasets import Frames
from rugs_pipeline.derive.games import rebuild_games
from rugs_pipeline.store import compaction
from rugs_pipeline.store.layout import Store

BATCH_ROWS = 20_000
QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def orjson_loop(files: list[Path]) -> tuple[float, int, int]:
    """(seconds in ``orjson.loads``, frames, bytes parsed) over the files' event frames."""
    seconds, frames, size = 0.0, 0, 0
    dataset = ds.dataset(files, format="parquet")
    for batch in dataset.to_batches(columns=["raw_json", "frame_kind"], batch_size=BATCH_ROWS):
        events = batch.filter(pc.equal(batch["frame_kind"], "event"))
        # an event frame is "42" (or "43<id>") then its JSON array
        texts = [t[t.index("["):] for t in events["raw_json"].to_pylist()]
        start = time.perf_counter()
        for text in texts:
            orjson.loads(text)
        seconds += time.perf_counter() - start
        frames += len(texts)
        size += sum(map(len, texts))
    return seconds, frames, size


def pipeline_derive(files: list[Path], root: Path) -> int:
    """Materialise every derived asset of the day in a store holding ``files``; returns the frames read.

    The assets run in process, one after the other, as ``rugs-pipeline backfill`` runs a day.
    """
    store = store_holding(files, root)
    result = dg.materialize([*derived_assets, *game_assets], partition_key=DAY, instance=dg.DagsterInstance.ephemeral(),
                            resources={"store": StoreResource(data_dir=str(store.root))}, run_config=QUIET)
    if not result.success:
        raise RuntimeError(f"deriving the synthetic day failed under {root}")
    return sum(pq.read_metadata(f).num_rows for f in files)


def finalised_files(day: SyntheticDay, frames: int, root: Path) -> list[Path]:
    """The day's first ``frames`` frames as a closed day ends up: landed, then compacted (the compaction asset)."""
    store = day.landed_copy(root, frames)
    compaction.compact_day(store, DAY)
    return store.partition_files("ws_event", DAY)


def reference_derive(files: list[Path], out: Path) -> int:
    """The row-at-a-time deriver over the same files, each doc_type written to ``out/<doc_type>.parquet``."""
    out.mkdir(parents=True, exist_ok=True)
    for doc_type, table in reference.derive(files, DAY).items():
        pq.write_table(table, out / f"{doc_type}.parquet")
    return sum(pq.read_metadata(f).num_rows for f in files)


def same_rows(derived_root: Path, reference_out: Path) -> list[str]:
    """Doc_types whose rows differ between the pipeline's store and the reference (``raw_json`` compared as JSON)."""
    store, differ = Store(derived_root), []
    con = duckdb.connect()
    for path in sorted(reference_out.glob("*.parquet")):
        doc_type = path.stem
        ours, theirs = store.read_partition(doc_type, DAY), pq.read_table(path)
        con.register("a", ours)
        con.register("b", theirs)
        rows = [con.execute(f"SELECT count(*) FROM (SELECT {_NORMAL} FROM {x} EXCEPT ALL SELECT {_NORMAL} FROM {y})")
                .fetchall()[0][0] for x, y in (("a", "b"), ("b", "a"))]
        if any(rows) or not ours.select(ORDER_KEY).equals(theirs.select(ORDER_KEY)):
            differ.append(doc_type)
    con.close()
    return differ


# the columns every derivation orders its rows by: equal rows in the same order have these in the same order
ORDER_KEY = ["session_id", "seq", "game_id", "tick", "trade_id", "action_type", "player_id", "event_name"]


# raw_json as JSON (one serializer for both); games.volume is a sum of floats, whose last bits follow
# DuckDB's parallel summation order, not the rows
_NORMAL = ("* REPLACE (CASE WHEN json_valid(raw_json) THEN json(raw_json)::VARCHAR ELSE raw_json END AS raw_json, "
           "round(volume, 6) AS volume)")


def game_tick_of(files: list[Path]) -> pa.Table:
    """The day's game_tick as the pipeline derives it (for the query figure)."""
    return rebuild_games(Frames(tuple(files)), DAY)["game_tick"]
