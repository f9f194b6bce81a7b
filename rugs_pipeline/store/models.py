"""pandera models (polars backend) of a schema version: generated from its Arrow schema, so the two
cannot drift apart; each doc_type adds the invariants the registry (doctypes.py) gives it."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pyarrow as arrow

from rugs_pipeline.store import doctypes, schema

_POLARS_TYPES = {
    arrow.string(): pl.Utf8,
    arrow.int64(): pl.Int64,
    arrow.float64(): pl.Float64,
    arrow.bool_(): pl.Boolean,
    schema.TS: pl.Datetime("us", "UTC"),
}


def _base_columns(doc_type: str, columns_of: arrow.Schema) -> dict[str, pa.Column]:
    columns = {f.name: pa.Column(_POLARS_TYPES[f.type], nullable=f.nullable) for f in columns_of}
    # counts; absent before 1.1.0 / 1.2.0
    for name in ("connected_players", "level", "history_games", "snapshot_ticks", "event_args"):
        if name in columns:
            columns[name] = pa.Column(pl.Int64, pa.Check.ge(0), nullable=True)
    columns["doc_type"] = pa.Column(pl.Utf8, pa.Check.eq(doc_type), nullable=False)
    columns["source"] = pa.Column(pl.Utf8, pa.Check.isin(schema.SOURCES), nullable=False)
    columns["direction"] = pa.Column(pl.Utf8, pa.Check.isin(schema.DIRECTIONS), nullable=True)
    return columns


def pandera_schema(doc_type: str, columns_of: arrow.Schema = schema.SCHEMA) -> pa.DataFrameSchema:
    """The checks of ``doc_type`` under the schema version whose Arrow schema is ``columns_of``: the registry's
    rules (store/doctypes.py) over the version's columns."""
    if doc_type not in doctypes.DOC_TYPES:
        raise ValueError(f"unknown doc_type {doc_type!r}")
    spec = doctypes.DOC_TYPES[doc_type]
    columns = _base_columns(doc_type, columns_of)
    for name, rule in spec.rules.items():
        checks = [getattr(pa.Check, rule.check[0])(rule.check[1])] if rule.check else []
        columns[name] = pa.Column(_POLARS_TYPES[schema.SCHEMA.field(name).type], checks, nullable=rule.nullable)
    return pa.DataFrameSchema(columns, unique=list(spec.unique) if spec.unique else None, strict=True, name=doc_type)
