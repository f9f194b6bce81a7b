"""Validation of a stored partition against schema 1.0.0, with pandera (polars backend).

The pandera schema is generated from the one Arrow schema, so the two cannot
drift apart; each doc_type adds its own invariants on top.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandera.polars as pa
import polars as pl
import pyarrow as arrow
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors

from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import Store, SchemaVersionError, file_schema_version

VALIDATION_BATCH_ROWS = 16_384  # a few tens of MB of frames at a time

_POLARS_TYPES = {
    arrow.string(): pl.Utf8,
    arrow.int64(): pl.Int64,
    arrow.float64(): pl.Float64,
    arrow.bool_(): pl.Boolean,
    schema.TS: pl.Datetime("us", "UTC"),
}


def _base_columns(doc_type: str) -> dict[str, pa.Column]:
    columns = {f.name: pa.Column(_POLARS_TYPES[f.type], nullable=f.nullable) for f in schema.SCHEMA}
    columns["doc_type"] = pa.Column(pl.Utf8, pa.Check.eq(doc_type), nullable=False)
    columns["source"] = pa.Column(pl.Utf8, pa.Check.isin(schema.SOURCES), nullable=False)
    columns["direction"] = pa.Column(pl.Utf8, pa.Check.isin(schema.DIRECTIONS), nullable=True)
    return columns


def _with(columns: dict[str, pa.Column], **overrides: pa.Column) -> dict[str, pa.Column]:
    return {**columns, **overrides}


def pandera_schema(doc_type: str) -> pa.DataFrameSchema:
    base = _base_columns(doc_type)
    if doc_type == "ws_event":
        cols = _with(base, frame_kind=pa.Column(pl.Utf8, nullable=False), raw_json=pa.Column(pl.Utf8, nullable=False))
        return pa.DataFrameSchema(cols, unique=["session_id", "seq"], strict=True, name=doc_type)
    if doc_type == "game_tick":
        cols = _with(
            base,
            game_id=pa.Column(pl.Utf8, nullable=False),
            tick=pa.Column(pl.Int64, pa.Check.ge(0), nullable=False),
            price=pa.Column(pl.Float64, pa.Check.gt(0), nullable=False),
            is_rug_tick=pa.Column(pl.Boolean, nullable=False),
            phase=pa.Column(pl.Utf8, pa.Check.isin(("active", "rugged")), nullable=False),
            tick_source=pa.Column(pl.Utf8, pa.Check.isin(schema.TICK_SOURCES), nullable=False),
            price_conflicts=pa.Column(pl.Int64, pa.Check.ge(0), nullable=False),
        )
        return pa.DataFrameSchema(cols, unique=["game_id", "tick"], strict=True, name=doc_type)
    if doc_type == "complete_game":
        cols = _with(
            base,
            game_id=pa.Column(pl.Utf8, nullable=False),
            tick=pa.Column(pl.Int64, pa.Check.ge(0), nullable=True),  # null: a history without prices
            tick_count=pa.Column(pl.Int64, pa.Check.ge(1), nullable=True),
            peak_multiplier=pa.Column(pl.Float64, pa.Check.gt(0), nullable=True),
            price_conflicts=pa.Column(pl.Int64, pa.Check.ge(0), nullable=False),
        )
        return pa.DataFrameSchema(cols, unique=["game_id"], strict=True, name=doc_type)
    if doc_type == "games":
        counts = {name: pa.Column(pl.Int64, pa.Check.ge(0), nullable=False)
                  for name in ("trade_count", "trader_count", "sidebets_placed", "sidebets_won", "observed_ticks",
                               "filled_ticks", "price_conflicts")}
        cols = _with(base, game_id=pa.Column(pl.Utf8, nullable=False),
                     volume=pa.Column(pl.Float64, nullable=False),
                     duration_s=pa.Column(pl.Float64, pa.Check.ge(0), nullable=True),
                     message=pa.Column(pl.Utf8, nullable=False), **counts)
        return pa.DataFrameSchema(cols, unique=["game_id"], strict=True, name=doc_type)
    if doc_type == "player_action":
        cols = _with(base, action_type=pa.Column(pl.Utf8, nullable=False),
                     tick=pa.Column(pl.Int64, pa.Check.ge(0), nullable=True),
                     price=pa.Column(pl.Float64, pa.Check.ge(0), nullable=True))
        return pa.DataFrameSchema(cols, strict=True, name=doc_type)
    if doc_type == "server_state":
        cols = _with(base, player_id=pa.Column(pl.Utf8, nullable=False))
        return pa.DataFrameSchema(cols, strict=True, name=doc_type)
    if doc_type == "system_event":
        cols = _with(base, event_name=pa.Column(pl.Utf8, nullable=False),
                     duration_s=pa.Column(pl.Float64, pa.Check.ge(0), nullable=True))
        return pa.DataFrameSchema(cols, strict=True, name=doc_type)
    raise ValueError(f"unknown doc_type {doc_type!r}")


@dataclass
class ValidationResult:
    doc_type: str
    day: str
    rows: int = 0
    files: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def validate_table(doc_type: str, table: arrow.Table, checks: pa.DataFrameSchema | None = None) -> list[str]:
    """pandera's verdict on a table's types, nullability and invariants; [] when valid."""
    frame = pl.from_arrow(table)
    try:
        (checks or pandera_schema(doc_type)).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        return [
            f"{row['column'] or '<frame>'}: {row['check']} failed (e.g. {row['failure_case']!r})"
            for row in cases.unique(subset=["column", "check"], keep="first", maintain_order=True).iter_rows(named=True)
        ]
    return []


def validate_partition(store: Store, doc_type: str, day: str) -> ValidationResult:
    """Check one stored partition: schema version (manifest and every file), then pandera.

    The rows are checked a batch at a time and uniqueness over the whole partition from
    the key columns alone, so a day of frames is never held in memory at once.
    """
    result = ValidationResult(doc_type, day)
    try:
        manifest = store.read_manifest()
    except SchemaVersionError as exc:
        result.failures.append(str(exc))
    else:
        if manifest is None:
            result.failures.append(f"{store.manifest_path} is missing")
        elif manifest.get("version") != schema.SCHEMA_VERSION:
            result.failures.append(f"manifest schema version {manifest.get('version')!r} != {schema.SCHEMA_VERSION}")
    with store.partition_lock(doc_type, day, shared=True):  # compaction would swap the files mid-check
        files = store.partition_files(doc_type, day)
        result.files = len(files)
        readable = []
        for path in files:
            version = file_schema_version(path)
            if version != schema.SCHEMA_VERSION:
                result.failures.append(f"{path.name}: file schema version {version!r} != {schema.SCHEMA_VERSION}")
            if not pq.read_schema(path).equals(schema.SCHEMA, check_metadata=False):
                result.failures.append(f"{path.name}: columns differ from schema {schema.SCHEMA_VERSION}")
                continue
            readable.append(path)
        checks = pandera_schema(doc_type)
        per_batch = copy.deepcopy(checks)
        per_batch.unique = None
        for path in readable:
            for batch in pq.ParquetFile(path).iter_batches(VALIDATION_BATCH_ROWS):
                result.rows += batch.num_rows
                for failure in validate_table(doc_type, arrow.Table.from_batches([batch]), per_batch):
                    if failure not in result.failures:
                        result.failures.append(failure)
        if checks.unique and readable:
            result.failures.extend(_duplicates(readable, checks.unique))
    return result


def _duplicates(files: list[Path], keys: list[str]) -> list[str]:
    listed = [str(f) for f in files]
    con = duckdb.connect()
    try:
        dup = con.execute(f"SELECT {', '.join(keys)}, count(*) AS n FROM read_parquet(?, hive_partitioning = false) "
                          f"GROUP BY ALL HAVING n > 1 LIMIT 1", [listed]).fetchone()
    finally:
        con.close()
    return [] if dup is None else [f"{', '.join(keys)}: uniqueness failed (e.g. {dict(zip(keys, dup))}, {dup[-1]} rows)"]
