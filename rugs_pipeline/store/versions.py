"""The schema registry: every version's Arrow schema, pandera models and how to migrate from the previous one.

A change that only appends nullable columns is a minor bump: a consumer of the older minor reads
the new files unchanged (it never names the new columns). Anything else (a column removed,
renamed, retyped, moved, or made non-nullable) is a major bump, which old consumers refuse.
``classify_change`` says which a change is; the tests hold each declared ``bump`` to it.

Migrating a store to a version rewrites its ``ws_event`` files with ``upgrade_ws_event`` (a pure
Arrow -> Arrow function of the previous version's rows) and re-derives every derived partition
from them (``store/migration.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandera.polars as pandera
import pyarrow as pa

from rugs_pipeline.store import schema
from rugs_pipeline.store.models import pandera_schema


def classify_change(old: pa.Schema, new: pa.Schema) -> str:
    """``"none"``, ``"minor"`` (nullable columns appended) or ``"major"`` (anything else), from the columns alone."""
    def columns(s: pa.Schema) -> list[tuple]:
        return [(f.name, f.type, f.nullable) for f in s]

    before, after = columns(old), columns(new)
    if after == before:
        return "none"
    if after[:len(before)] == before and all(f.nullable for f in list(new)[len(before):]):
        return "minor"
    return "major"


@dataclass(frozen=True)
class SchemaVersion:
    version: str
    schema: pa.Schema
    bump: str  # from the previous version: "initial", "minor" or "major"
    # the previous version's ws_event rows -> this version's (None for the first version)
    upgrade_ws_event: Callable[[pa.Table], pa.Table] | None
    summary: str

    def pandera(self, doc_type: str) -> pandera.DataFrameSchema:
        return pandera_schema(doc_type, self.schema)


_FRAME = "substr(raw_json, strpos(raw_json, '['))"
# 1.1.0's typed columns: (column, event whose payload holds it, payload key, SQL type)
TYPED_1_1_0 = (
    ("connected_players", "gameStateUpdate", "connectedPlayers", "BIGINT"),
    ("game_version", "gameStateUpdate", "gameVersion", "VARCHAR"),
    ("bonus_portion", "standard/newTrade", "bonusPortion", "DOUBLE"),
    ("real_portion", "standard/newTrade", "realPortion", "DOUBLE"),
    ("level", "standard/newTrade", "level", "BIGINT"),
)


def _typed_columns_sql() -> str:
    """SQL over view ``t`` filling 1.1.0's typed columns from each frame's payload (its last argument)."""
    events = dict.fromkeys(event for _, event, _, _ in TYPED_1_1_0)
    parsed, replaced = [], []
    for n, event in enumerate(events):
        fields = [(col, key, kind) for col, ev, key, kind in TYPED_1_1_0 if ev == event]
        paths = ", ".join(f"'$[#-1].{key}'" for _, key, _ in fields)
        # one parse per frame, and only of frames of that event; try(): a frame the feed garbled stays null
        parsed.append(f"CASE WHEN frame_kind = 'event' AND event_name = '{event}' "
                      f"THEN try(json_extract({_FRAME}, [{paths}])) END AS _v{n}")
        replaced += [f"_v{n}[{i}]->>'$' AS {col}" if kind == "VARCHAR" else f"TRY_CAST(_v{n}[{i}] AS {kind}) AS {col}"
                     for i, (col, _, kind) in enumerate(fields, 1)]
    cols = ", ".join(col for col, _, _, _ in TYPED_1_1_0)
    helpers = ", ".join(f"_v{n}" for n in range(len(events)))
    return (f"SELECT * EXCLUDE ({cols}, {helpers}), {', '.join(replaced)} "
            f"FROM (SELECT *, {', '.join(parsed)} FROM t)")


_TYPED_SQL = _typed_columns_sql()


_local = threading.local()


def fill_typed_columns(ws_event: pa.Table) -> pa.Table:
    """``ws_event`` rows (of any 1.x version) with 1.1.0's typed columns computed from their ``raw_json``.

    Landing and the migration both use it, so new and migrated files hold the same values.
    """
    # Called once per landed segment or migrated file: opening a DuckDB connection each time
    # cost twice the query. One per thread (a connection is not shared between threads).
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
        con.execute("SET enable_progress_bar = false")
    con.register("t", schema.conform(ws_event))
    try:
        return schema.conform(con.sql(_TYPED_SQL).to_arrow_table())
    finally:
        con.unregister("t")


VERSIONS = (
    SchemaVersion("1.0.0", schema.arrow_schema(schema.COLUMNS_1_0_0), "initial", None,
                  "one shared schema for every doc_type"),
    SchemaVersion("1.1.0", schema.arrow_schema(schema.COLUMNS_1_1_0), "minor", fill_typed_columns,
                  "connected_players, game_version, bonus_portion, real_portion, level: typed, not dug out of raw_json"),
)
CURRENT = VERSIONS[-1]
BY_VERSION = {v.version: v for v in VERSIONS}


def readable(version: object) -> bool:
    """A version this code reads and validates: one of the registry's (same major, not newer than ours)."""
    return version in BY_VERSION
