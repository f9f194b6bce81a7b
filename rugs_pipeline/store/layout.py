"""The store: Parquet layout, atomic writes, the schema manifest, in a local folder or an S3 prefix.

    $RUGS_DATA_DIR/
      events_parquet/doc_type=<type>/date=<YYYY-MM-DD>/<YYYYMMDD_HHMMSS>_<8 hex>.parquet
      manifests/schema_version.json
      manifests/landed/<YYYY-MM-DD>/<segment>.json   (ledger of landed spool segments)
      spool/...                                      (see formats.spool)
      quarantine/<path in the store>                 (unreadable files `doctor --repair` moved aside)

File names are deterministic (derived from what the file holds), so writing the
same content twice replaces a file instead of adding a duplicate.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from rugs_pipeline import config
from rugs_pipeline.config import ConfigError
from rugs_pipeline.errors import RugsError
from rugs_pipeline.store import lake, schema
from rugs_pipeline.store.lake import S3Path


class SchemaVersionError(RugsError, RuntimeError):
    """The store holds a schema version this code does not understand."""


# An OSError, as pyarrow's own for an unreadable footer: the CLI prints it as one line.
class UnreadableFileError(RugsError, OSError):
    """A Parquet file of the store cannot be read (truncated, corrupt footer); the message names it and the fix."""


DOCTOR_HINT = "run `rugs-pipeline doctor` (`--repair` quarantines it and re-lands its rows from the spool)"


def footer_problem(path: Path | S3Path, filesystem=None) -> str | None:
    """Why a Parquet file's footer cannot be read, or None when it can."""
    try:
        pq.read_metadata(str(path), filesystem=filesystem)
    except FileNotFoundError:  # gone since it was listed (a compaction's swap, a re-derivation): not corrupt
        return None
    except (pa.ArrowInvalid, OSError) as exc:
        text = "".join(c if c.isprintable() else " " for c in str(exc))  # thrift quotes the bad byte
        return " ".join(text.split()) or type(exc).__name__
    return None


def unreadable(path: Path | S3Path, problem: str) -> UnreadableFileError:
    return UnreadableFileError(f"{path}: not a readable Parquet file ({problem}); {DOCTOR_HINT}")


@contextmanager
def naming_unreadable(files, filesystem=None):
    """Inside: a failed read of ``files`` (pyarrow's or DuckDB's error, which may not name the file) becomes an
    ``UnreadableFileError`` naming the first file whose footer cannot be read; other errors pass unchanged."""
    try:
        yield
    except UnreadableFileError:
        raise
    except (duckdb.Error, pa.ArrowInvalid, OSError) as exc:
        for path in files:
            problem = footer_problem(path, filesystem)
            if problem is not None:
                raise unreadable(path, problem) from exc
        raise


