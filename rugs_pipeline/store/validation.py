"""Validation of a stored partition against schema 1.0.0, with pandera (polars backend).

The pandera schema is generated from the one Arrow schema, so the two cannot
drift apart; each doc_type adds its own invariants on top.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandera.polars as pa
import polars as pl
import pyarrow as arrow
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors

from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import Store, SchemaVersionError, atomic_write_bytes, file_schema_version

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

    Rows are checked a batch at a time, and only in files not checked before: a file is
    immutable once written (a rewrite is a new file, with a new size or mtime), so its verdict
    is kept in ``manifests/validated/`` until it or these rules change. Uniqueness over the
    partition reads the key columns alone, and joins the new files' keys to the others'. A
    landing run, which adds one file to a day, thus costs the same at midnight as at noon.
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
        known = _Verdicts(store, doc_type, day)
        fresh = [path for path in readable if known.get(path) is None]
        for path in fresh:
            known.put(path, *_check_file(doc_type, path, checks))
        for path in readable:
            rows, failures = known.get(path)
            result.rows += rows
            result.failures.extend(f for f in failures if f not in result.failures)
        duplicates = _duplicates(fresh, [p for p in readable if p not in fresh], checks.unique) if checks.unique else []
        result.failures.extend(duplicates)
        if not duplicates:  # a duplicate must be found again next time: its files stay unchecked
            known.save(readable)
    return result


def _check_file(doc_type: str, path: Path, checks: pa.DataFrameSchema) -> tuple[int, list[str]]:
    """Rows and pandera failures of one file, read a batch at a time (uniqueness is the partition's)."""
    per_batch = copy.deepcopy(checks)
    per_batch.unique = None
    rows, failures = 0, []
    for batch in pq.ParquetFile(path).iter_batches(VALIDATION_BATCH_ROWS):
        rows += batch.num_rows
        failures += [f for f in validate_table(doc_type, arrow.Table.from_batches([batch]), per_batch) if f not in failures]
    return rows, failures


# Verdicts are only as good as the rules that gave them: this module and the schema.
_RULES = hashlib.sha256(Path(__file__).read_bytes() + Path(schema.__file__).read_bytes()).hexdigest()[:16]


class _Verdicts:
    """Per-file verdicts of a partition: ``manifests/validated/<doc_type>/<day>.json``."""

    def __init__(self, store: Store, doc_type: str, day: str) -> None:
        self.path = store.manifests_dir / "validated" / doc_type / f"{day}.json"
        try:
            saved = json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            saved = {}
        self.files: dict[str, dict] = saved.get("files", {}) if saved.get("rules") == _RULES else {}

    @staticmethod
    def _stamp(path: Path) -> list[int]:
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def get(self, path: Path) -> tuple[int, list[str]] | None:
        verdict = self.files.get(path.name)
        if verdict is None or verdict["stamp"] != self._stamp(path):
            return None
        return verdict["rows"], verdict["failures"]

    def put(self, path: Path, rows: int, failures: list[str]) -> None:
        self.files[path.name] = {"stamp": self._stamp(path), "rows": rows, "failures": failures}

    def save(self, present: list[Path]) -> None:
        names = {p.name for p in present}
        kept = {name: v for name, v in self.files.items() if name in names}
        atomic_write_bytes(self.path, json.dumps({"rules": _RULES, "files": kept}).encode())


def _duplicates(fresh: list[Path], others: list[Path], keys: list[str]) -> list[str]:
    """A key twice among the fresh files, or in a fresh file and another (the others were unique already)."""
    if not fresh:
        return []
    cols = ", ".join(keys)
    con = duckdb.connect()
    try:
        con.execute(f"CREATE TEMP TABLE fresh AS SELECT {cols} FROM read_parquet(?, hive_partitioning = false)",
                    [[str(f) for f in fresh]])
        dup = con.execute(f"SELECT {cols}, count(*) AS n FROM fresh GROUP BY ALL HAVING n > 1 LIMIT 1").fetchall()
        if not dup and others:
            dup = con.execute(f"SELECT {cols}, 2 FROM fresh JOIN (SELECT {cols} FROM read_parquet(?, hive_partitioning"
                              f" = false)) USING ({cols}) LIMIT 1", [[str(f) for f in others]]).fetchall()
    finally:
        con.close()
    return [f"{cols}: uniqueness failed (e.g. {dict(zip(keys, dup[0]))}, {dup[0][-1]} rows)"] if dup else []
