"""Migrating a store to this code's schema version, a day at a time, crash-safe and re-runnable.

- ``ws_event`` files are rewritten in place: each file's rows go through the registry's
  ``upgrade_ws_event`` steps from its version to ours, streamed a batch at a time into a
  temporary file, fsync'd and renamed over the same name (on S3: uploaded in one PUT over the same
  key). A file is thus at the old version or the new, never a part, and a re-run skips files
  already migrated.
- Derived partitions are re-derived from the frames (the Dagster job ``migrate_schema`` runs the
  derived assets of the day before ``schema_migration``, see ``defs/migration.py``).
- ``finish`` moves ``manifests/schema_version.json`` to our version only once every partition
  of every doc_type is at it, each checked under its lock: a migration that stops part-way
  leaves the manifest at the old version, and running it again completes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rugs_pipeline.store import schema, versions
from rugs_pipeline.store.layout import SchemaVersionError, Store, file_schema_version

MIGRATION_BATCH_ROWS = 16_384


def old_files(store: Store, doc_type: str, day: str) -> list[tuple[Path, str | None]]:
    """The files of a partition not at this code's version, with the version they are at (footers only)."""
    found = [(path, file_schema_version(path, store.filesystem)) for path in store.partition_files(doc_type, day)]
    return [(path, version) for path, version in found if version != schema.SCHEMA_VERSION]


def days_to_migrate(store: Store) -> list[str]:
    """Every day with a partition (of any doc_type) holding a file at an older version."""
    return sorted({day for doc_type in schema.DOC_TYPES for day in store.partition_days(doc_type)
                   if old_files(store, doc_type, day)})


def upgrade(ws_event: pa.Table, version: str) -> pa.Table:
    """``ws_event`` rows at ``version`` -> this code's version, through each step of the registry."""
    known = [v.version for v in versions.VERSIONS]
    steps = versions.VERSIONS[known.index(version) + 1:] if version in known else ()
    if version not in known or any(v.bump == "major" for v in steps):
        raise SchemaVersionError(f"ws_event rows at schema {version!r} cannot be migrated to {schema.SCHEMA_VERSION}")
    for step in steps:
        ws_event = step.upgrade_ws_event(ws_event)
    return ws_event


def _upgraded_batches(store: Store, path: Path, version: str) -> Iterator[pa.Table]:
    for batch in pq.ParquetFile(str(path), filesystem=store.filesystem).iter_batches(MIGRATION_BATCH_ROWS):
        yield upgrade(pa.Table.from_batches([batch]), version)


def migrate_ws_event(store: Store, day: str) -> int:
    """Rewrite a day's ``ws_event`` files at older versions to ours; how many were rewritten.

    The partition's lock is held alone: landing (which adds files) and compaction (which swaps
    them) wait, so the list of files cannot change under the rewrite.
    """
    with store.partition_lock("ws_event", day):
        stale = old_files(store, "ws_event", day)
        for path, version in stale:
            store.write_partition_file("ws_event", day, _upgraded_batches(store, path, version), path.name)
    return len(stale)


def finish(store: Store) -> bool:
    """Set the manifest to this code's version if every partition is at it; whether the store is migrated."""
    manifest = store.read_manifest()
    if manifest is not None and manifest.get("version") == schema.SCHEMA_VERSION:
        return True
    partitions = [(day, doc_type) for doc_type in schema.DOC_TYPES for day in store.partition_days(doc_type)]
    # newest day first: runs migrate days oldest first, so a day left over is found at once, not after
    # reading the footers of every day already migrated
    for day, doc_type in sorted(partitions, reverse=True):
        # shared: a rewrite (exclusive) is finished or not started, never half-listed
        with store.partition_lock(doc_type, day, shared=True):
            if old_files(store, doc_type, day):
                return False
    store.write_manifest(created=(manifest or {}).get("created"))
    return True
