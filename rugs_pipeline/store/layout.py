"""The store on disk: Parquet layout, atomic writes, the schema manifest.

    $RUGS_DATA_DIR/
      events_parquet/doc_type=<type>/date=<YYYY-MM-DD>/<YYYYMMDD_HHMMSS>_<8 hex>.parquet
      manifests/schema_version.json
      manifests/landed/<YYYY-MM-DD>/<segment>.json   (ledger of landed spool segments)
      spool/...                                      (see capture.spool)

File names are deterministic (derived from what the file holds), so writing the
same content twice replaces a file instead of adding a duplicate.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rugs_pipeline import config
from rugs_pipeline.store import schema

PARQUET_COMPRESSION = "zstd"


class SchemaVersionError(RuntimeError):
    """The store holds a schema version this code does not understand."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


@dataclass(frozen=True)
class Store:
    root: Path
    # The spool may live apart from the lake (shared storage written by recorders on other machines).
    spool_root: Path | None = None

    @classmethod
    def from_env(cls) -> "Store":
        """The store of ``$RUGS_DATA_DIR``, with its spool at ``$RUGS_SPOOL_DIR`` when that is set."""
        return cls(config.data_dir(), config.spool_dir())

    @property
    def events_dir(self) -> Path:
        return self.root / "events_parquet"

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    @property
    def manifest_path(self) -> Path:
        return self.manifests_dir / "schema_version.json"

    @property
    def spool_dir(self) -> Path:
        return self.spool_root or self.root / "spool"

    def partition_dir(self, doc_type: str, day: date | str) -> Path:
        return self.events_dir / f"doc_type={doc_type}" / f"date={_day(day)}"

    def partition_files(self, doc_type: str, day: date | str) -> list[Path]:
        folder = self.partition_dir(doc_type, day)
        return sorted(folder.glob("*.parquet")) if folder.is_dir() else []

    def partition_days(self, doc_type: str) -> list[str]:
        folder = self.events_dir / f"doc_type={doc_type}"
        if not folder.is_dir():
            return []
        return sorted(p.name.removeprefix("date=") for p in folder.glob("date=*") if any(p.glob("*.parquet")))

    @contextmanager
    def partition_lock(self, doc_type: str, day: date | str, *, shared: bool = False):
        """Hold a partition's lock: landing and readers of a file list share it, compaction takes it alone.

        Compaction replaces a day's files; a lander adding a file meanwhile, or a reader
        between listing and opening, must not straddle that swap.
        """
        path = self.manifests_dir / "locks" / f"{doc_type}_{_day(day)}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            yield

    # --- manifest --------------------------------------------------------------

    def ensure_manifest(self) -> dict:
        """Write ``manifests/schema_version.json`` for a new store; refuse a store this code must not write.

        A store at an older minor version of our major is written to as it is: new files are at
        this code's version and the manifest stays until ``migration.finish`` finds every
        partition migrated. A store at a newer minor or another major is refused: an older writer
        must not mix its files into a newer store, nor downgrade the manifest.
        """
        existing = self.read_manifest()
        if existing is not None:
            version = existing.get("version")
            ours, theirs = parse_version(schema.SCHEMA_VERSION), parse_version(version)
            if theirs is None or theirs[0] != ours[0] or theirs > ours:
                raise SchemaVersionError(
                    f"{self.manifest_path}: store is at schema {version!r}, this rugs_pipeline writes {schema.SCHEMA_VERSION}"
                )
            if version != schema.SCHEMA_VERSION or existing.get("fields") == schema.manifest_fields():
                return existing
        return self.write_manifest(created=(existing or {}).get("created"))

    def write_manifest(self, created: str | None = None) -> dict:
        """Record this code's version and columns as the store's (a new store, or a finished migration)."""
        manifest = {
            "version": schema.SCHEMA_VERSION,
            "created": created or datetime.now(timezone.utc).isoformat(),
            "fields": schema.manifest_fields(),
        }
        atomic_write_bytes(self.manifest_path, json.dumps(manifest, indent=2).encode() + b"\n")
        return manifest

    def read_manifest(self) -> dict | None:
        try:
            text = self.manifest_path.read_text()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SchemaVersionError(f"{self.manifest_path}: not valid JSON ({exc})") from exc
        if not isinstance(manifest, dict) or "version" not in manifest:
            raise SchemaVersionError(f"{self.manifest_path}: no 'version' field")
        return manifest

    # --- Parquet ---------------------------------------------------------------

    def write_partition_file(self, doc_type: str, day: date | str, rows: pa.Table | pa.RecordBatchReader,
                             name: str) -> Path:
        """Atomically write one Parquet file of ``doc_type`` for ``day`` under ``name``.

        A stream of batches is written as it comes, so a large result never has to fit in memory.
        """
        path = self.partition_dir(doc_type, day) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with pq.ParquetWriter(tmp, file_schema(doc_type), compression=PARQUET_COMPRESSION) as writer:
            for part in [rows] if isinstance(rows, pa.Table) else rows:
                writer.write_table(schema.conform(part if isinstance(part, pa.Table) else pa.Table.from_batches([part])))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
        return path

    def replace_partition(self, doc_type: str, day: date | str, table: pa.Table | pa.RecordBatchReader) -> Path:
        """Make ``table`` (or a stream of batches) the whole content of a derived partition.

        The file name depends only on (doc_type, day), so a rebuild is one atomic
        rename over the previous file: readers never see both or neither.
        """
        name = f"{_day(day).replace('-', '')}_000000_{short_hash(doc_type, _day(day))}.parquet"
        path = self.write_partition_file(doc_type, day, table, name)
        for stale in self.partition_files(doc_type, day):
            if stale != path:
                stale.unlink(missing_ok=True)
        return path

    def read_partition(self, doc_type: str, day: date | str, columns: list[str] | None = None) -> pa.Table:
        """A partition's rows; only ``columns`` (in that order) if given."""
        files = self.partition_files(doc_type, day)
        tables = [schema.conform(pq.read_table(f, columns=columns)) for f in files] or [schema.empty_table()]
        return pa.concat_tables(tables).select(columns or schema.COLUMNS)

    def partition_rows(self, doc_type: str, day: date | str) -> int:
        """A partition's row count, from the files' footers (no rows read)."""
        with self.partition_lock(doc_type, day, shared=True):
            return sum(pq.read_metadata(f).num_rows for f in self.partition_files(doc_type, day))


