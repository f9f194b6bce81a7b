"""For programs that read the store: a DuckDB connection with one view per doc_type, and the store
played back frame by frame (``replay``, ``areplay``: see ``replay.py``).

It refuses a store whose schema major version is not the one this code
understands, so a consumer never silently misreads a changed layout, and, with
``require``, a store older than the minor version a consumer needs. A view over a file that
cannot be read is refused too, naming the file (``connect_views`` builds the others and says why not that one).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa

from rugs_pipeline import config
from rugs_pipeline.consumers.episodes import episodes
from rugs_pipeline.consumers.replay import Frame, Replay, ReplayError, areplay, replay
from rugs_pipeline.derive import catalog
from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import (
    DOCTOR_HINT, SchemaVersionError, Store, UnreadableFileError, check_compatible, footer_problem, parse_version,
    sql_literal,
)

MIGRATE_HINT = "run `rugs-pipeline migrate` (or the migrate_schema job in the Dagster UI)"


def connect(data_dir: Path | str | None = None, require: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views ``ws_event``, ``game_tick``, ... over the Parquet, and
    ``event_catalog`` over the feed catalog's days.

    ``data_dir``: a folder, ``file:///folder`` or ``s3://bucket/prefix`` (default ``$RUGS_DATA_DIR``); an s3
    lake is read through s3fs, registered on the connection (DuckDB's httpfs is not needed).

    ``require`` (e.g. ``"1.1.0"``): refuse a store whose manifest is at an older version, for a
    consumer that reads columns added since.

    A doc_type with a file DuckDB cannot read (truncated, corrupt footer) raises ``UnreadableFileError`` naming it.
    """
    con, skipped = connect_views(data_dir, require)
    if skipped:
        con.close()
        raise UnreadableFileError("; ".join(skipped.values()) + f"; {DOCTOR_HINT}")
    return con


def connect_views(data_dir: Path | str | None = None,
                  require: str | None = None) -> tuple[duckdb.DuckDBPyConnection, dict[str, str]]:
    """``connect``, leaving out the view of a doc_type with an unreadable file: (connection, {view: why not}).

    Why not names the file (found from the footers, as DuckDB's error may not name it).
    """
    store = Store.at(data_dir or config.Settings.from_env().data_dir)
    manifest = store.read_manifest()
    if manifest is None:
        raise SchemaVersionError(f"{store.manifest_path} not found: {store.root} is not a rugs_pipeline store (yet)")
    check_compatible(manifest.get("version"), store.manifest_path)
    if require is not None and parse_version(require) is None:
        raise ValueError(f"require={require!r} is not a schema version like '1.1.0'")
    if require is not None and parse_version(manifest["version"]) < parse_version(require):
        raise SchemaVersionError(f"{store.manifest_path}: store is at schema {manifest['version']}, this consumer "
                                 f"requires {require}: {MIGRATE_HINT}")
    con = store.duckdb()
    con.execute("SET TimeZone = 'UTC'")
    skipped = {}
    for doc_type in schema.DOC_TYPES:
        glob = str(store.events_dir / f"doc_type={doc_type}" / "**" / "*.parquet")
        try:
            _view(con, doc_type, glob if store.partition_days(doc_type) else None, schema.empty_table())
        except duckdb.Error as exc:
            skipped[doc_type] = _why_unreadable(store, doc_type, exc)
    # the feed catalog's days: catalog/date=<day>/event_catalog.parquet
    glob = str(store.root / catalog.CATALOG_DIR / "date=*" / catalog.CATALOG_FILE)
    try:
        _view(con, "event_catalog", glob if catalog.catalog_days(store) else None, catalog.CATALOG_SCHEMA.empty_table())
    except duckdb.Error as exc:
        skipped["event_catalog"] = str(exc).splitlines()[0]
    return con, skipped


def _view(con: duckdb.DuckDBPyConnection, name: str, glob: str | None, empty: pa.Table) -> None:
    """View ``name`` over the Parquet files of ``glob``; None (no file yet): no rows, ``empty``'s columns."""
    if glob is None:
        con.register(f"_{name}_empty", empty)
        con.execute(f"CREATE VIEW {name} AS SELECT *, NULL::DATE AS date FROM _{name}_empty")
        return
    # union_by_name: during a migration files of two versions (one with more columns) share a
    # glob; without it DuckDB binds the first file's columns or fails with "schema mismatch in glob".
    # It also reads every file's footer now, so an unreadable file is found here, not mid-query.
    # A view cannot take parameters: quote the path as an SQL string literal.
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet({sql_literal(glob)}, "
                "hive_partitioning = true, union_by_name = true)")


def _why_unreadable(store: Store, doc_type: str, exc: duckdb.Error) -> str:
    """The first unreadable file of ``doc_type`` and its footer's problem, else DuckDB's own first line."""
    for day in store.partition_days(doc_type):
        for path in store.partition_files(doc_type, day):
            problem = footer_problem(path, store.filesystem)
            if problem is not None:
                return f"{path}: {problem}"
    return str(exc).splitlines()[0]


__all__ = ["MIGRATE_HINT", "Frame", "Replay", "ReplayError", "SchemaVersionError", "areplay", "connect", "connect_views",
           "episodes", "replay"]
