"""Landing: sealed spool segments become ``ws_event`` Parquet, exactly once.

Each segment lands as one file whose name is a function of the segment, so
landing it again (a retried run, two runs of one day at once, a crash between
writing the file and recording it in the ledger) rewrites the same file with the
same rows instead of adding a duplicate. The ledger (``manifests/landed/``) only
saves work; the deterministic name is what makes landing idempotent.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from rugs_pipeline.formats import spool
from rugs_pipeline.formats.protocol import parse_frame
from rugs_pipeline.store.layout import Store, short_hash
from rugs_pipeline.store.versions import fill_typed_columns

DOC_TYPE = "ws_event"
# Engine.IO's default maxPayload, the most a server should put in one frame. A bigger frame
# is kept whole like any other (it still carries the feed) and flagged in parse_error.
OVERSIZED_CHARS = 1_000_000
OVERSIZED = "oversized frame"


@dataclass
class LandingReport:
    segments: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    rows: int = 0
    frames_by_kind: dict[str, int] = field(default_factory=dict)
    events_by_name: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    oversized: int = 0
    lifecycle: int = 0
    bytes: int = 0

    def add(self, segment: spool.Segment, path: Path, table: pa.Table, size: int) -> None:
        self.segments.append(segment.name)
        self.files.append(str(path))
        self.rows += table.num_rows
        self.bytes += size
        _count(self.frames_by_kind, table["frame_kind"])
        _count(self.events_by_name, table.filter(pc.equal(table["frame_kind"], "event"))["event_name"])
        self.malformed = self.frames_by_kind.get("malformed", 0)
        self.oversized += pc.sum(pc.starts_with(table["parse_error"].cast(pa.string()), OVERSIZED)).as_py() or 0
        self.lifecycle = self.frames_by_kind.get("lifecycle", 0)


def _count(counter: dict[str, int], column: pa.ChunkedArray) -> None:
    for row in column.value_counts().to_pylist():
        counter[row["values"]] = counter.get(row["values"], 0) + row["counts"]


# Frames kept as bytes land base64-encoded, with one of these as their parse_error.
BINARY_STORED = "binary websocket frame, stored base64-encoded"
NOT_UTF8_STORED = "text frame that is not valid UTF-8, stored base64-encoded"


def records_to_table(header: spool.SegmentHeader, records: list[spool.SpoolRecord]) -> pa.Table:
    """One ``ws_event`` row per spool record: the frame as received plus what the framing says."""
    cols: dict[str, list] = {
        name: []
        for name in (
            "ts", "seq", "direction", "raw_json", "event_name", "frame_kind", "is_rebuilt", "parse_error", "game_id",
        )
    }
    for rec in records:
        cols["ts"].append(rec.ts_ns // 1000)
        cols["seq"].append(rec.seq)
        cols["direction"].append(rec.direction)
        cols["is_rebuilt"].append(rec.rebuilt)
        game_id = None
        if rec.kind == spool.KIND_LIFECYCLE:
            raw, kind, error = rec.data, "lifecycle", None
            name = _lifecycle_name(rec.data)
        elif isinstance(rec.data, bytes):
            raw = base64.b64encode(rec.data).decode()
            kind, name = "malformed", None
            error = NOT_UTF8_STORED if rec.not_utf8 else BINARY_STORED
        else:
            raw = rec.data
            frame = parse_frame(raw)
            kind, name, error = frame.kind, frame.event_name, frame.error
            if error is None and len(raw) > OVERSIZED_CHARS:
                error = f"{OVERSIZED}: {len(raw)} characters, over Engine.IO's maxPayload of {OVERSIZED_CHARS}"
            payload = frame.payload
            if isinstance(payload, dict):
                value = payload.get("gameId")
                game_id = value if isinstance(value, str) else None
        cols["raw_json"].append(raw)
        cols["event_name"].append(name)
        cols["frame_kind"].append(kind)
        cols["parse_error"].append(error)
        cols["game_id"].append(game_id)
    n = len(records)
    return pa.table(
        {
            "ts": pa.array(cols["ts"], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "source": pa.array([header.source] * n, pa.string()),
            "doc_type": pa.array([DOC_TYPE] * n, pa.string()),
            "session_id": pa.array([header.session_id] * n, pa.string()),
            **{k: v for k, v in cols.items() if k != "ts"},
        }
    )


def _lifecycle_name(data: str | bytes) -> str:
    try:
        value = orjson.loads(data).get("event")
    except (orjson.JSONDecodeError, AttributeError):
        return "unreadable_lifecycle_record"
    return value if isinstance(value, str) else "unnamed_lifecycle_record"


def landed_file_name(segment_name: str) -> str:
    """The ws_event file a segment (named by its stem, as in the ledger) lands as."""
    return f"{spool.parse_stem(segment_name)[0].strftime('%Y%m%d_%H%M%S')}_{short_hash(segment_name)}.parquet"


def ledger_path(store: Store, segment: spool.Segment) -> Path:
    return store.manifests_dir / "landed" / segment.day / f"{segment.name}.json"


def landed_names(store: Store, day: str) -> set[str]:
    return {p.stem for p in store.files.files(store.manifests_dir / "landed" / day, "*.json")}


def pending_segments(store: Store, day: str | None = None) -> list[spool.Segment]:
    """Sealed segments not in the ledger yet (directory listings only)."""
    segments = spool.sealed_segments(store.spool_dir, day)
    # one ledger listing per day: the sensor runs this every tick over thousands of segments
    landed = {d: landed_names(store, d) for d in {seg.day for seg in segments}}
    return [seg for seg in segments if seg.name not in landed[seg.day]]


def land_segment(store: Store, segment: spool.Segment) -> tuple[Path, pa.Table]:
    header, records, _ = spool.read_segment(segment.path)
    table = fill_typed_columns(records_to_table(header, records))
    path = store.write_partition_file(DOC_TYPE, segment.day, table, landed_file_name(segment.name))
    entry = {"segment": segment.name, "file": path.name, "rows": table.num_rows,
             "first_seq": records[0].seq if records else None, "last_seq": records[-1].seq if records else None}
    store.files.write_bytes(ledger_path(store, segment), json.dumps(entry).encode())
    return path, table


def land_day(store: Store, day: str) -> LandingReport:
    """Land every sealed segment of ``day`` that is not landed yet."""
    store.ensure_manifest()
    report = LandingReport()
    # The ledger is read under the lock: a segment that compaction merged while this run
    # waited is landed, and landing it again would duplicate its rows.
    with store.partition_lock(DOC_TYPE, day, shared=True):
        store.remove_stale_temps(DOC_TYPE, day)
        store.files.remove_stale_temps(store.manifests_dir / "landed" / day)
        for segment in pending_segments(store, day):
            path, table = land_segment(store, segment)
            report.add(segment, path, table, store.files.size(path))
    return report