def check_compatible(version: object, where: object) -> None:
    """Readers understand one major version: minor versions only append nullable columns."""
    ours = parse_version(schema.SCHEMA_VERSION)[0]
    theirs = parse_version(version)
    if theirs is None or theirs[0] != ours:
        raise SchemaVersionError(
            f"{where}: schema version {version!r} is not readable by this rugs_pipeline (understands {ours}.x)"
        )


def parse_version(version: object) -> tuple[int, ...] | None:
    """``"1.1.0"`` -> ``(1, 1, 0)``; None for anything that is not a version."""
    if not isinstance(version, str):
        return None
    try:
        parts = tuple(int(p) for p in version.split("."))
    except ValueError:
        return None
    return parts if len(parts) == 3 else None


def file_schema(doc_type: str) -> pa.Schema:
    """The schema of a ``doc_type`` file: SCHEMA plus the version and doc_type in its key-value metadata."""
    return schema.SCHEMA.with_metadata(
        {schema.SCHEMA_VERSION_KEY: schema.SCHEMA_VERSION.encode(), schema.DOC_TYPE_KEY: doc_type.encode()}
    )


def file_schema_version(path: Path) -> str | None:
    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(schema.SCHEMA_VERSION_KEY)
    return value.decode() if value is not None else None


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8]


def file_stamp(ts: datetime) -> str:
    return ts.astimezone(timezone.utc).strftime("%Y%m%d_%H%M%S")


def _day(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()
