"""For programs that read the store: a DuckDB connection with one view per doc_type.

It refuses a store whose schema major version is not the one this code
understands, so a consumer never silently misreads a changed layout, and, with
``require``, a store older than the minor version a consumer needs.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from rugs_pipeline import config
from rugs_pipeline.derive import catalog
from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import SchemaVersionError, Store, check_compatible, parse_version, sql_literal

MIGRATE_HINT = "run `rugs-pipeline migrate` (or the migrate_schema job in the Dagster UI)"


def connect(data_dir: Path | str | None = None, require: str | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views ``ws_event``, ``game_tick``, ... over the Parquet, and
    ``event_catalog`` over the feed catalog's days.

    ``data_dir``: a folder, ``file:///folder`` or ``s3://bucket/prefix`` (default ``$RUGS_DATA_DIR``); an s3
    lake is read through s3fs, registered on the connection (DuckDB's httpfs is not needed).

    ``require`` (e.g. ``"1.1.0"``): refuse a store whose manifest is at an older version, for a
    consumer that reads columns added since.
    """
    store = Store.at(data_dir or config.data_root())
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
    for doc_type in schema.DOC_TYPES:
        if store.partition_days(doc_type):
            glob = str(store.events_dir / f"doc_type={doc_type}" / "**" / "*.parquet")
            # union_by_name: during a migration files of two versions (one with more columns) share a
            # glob; without it DuckDB binds the first file's columns or fails with "schema mismatch in glob".
            # A view cannot take parameters: quote the path as an SQL string literal.
            con.execute(f"CREATE VIEW {doc_type} AS SELECT * FROM read_parquet({sql_literal(glob)}, "
                        "hive_partitioning = true, union_by_name = true)")
        else:
            con.register(f"_{doc_type}_empty", schema.empty_table())
            con.execute(f"CREATE VIEW {doc_type} AS SELECT *, NULL::DATE AS date FROM _{doc_type}_empty")
    _catalog_view(con, store)
    return con


def _catalog_view(con: duckdb.DuckDBPyConnection, store: Store) -> None:
    """View ``event_catalog``: the feed catalog's days (``catalog/date=<day>/event_catalog.parquet``)."""
    if catalog.catalog_days(store):
        glob = str(store.root / catalog.CATALOG_DIR / "date=*" / catalog.CATALOG_FILE)
        con.execute(f"CREATE VIEW event_catalog AS SELECT * FROM read_parquet({sql_literal(glob)}, "
                    "hive_partitioning = true, union_by_name = true)")
    else:
        con.register("_event_catalog_empty", catalog.CATALOG_SCHEMA.empty_table())
        con.execute("CREATE VIEW event_catalog AS SELECT *, NULL::DATE AS date FROM _event_catalog_empty")
