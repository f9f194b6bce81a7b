"""Compaction: a closed day's landed ``ws_event`` files become a few large sorted files, atomically.

Landing writes one small file per 30 s spool segment (~2,900 a day) and every query pays
per file. Compaction rewrites a day's rows into at most ``MAX_FILES`` files clustered by
``event_name`` (in landing order within each), so a filter on ``event_name`` reads only its
row groups. The few state frames that carry more than their tick (a ``gameHistory``, an
on-connect snapshot's prices, the rug's leaderboard: the only ones whose text a derivation
reads) get row groups of their own, so reading them does not decompress the other state
frames' text (~95% of the day's bytes):

1. Under the partition's exclusive lock (landing and readers of a file list hold it shared),
   list the day's files. Merge the files the ledger records and earlier merged files; carry
   any other file over unchanged: its landing crashed before the ledger entry, so the segment
   will be landed again under the same file name, which must then replace it, not add to a merge.
2. Write the merged files (and hard links to the carried ones) into a staging directory beside
   ``events_parquet`` on the same filesystem, outside every reader's glob.
3. Exchange the staging directory with ``date=D`` in one ``renameat2(RENAME_EXCHANGE)``.
   A reader lists the old directory or the new one, never a mix. (A plain rename cannot replace a
   non-empty directory, and a symlink swap is invisible to DuckDB's ``**`` glob, which does not
   follow symlinked directories.)
4. Delete the old directory, now at the staging path.

An s3 lake is not compacted: S3 cannot swap many objects for few in one step, so a reader
listing between the merged files' upload and the old files' deletion would count rows twice
(or, in the other order, miss them). Its days stay as landed; ``compact_day`` refuses.

A reader that listed the old files and opens one after the swap gets "file not found": its query
fails and a retry sees the new files; it never sees a row twice or misses one. Merged file names
carry a version, so no name ever means two different contents.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rugs_pipeline.store import landing, schema
from rugs_pipeline.config import ConfigError
from rugs_pipeline.formats.fs import fsync_dir
from rugs_pipeline.store.lake import PARQUET_COMPRESSION
from rugs_pipeline.store.layout import Store, file_schema, file_schema_version, naming_unreadable
from rugs_pipeline.store.versions import fill_typed_columns

DOC_TYPE = landing.DOC_TYPE
MAX_FILES = 4
FILE_BYTES = 256 * 2**20  # compressed input bytes per merged file, up to MAX_FILES
# A row group holds at most this many rows or bytes: fine-grained pruning, bounded memory. A reader
# works through a row group a vector (<= 2,048 rows) at a time, and DuckDB's JSON functions take several
# times a vector's text: 16 MiB of state frames with a history (~100 of them) parse well within 1 GiB.
ROW_GROUP_ROWS = 16_384
GROUP_BYTES = 16 * 2**20
READ_BATCH_ROWS = 16_384
_MERGED = re.compile(r"^\d{8}_c(\d{4})-\d+\.parquet$")

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@dataclass
class CompactionReport:
    day: str
    version: int | None = None  # None: nothing to merge
    merged: int = 0  # input files merged
    carried: list[str] = field(default_factory=list)  # files kept as they were (landing not recorded)
    files: list[str] = field(default_factory=list)  # the day's files afterwards
    rows: int = 0  # rows merged


def merged_version(path: Path) -> int | None:
    match = _MERGED.match(path.name)
    return int(match.group(1)) if match else None


def compact_day(store: Store, day: str) -> CompactionReport:
    """Merge ``day``'s landed ws_event files into <= MAX_FILES sorted files (see the module docstring)."""
    if store.remote:
        raise ConfigError(f"compaction needs a local lake (an atomic directory swap); RUGS_DATA_DIR={store.root} is "
                          "object storage, whose days stay as landed")
    report = CompactionReport(day)
    with store.partition_lock(DOC_TYPE, day):
        store.remove_stale_temps(DOC_TYPE, day)
        for stale in leftovers(store, day):  # a day with nothing new to merge must not keep them forever
            shutil.rmtree(stale)
        folder = store.partition_dir(DOC_TYPE, day)
        files = store.partition_files(DOC_TYPE, day)
        ledgered = {landing.landed_file_name(stem) for stem in landing.landed_names(store, day)}
        merge = [f for f in files if merged_version(f) is not None or f.name in ledgered]
        carry = [f for f in files if f not in merge]
        report.files = [f.name for f in files]
        if all(merged_version(f) is not None for f in merge):
            return report  # no landed file to fold in
        report.version = 1 + max((merged_version(f) or 0 for f in merge), default=0)
        staging = store.root / "compaction" / DOC_TYPE / f"date={day}.v{report.version}"
        staging.mkdir(parents=True)
        with naming_unreadable(merge):
            report.rows = _write_merged(merge, staging, day, report.version)
        for f in carry:
            os.link(f, staging / f.name)
        fsync_dir(staging)
        _exchange(staging, folder)
        fsync_dir(folder.parent)
        shutil.rmtree(staging)  # the old directory
        report.merged, report.carried = len(merge), [f.name for f in carry]
        report.files = [f.name for f in store.partition_files(DOC_TYPE, day)]
    return report


