"""Import recordings of earlier recorders into the spool, as if a recorder had captured them.

Each file becomes one spool session whose id is derived from the file's bytes
(``import-<12 hex of sha256>``), so importing a file again rewrites the very same
segments byte for byte instead of adding a duplicate session. Events become frame
records holding the rebuilt wire text (``42["name",...]``, flagged ``rebuilt``); the
client library's ``connect`` / ``disconnect`` pseudo-events become lifecycle records;
every unreadable line becomes an ``import_error`` lifecycle record carrying its line
number, reason and text, so nothing is dropped without a trace in the store; so does a
line (or array element) over the frame limit, which is read past without being held.

Memory stays within about twice the frame limit whatever the file's size: records go to the
spool in segments of one UTC day each, closed once a segment holds a quarter of the limit
(4 MiB by default) besides the line being read.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Iterable, Iterator

import orjson

from rugs_pipeline.formats.recordings import BadLine, RecordedEvent, detect_format, read_recording
from rugs_pipeline.formats.spool import (
    KIND_FRAME,
    KIND_LIFECYCLE,
    MAX_FRAME_BYTES,
    Segment,
    SegmentHeader,
    SpoolRecord,
    utc_day,
    write_sealed_segment,
)
from rugs_pipeline.formats.protocol import encode_event

SOURCE = "replay"
# Pseudo-events python-socketio reports for its own connection state: not server frames.
_LIFECYCLE_EVENTS = {"connect": "connected", "disconnect": "disconnected"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass
class FileReport:
    path: Path
    format: str
    session_id: str
    events: int = 0  # readable events (frames and connect/disconnect) imported
    bad_lines: list[BadLine] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)

    @property
    def days(self) -> list[str]:
        """The UTC days (spool partitions) its records went to."""
        return sorted({segment.day for segment in self.segments})


def session_id_for(path: Path) -> str:
    with open(path, "rb") as fh:
        return "import-" + hashlib.file_digest(fh, "sha256").hexdigest()[:12]


def import_recordings(paths: list[Path], spool_dir: Path, tz: tzinfo = timezone.utc,
                      max_bytes: int = MAX_FRAME_BYTES) -> list[FileReport]:
    """Import each file as one spool session; see the module docstring."""
    return list(iter_import(paths, spool_dir, tz, max_bytes))


def iter_import(paths: list[Path], spool_dir: Path, tz: tzinfo = timezone.utc,
                max_bytes: int = MAX_FRAME_BYTES) -> Iterator[FileReport]:
    """Like ``import_recordings``, one report as each file is done (for progress display).

    Every file's format is checked before anything is written, so a mistyped path
    (RecordingError) does not leave a partial import behind.
    """
    paths = [Path(p) for p in paths]
    formats = [detect_format(p, max_bytes) for p in paths]
    for path, fmt in zip(paths, formats):
        yield _import_one(path, fmt, spool_dir, tz, max_bytes)


def _import_one(path: Path, fmt: str, spool_dir: Path, tz: tzinfo, max_bytes: int) -> FileReport:
    report = FileReport(path, fmt, session_id_for(path))
    header = SegmentHeader(report.session_id, SOURCE)
    records = _spool_records(read_recording(path, tz, max_bytes), path.name, report)
    for run in _segment_runs(records, max_bytes // 4):
        report.segments.append(write_sealed_segment(spool_dir, header, run))
    return report


def _segment_runs(records: Iterable[SpoolRecord], max_bytes: int) -> Iterator[list[SpoolRecord]]:
    """Runs of records of one UTC day (a new segment at midnight, as the live writer seals),
    each closed once it holds ``max_bytes`` of data, so a big file is never held whole."""
    run: list[SpoolRecord] = []
    day, size = None, 0
    for record in records:
        record_day = utc_day(record.ts_ns)
        if run and (record_day != day or size >= max_bytes):
            yield run
            run, size = [], 0
        run.append(record)
        day, size = record_day, size + len(record.data)
    if run:
        yield run


def _spool_records(items: Iterable[RecordedEvent | BadLine], file_name: str, report: FileReport) -> Iterator[SpoolRecord]:
    """Records in file order, seq 1..n. Fills ``report`` as it goes.

    A bad line has no time of its own: it takes the previous good record's, or the next
    one's when it comes first. Bad lines in a file without any good record have no time
    to be stored at; they are left in ``report.bad_lines`` only.
    """
    seq = itertools.count(1)
    waiting: list[BadLine] = []
    ts_ns: int | None = None
    for item in items:
        if isinstance(item, BadLine):
            report.bad_lines.append(item)
            if ts_ns is None:
                waiting.append(item)
            else:
                yield _error_record(next(seq), ts_ns, item, file_name)
            continue
        report.events += 1
        ts_ns = (item.ts - _EPOCH) // timedelta(microseconds=1) * 1000
        for bad in waiting:
            yield _error_record(next(seq), ts_ns, bad, file_name)
        waiting.clear()
        yield _event_record(next(seq), ts_ns, item, file_name)


def _event_record(seq: int, ts_ns: int, event: RecordedEvent, file_name: str) -> SpoolRecord:
    if event.name in _LIFECYCLE_EVENTS and not event.args:
        data = {"event": _LIFECYCLE_EVENTS[event.name], "imported": True, "file": file_name}
        return SpoolRecord(seq, ts_ns, KIND_LIFECYCLE, _json(data), direction=None)
    return SpoolRecord(seq, ts_ns, KIND_FRAME, encode_event(event.name, *event.args), event.direction, rebuilt=True)


def _error_record(seq: int, ts_ns: int, bad: BadLine, file_name: str) -> SpoolRecord:
    data = {"event": "import_error", "file": file_name, "line": bad.line, "reason": bad.reason, "text": bad.text}
    return SpoolRecord(seq, ts_ns, KIND_LIFECYCLE, _json(data), direction=None)


def _json(value: dict) -> str:
    return orjson.dumps(value).decode()