@dataclass(frozen=True)
class Store:
    root: Path | S3Path
    # The spool may live apart from the lake (shared storage written by recorders on other machines).
    spool_root: Path | None = None
    files: lake.Posix | lake.Objects = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", lake.backend(self.root))

    @classmethod
    def at(cls, root: str | Path, spool_root: str | Path | None = None) -> "Store":
        """The store at ``root`` (a folder, ``file:///folder`` or ``s3://bucket/prefix``)."""
        return cls(lake.parse_root(str(root)), Path(spool_root).expanduser() if spool_root else None)

    @classmethod
    def from_env(cls) -> "Store":
        """The store of ``$RUGS_DATA_DIR``, with its spool at ``$RUGS_SPOOL_DIR`` when that is set."""
        settings = config.Settings.from_env()
        return cls.at(settings.data_dir, settings.spool_path)

    @property
    def remote(self) -> bool:
        return isinstance(self.root, S3Path)

    @property
    def filesystem(self):
        """What pyarrow (``filesystem=``) and DuckDB (``register_filesystem``) read the files through; None locally.

        pyarrow takes path objects only for local files: with this, give it ``str(path)``.
        """
        return self.files.filesystem

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection that reads this store's paths (an s3 lake through s3fs)."""
        con = duckdb.connect()
        if self.filesystem is not None:
            con.register_filesystem(self.filesystem)
        return con

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
        if self.spool_root is None and self.remote:  # consumers of an s3 lake need no spool: only its writers ask
            raise ConfigError(f"RUGS_SPOOL_DIR must be set when RUGS_DATA_DIR is {self.root}: the spool and the "
                              "lake's partition locks need a local (or shared POSIX) folder")
        return self.spool_root or self.root / "spool"

    def partition_dir(self, doc_type: str, day: date | str) -> Path:
        return self.events_dir / f"doc_type={doc_type}" / f"date={_day(day)}"

    def partition_files(self, doc_type: str, day: date | str) -> list[Path]:
        return self.files.files(self.partition_dir(doc_type, day), "*.parquet")

    def remove_stale_temps(self, doc_type: str, day: date | str) -> list[Path]:
        """Remove the partition's temp files left by writers killed mid-write (a live writer's stay)."""
        return self.files.remove_stale_temps(self.partition_dir(doc_type, day))

    def partition_days(self, doc_type: str) -> list[str]:
        return self.files.days(self.events_dir / f"doc_type={doc_type}")

    @property
    def locks_dir(self) -> Path:
        # S3 has no locks: an s3 lake has one writing deployment, whose locks live beside its spool
        return self.spool_dir / "lake_locks" if self.remote else self.manifests_dir / "locks"

    @contextmanager
    def partition_lock(self, doc_type: str, day: date | str, *, shared: bool = False):
        """Hold a partition's lock: landing and readers of a file list share it, compaction takes it alone.

        Compaction replaces a day's files; a lander adding a file meanwhile, or a reader
        between listing and opening, must not straddle that swap.
        """
        path = self.locks_dir / f"{doc_type}_{_day(day)}.lock"
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
        self.files.write_bytes(self.manifest_path, json.dumps(manifest, indent=2).encode() + b"\n")
        return manifest

    def read_manifest(self) -> dict | None:
        try:
            text = self.files.read_text(self.manifest_path)
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
        self.files.write_parquet(path, file_schema(doc_type), rows)
        return path

    def replace_partition(self, doc_type: str, day: date | str, table: pa.Table | pa.RecordBatchReader) -> Path:
        """Make ``table`` (or a stream of batches) the whole content of a derived partition.

        The file name depends only on (doc_type, day), so a rebuild is one atomic
        rename (on S3, PUT) over the previous file: readers never see both or neither.
        """
        name = f"{_day(day).replace('-', '')}_000000_{short_hash(doc_type, _day(day))}.parquet"
        self.remove_stale_temps(doc_type, day)
        path = self.write_partition_file(doc_type, day, table, name)
        for stale in self.partition_files(doc_type, day):
            if stale != path:
                self.files.delete(stale)
        return path

    def read_partition(self, doc_type: str, day: date | str, columns: list[str] | None = None) -> pa.Table:
        """A partition's rows; only ``columns`` (in that order) if given."""
        tables = [schema.conform(self._read_file(f, columns)) for f in self.partition_files(doc_type, day)]
        return pa.concat_tables(tables or [schema.empty_table()]).select(columns or schema.COLUMNS)

    def _read_file(self, path: Path | S3Path, columns: list[str] | None) -> pa.Table:
        # A file at an older minor version lacks the newer columns (a day whose next day is not migrated
        # yet reads it): read those it has, and conform makes the others null.
        with naming_unreadable([path], self.filesystem):
            source = pq.ParquetFile(str(path), filesystem=self.filesystem)
            names = source.schema_arrow.names
            return source.read(columns=None if columns is None else [c for c in columns if c in names])

    def partition_rows(self, doc_type: str, day: date | str) -> int:
        """A partition's row count, from the files' footers (no rows read)."""
        with self.partition_lock(doc_type, day, shared=True):
            files = self.partition_files(doc_type, day)
            with naming_unreadable(files, self.filesystem):
                return sum(pq.read_metadata(str(f), filesystem=self.filesystem).num_rows for f in files)


def check_compatible(version: object, where: object) -> None:
    """Readers understand one major version: minor versions only append nullable columns."""
    ours = parse_version(schema.SCHEMA_VERSION)[0]
    theirs = parse_version(version)
    if theirs is None or theirs[0] != ours:
        raise SchemaVersionError(
            f"{where}: schema version {version!r} is not readable by this rugs_pipeline (understands {ours}.x)"
        )


def sql_literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def sql_list(files) -> str:
    """SQL: a list literal of the files' paths."""
    return "[" + ", ".join(sql_literal(str(f)) for f in files) + "]"


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


def file_schema_version(path: Path | S3Path, filesystem=None) -> str | None:
    with naming_unreadable([path], filesystem):
        metadata = pq.read_schema(str(path), filesystem=filesystem).metadata or {}
    value = metadata.get(schema.SCHEMA_VERSION_KEY)
    return value.decode() if value is not None else None


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8]


def _day(day: date | str) -> str:
    return day if isinstance(day, str) else day.isoformat()
