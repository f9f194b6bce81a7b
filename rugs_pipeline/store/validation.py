"""Validation of a stored partition against its schema version, with pandera (polars backend).

Each file is checked against the registry's version it was written at (``versions.py``): a
store part-way through a migration to a newer minor version is valid, only not current.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandera.polars as pa
import polars as pl
import pyarrow as arrow
import pyarrow.parquet as pq
from pandera.errors import SchemaErrors

from rugs_pipeline.store import models, schema, versions
from rugs_pipeline.store.layout import (
    Store, SchemaVersionError, UnreadableFileError, file_schema_version, naming_unreadable,
)
from rugs_pipeline.store.models import pandera_schema

VALIDATION_BATCH_ROWS = 16_384  # a few tens of MB of frames at a time

@dataclass
class ValidationResult:
    doc_type: str
    day: str
    rows: int = 0
    files: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def validate_table(doc_type: str, table: arrow.Table, checks: pa.DataFrameSchema | None = None) -> list[str]:
    """pandera's verdict on a table's types, nullability and invariants; [] when valid."""
    frame = pl.from_arrow(table)
    try:
        (checks or pandera_schema(doc_type)).validate(frame, lazy=True)
    except SchemaErrors as exc:
        cases = exc.failure_cases
        return [
            f"{row['column'] or '<frame>'}: {row['check']} failed (e.g. {row['failure_case']!r})"
            for row in cases.unique(subset=["column", "check"], keep="first", maintain_order=True).iter_rows(named=True)
        ]
    return []


def validate_partition(store: Store, doc_type: str, day: str) -> ValidationResult:
    """Check one stored partition: schema version (manifest and every file), then pandera.

    The manifest and each file must be at a version of the registry; a file's columns and rows
    are checked against its own version.

    Rows are checked a batch at a time, and only in files not checked before: a file is
    immutable once written (a rewrite is a new file, with a new size or mtime), so its verdict
    is kept in ``manifests/validated/`` until it or these rules change. Uniqueness over the
    partition reads the key columns alone, and joins the new files' keys to the others'. A
    landing run, which adds one file to a day, thus costs the same at midnight as at noon.
    """
    result = ValidationResult(doc_type, day)
    try:
        manifest = store.read_manifest()
    except SchemaVersionError as exc:
        result.failures.append(str(exc))
    else:
        if manifest is None:
            result.failures.append(f"{store.manifest_path} is missing")
        elif not versions.readable(manifest.get("version")):
            result.failures.append(f"manifest schema version {manifest.get('version')!r} is not one of "
                                   f"{', '.join(versions.BY_VERSION)}")
    with store.partition_lock(doc_type, day, shared=True):  # compaction would swap the files mid-check
        files = store.partition_files(doc_type, day)
        result.files = len(files)
        readable, version_of = [], {}
        for path in files:
            try:
                found = file_schema_version(path, store.filesystem)
            except UnreadableFileError as exc:
                result.failures.append(str(exc))
                continue
            version = versions.BY_VERSION.get(found)
            if version is None:
                result.failures.append(f"{path.name}: file schema version {found!r} is not one of "
                                       f"{', '.join(versions.BY_VERSION)}")
                continue
            if not pq.read_schema(str(path), filesystem=store.filesystem).equals(version.schema, check_metadata=False):
                result.failures.append(f"{path.name}: columns differ from schema {version.version}")
                continue
            readable.append(path)
            version_of[path] = version
        known = _Verdicts(store, doc_type, day)
        fresh = [path for path in readable if known.get(path) is None]
        checks = {v.version: v.pandera(doc_type) for v in version_of.values()}
        for path in fresh:
            known.put(path, *_check_file(store, doc_type, path, checks[version_of[path].version]))
        for path in readable:
            rows, failures = known.get(path)
            result.rows += rows
            result.failures.extend(f for f in failures if f not in result.failures)
        unique = pandera_schema(doc_type).unique  # the same keys in every version
        duplicates = _duplicates(store, fresh, [p for p in readable if p not in fresh], unique) if unique else []
        result.failures.extend(duplicates)
        if not duplicates:  # a duplicate must be found again next time: its files stay unchecked
            known.save(readable)
    return result


def _check_file(store: Store, doc_type: str, path: Path, checks: pa.DataFrameSchema) -> tuple[int, list[str]]:
    """Rows and pandera failures of one file, read a batch at a time (uniqueness is the partition's)."""
    per_batch = copy.deepcopy(checks)
    per_batch.unique = None
    rows, failures = 0, []
    with naming_unreadable([path], store.filesystem):
        for batch in pq.ParquetFile(str(path), filesystem=store.filesystem).iter_batches(VALIDATION_BATCH_ROWS):
            rows += batch.num_rows
            failures += [f for f in validate_table(doc_type, arrow.Table.from_batches([batch]), per_batch)
                         if f not in failures]
    return rows, failures


# Verdicts are only as good as the rules that gave them: this module, the models, the schema and its versions.
_RULES = hashlib.sha256(b"".join(Path(m.__file__).read_bytes() for m in (models, schema, versions))
                        + Path(__file__).read_bytes()).hexdigest()[:16]


class _Verdicts:
    """Per-file verdicts of a partition: ``manifests/validated/<doc_type>/<day>.json``."""

    def __init__(self, store: Store, doc_type: str, day: str) -> None:
        self.store = store
        self.path = store.manifests_dir / "validated" / doc_type / f"{day}.json"
        try:
            saved = json.loads(store.files.read_text(self.path))
        except (FileNotFoundError, json.JSONDecodeError):
            saved = {}
        self.files: dict[str, dict] = saved.get("files", {}) if saved.get("rules") == _RULES else {}

    def get(self, path: Path) -> tuple[int, list[str]] | None:
        verdict = self.files.get(path.name)
        if verdict is None or verdict["stamp"] != self.store.files.stamp(path):
            return None
        return verdict["rows"], verdict["failures"]

    def put(self, path: Path, rows: int, failures: list[str]) -> None:
        self.files[path.name] = {"stamp": self.store.files.stamp(path), "rows": rows, "failures": failures}

    def save(self, present: list[Path]) -> None:
        names = {p.name for p in present}
        kept = {name: v for name, v in self.files.items() if name in names}
        self.store.files.write_bytes(self.path, json.dumps({"rules": _RULES, "files": kept}).encode())


def _duplicates(store: Store, fresh: list[Path], others: list[Path], keys: list[str]) -> list[str]:
    """A key twice among the fresh files, or in a fresh file and another (the others were unique already)."""
    if not fresh:
        return []
    cols = ", ".join(keys)
    con = store.duckdb()
    try:
        con.execute(f"CREATE TEMP TABLE fresh AS SELECT {cols} FROM read_parquet(?, hive_partitioning = false)",
                    [[str(f) for f in fresh]])
        dup = con.execute(f"SELECT {cols}, count(*) AS n FROM fresh GROUP BY ALL HAVING n > 1 LIMIT 1").fetchall()
        if not dup and others:
            dup = con.execute(f"SELECT {cols}, 2 FROM fresh JOIN (SELECT {cols} FROM read_parquet(?, hive_partitioning"
                              f" = false)) USING ({cols}) LIMIT 1", [[str(f) for f in others]]).fetchall()
    finally:
        con.close()
    return [f"{cols}: uniqueness failed (e.g. {dict(zip(keys, dup[0]))}, {dup[0][-1]} rows)"] if dup else []
