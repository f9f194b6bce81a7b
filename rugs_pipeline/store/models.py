"""pandera models (polars backend) of a schema version: generated from its Arrow schema, so the two
cannot drift apart; each doc_type adds its own invariants on top."""

from __future__ import annotations

import pandera.polars as pa
import polars as pl
import pyarrow as arrow

from rugs_pipeline.store import schema

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


def _with(columns: dict[str, pa.Column], **overrides: pa.Column) -> dict[str, pa.Column]:
    return {**columns, **overrides}


def pandera_schema(doc_type: str, columns_of: arrow.Schema = schema.SCHEMA) -> pa.DataFrameSchema:
    """The checks of ``doc_type`` under the schema version whose Arrow schema is ``columns_of``."""
    base = _base_columns(doc_type, columns_of)
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