def leftovers(store: Store, day: str) -> list[Path]:
    """What a compaction of ``day`` killed mid-run left: its staging folder (before or after its swap) and its spill
    folder. Only a compaction of the day, holding its lock alone, may remove them: a live one is using them."""
    work = store.root / "compaction" / DOC_TYPE
    return sorted([*work.glob(f"date={day}.v*"), *work.glob(f".date={day}.v*.buckets")])


def _write_merged(inputs: list[Path], out: Path, day: str, version: int) -> int:
    """Write ``inputs``' rows to <= MAX_FILES files in ``out``, clustered by event_name, landing order within.

    Two streaming passes with bounded memory: rows go to one temporary file per cluster
    (in input order), then the clusters are copied out in event_name order. A row group never
    mixes two clusters, so its min/max statistics let a reader skip every other event.
    """
    rows = sum(pq.read_metadata(f).num_rows for f in inputs)
    count = min(MAX_FILES, max(1, math.ceil(sum(f.stat().st_size for f in inputs) / FILE_BYTES)))
    spill = out.parent / f".{out.name}.buckets"
    shutil.rmtree(spill, ignore_errors=True)
    spill.mkdir()
    try:
        buckets = _bucket_by_event(inputs, spill)
        sink = _RollingWriter(out, f"{day.replace('-', '')}_c{version:04d}", math.ceil(rows / count))
        for name, carries_more in sorted(buckets, key=lambda k: (k[0] is None, k[0] or "", k[1])):
            bucket = pq.ParquetFile(buckets[name, carries_more])
            for batch in bucket.iter_batches(_batch_rows(bucket.metadata)):
                sink.write(batch)
            sink.end_group()
        sink.close()
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return rows


