"""Where the lake's files live: a local folder (POSIX) or an S3 bucket prefix, behind one small interface.

``Store`` keeps its paths (``pathlib.Path`` locally, ``S3Path`` for objects) and calls these
helpers for every listing, read, write and delete, so the layout and the callers do not care
which it is. Locally nothing changed: temp file, fsync, rename. On S3 a write is one PUT (or a
multipart upload completed in one call) of a file finished beforehand, which S3 makes visible
whole or not at all; see ``Objects.write_parquet``.

Local temp files are flocked by their writers: see ``formats.fs``.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

import pyarrow as pa
import pyarrow.parquet as pq

from rugs_pipeline.config import ConfigError
from rugs_pipeline.formats.fs import atomic_write, remove_stale_temps
from rugs_pipeline.store import schema

PARQUET_COMPRESSION = "zstd"


class S3Path(PurePosixPath):
    """An object key ``bucket/prefix/...`` with path arithmetic; ``str()`` is its URL ``s3://bucket/...``,
    which s3fs, pyarrow (given the filesystem) and DuckDB (with it registered) all read."""

    def __str__(self) -> str:
        return "s3://" + super().__str__()

    @property
    def key(self) -> str:
        return super().__str__()


def parse_root(text: str) -> Path | S3Path:
    """``$RUGS_DATA_DIR`` as a root: a folder, ``file:///folder`` or ``s3://bucket/prefix``."""
    if text.startswith("s3://"):
        key = text.removeprefix("s3://").strip("/")
        if not key:
            raise ConfigError(f"RUGS_DATA_DIR={text!r} names no bucket: use s3://bucket/prefix")
        if any(c in key for c in "*?[]{}"):
            raise ConfigError(f"RUGS_DATA_DIR={text!r}: the consumers' DuckDB globs would read its * ? [ ] {{ }} as "
                              "patterns; use a prefix without them")
        return S3Path(key)
    if text.startswith("file://"):
        return Path(text.removeprefix("file://")).expanduser()
    if "://" in text:
        raise ConfigError(f"RUGS_DATA_DIR={text!r}: a folder, file:///folder or s3://bucket/prefix only")
    return Path(text).expanduser()


def _write_batches(where, file_schema: pa.Schema, rows: pa.Table | Iterable) -> None:
    with pq.ParquetWriter(where, file_schema, compression=PARQUET_COMPRESSION) as writer:
        for part in [rows] if isinstance(rows, pa.Table) else rows:
            writer.write_table(schema.conform(part if isinstance(part, pa.Table) else pa.Table.from_batches([part])))


class Posix:
    """A local (or NFS) folder: writes are temp file + fsync + rename."""

    filesystem = None  # pyarrow's and DuckDB's own local file access

    def files(self, folder: Path, pattern: str) -> list[Path]:
        return sorted(folder.glob(pattern)) if folder.is_dir() else []

    def days(self, folder: Path) -> list[str]:
        if not folder.is_dir():
            return []
        return sorted(p.name.removeprefix("date=") for p in folder.glob("date=*") if any(p.glob("*.parquet")))

    def size(self, path: Path) -> int:
        return path.stat().st_size

    def stamp(self, path: Path) -> list:
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]

    def read_text(self, path: Path) -> str:
        return path.read_text()

    def write_bytes(self, path: Path, data: bytes) -> None:
        atomic_write(path, lambda fh: fh.write(data))

    def write_parquet(self, path: Path, file_schema: pa.Schema, rows) -> None:
        atomic_write(path, lambda sink: _write_batches(sink, file_schema, rows))

    def remove_stale_temps(self, folder: Path) -> list[Path]:
        return remove_stale_temps(folder)

    def delete(self, path: Path) -> None:
        path.unlink(missing_ok=True)


class Objects:
    """An S3 bucket prefix through s3fs (the same client pyarrow reads with and DuckDB is given).

    Listings are not cached: other processes (landing runs, the sensor) add objects all the time.
    """

    def __init__(self) -> None:
        import s3fs

        region = os.environ.get("AWS_REGION")
        # endpoint and credentials: botocore's standard AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...
        self.filesystem = s3fs.S3FileSystem(use_listings_cache=False,
                                            client_kwargs={"region_name": region} if region else {})

    def _ls(self, folder: S3Path) -> list[S3Path]:
        try:
            return [S3Path(key) for key in self.filesystem.ls(folder.key, detail=False)]
        except FileNotFoundError:
            return []

    def files(self, folder: S3Path, pattern: str) -> list[S3Path]:
        return sorted(path for path in self._ls(folder) if fnmatch.fnmatchcase(path.name, pattern))

    def days(self, folder: S3Path) -> list[str]:
        # a prefix exists only while an object is under it, and only Parquet files live under date=
        return sorted(p.name.removeprefix("date=") for p in self._ls(folder) if p.name.startswith("date="))

    def size(self, path: S3Path) -> int:
        return self.filesystem.info(path.key)["size"]

    def stamp(self, path: S3Path) -> list:
        info = self.filesystem.info(path.key)  # a rewrite under the same key gets a new ETag
        return [info["size"], info["ETag"]]

    def read_text(self, path: S3Path) -> str:
        return self.filesystem.cat_file(path.key).decode()

    def write_bytes(self, path: S3Path, data: bytes) -> None:
        self.filesystem.pipe_file(path.key, data)  # one PUT: the old object or the new one, never a part

    def write_parquet(self, path: S3Path, file_schema: pa.Schema, rows) -> None:
        # The file is finished locally, then uploaded to its final key in one PUT (or one completed multipart
        # upload). Not a stream straight to S3: fsspec's file object uploads what it holds when its `with`
        # exits on an error, which would publish a truncated file. Not a temp key and a copy: S3 has no
        # rename, and PUT is atomic already, so the copy would add a request and a leftover on a crash.
        with tempfile.TemporaryDirectory(prefix="rugs-put-") as folder:
            local = os.path.join(folder, path.name)
            _write_batches(local, file_schema, rows)
            self.filesystem.put_file(local, path.key)

    def remove_stale_temps(self, folder: S3Path) -> list:
        return []  # nothing is written under a temp key (see write_parquet)

    def delete(self, path: S3Path) -> None:
        try:
            self.filesystem.rm_file(path.key)
        except FileNotFoundError:
            pass


def backend(root: Path | S3Path) -> Posix | Objects:
    return Objects() if isinstance(root, S3Path) else Posix()