def _batch_rows(meta: pq.FileMetaData) -> int:
    """Rows per batch so that a batch, like a row group, stays within ROW_GROUP_ROWS and GROUP_BYTES."""
    size = sum(meta.row_group(g).total_byte_size for g in range(meta.num_row_groups))
    return max(1, min(ROW_GROUP_ROWS, GROUP_BYTES * max(1, meta.num_rows) // max(1, size)))


Cluster = tuple[str | None, bool]  # (event_name, a state frame that carries more than its tick)


def _bucket_by_event(inputs: list[Path], spill: Path) -> dict[Cluster, Path]:
    """One temporary file per cluster holding its rows in input order."""
    writers: dict[Cluster, pq.ParquetWriter] = {}
    held: dict[Cluster, _Group] = defaultdict(_Group)

    def flush(key: Cluster) -> None:
        if key not in writers:
            writers[key] = pq.ParquetWriter(spill / f"{len(writers)}.parquet", file_schema(DOC_TYPE), compression="lz4")
        writers[key].write_table(held[key].take())

    con = duckdb.connect(config={"memory_limit": "512MB"})
    con.execute("SET enable_progress_bar = false")
    # Insertion order is preserved: the rows arrive in file order, each file in its own order.
    # by name: a day part-way through a migration holds files of two schema versions
    older = any(file_schema_version(f) != schema.SCHEMA_VERSION for f in inputs)
    rows = con.sql("SELECT * FROM read_parquet($files, hive_partitioning = false, union_by_name = true)",
                   params={"files": [str(f) for f in inputs]}).to_arrow_reader(READ_BATCH_ROWS)
    for batch in rows:
        table = pa.Table.from_batches([batch])
        # rows of older files get this version's typed columns, as the migration would give them
        table = fill_typed_columns(table) if older else schema.conform(table)
        for name in pc.unique(table["event_name"]).to_pylist():
            named = table.filter(pc.is_null(table["event_name"]) if name is None
                                 else pc.equal(table["event_name"], name))
            for carries_more, rows in _split(named):
                if held[name, carries_more].add(rows):
                    flush((name, carries_more))
    for key in [k for k, group in held.items() if group.parts]:
        flush(key)
    con.close()
    for writer in writers.values():
        writer.close()
    return {key: Path(writer.where) for key, writer in writers.items()}


def _split(rows: pa.Table) -> list[tuple[bool, pa.Table]]:
    """One event's rows by cluster: (False, those that carry only their tick), (True, the state frames with a
    gameHistory, a snapshot's prices or the rug: typed at landing, 1.2.0). Only non-empty parts."""
    more = pc.or_kleene(pc.or_kleene(pc.is_valid(rows["history_games"]), pc.is_valid(rows["snapshot_ticks"])),
                        pc.equal(rows["phase"], "rugged"))
    more = pc.fill_null(pc.and_kleene(pc.equal(rows["event_name"], "gameStateUpdate"), more), False)
    if not pc.any(more).as_py():
        return [(False, rows)]
    parts = [(False, rows.filter(pc.invert(more))), (True, rows.filter(more))]
    return [(flag, part) for flag, part in parts if part.num_rows]


class _Group:
    """Tables held back until they make a row group of ROW_GROUP_ROWS rows or GROUP_BYTES bytes."""

    def __init__(self) -> None:
        self.parts: list[pa.Table] = []
        self.rows = self.bytes = 0

    def add(self, part: pa.Table) -> bool:
        """Hold ``part``; whether the group is full."""
        self.parts.append(part)
        self.rows += part.num_rows
        self.bytes += part.nbytes
        return self.rows >= ROW_GROUP_ROWS or self.bytes >= GROUP_BYTES

    def take(self) -> pa.Table:
        table = pa.concat_tables(self.parts)
        self.__init__()
        return table


class _RollingWriter:
    """Row groups of one event each, into files of about ``per_file`` rows named ``<stem>-<n>.parquet``."""

    def __init__(self, folder: Path, stem: str, per_file: int) -> None:
        self.folder, self.stem, self.per_file = folder, stem, per_file
        self.writer: pq.ParquetWriter | None = None
        self.index = self.rows = 0
        self.group = _Group()

    def write(self, batch: pa.RecordBatch) -> None:
        # a group ends before it would pass a bound: a reader holds a whole row group's text (~150 KB a row
        # for the state frames with a history)
        if self.group.rows + batch.num_rows > ROW_GROUP_ROWS or self.group.bytes + batch.nbytes > GROUP_BYTES:
            self.end_group()
        self.group.add(pa.Table.from_batches([batch]))

    def end_group(self) -> None:
        if not self.group.parts:
            return
        if self.writer is None:
            path = self.folder / f"{self.stem}-{self.index}.parquet"
            self.writer = pq.ParquetWriter(path, file_schema(DOC_TYPE), compression=PARQUET_COMPRESSION)
        table = self.group.take()
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.rows += table.num_rows
        if self.rows >= self.per_file * (self.index + 1):
            self._finish_file()

    def close(self) -> None:
        self.end_group()
        self._finish_file()

    def _finish_file(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with open(self.writer.where, "rb") as fh:
                os.fsync(fh.fileno())
            self.writer = None
            self.index += 1


def _exchange(a: Path, b: Path) -> None:
    """Swap two directory entries atomically (Linux ``renameat2``, glibc >= 2.28)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        raise OSError("compaction needs renameat2(RENAME_EXCHANGE) (Linux, glibc >= 2.28)")
    if libc.renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"cannot exchange {a} and {b}: {os.strerror(err)}")
