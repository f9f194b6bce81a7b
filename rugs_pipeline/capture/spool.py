"""The crash-safe spool between the socket and the store.

A recorder session appends records to one open segment at a time:

    spool/<YYYY-MM-DD>/<YYYYMMDD_HHMMSS>_<session_id>_<first seq>.part   (open, appended, fsync'd)
    spool/<YYYY-MM-DD>/<YYYYMMDD_HHMMSS>_<session_id>_<first seq>.seg    (sealed, immutable)

A segment is one JSON object per line: a header line, then one line per record.
Records carry the frame text exactly as received. The writer fsyncs the open
segment at least every ``fsync_interval_s`` (a record is *acknowledged* once it is
fsync'd) and seals it with fsync + rename at least every ``seal_interval_s``, at
each UTC midnight (so a segment belongs to one day partition) and on close.
After a crash ``recover`` completes every ``.part``: it drops a torn last line and
seals what is left, so every acknowledged record survives and nothing else is
left behind.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import orjson

from rugs_pipeline.store.layout import fsync_dir

SPOOL_FORMAT = 1
OPEN_SUFFIX = ".part"
SEALED_SUFFIX = ".seg"

KIND_FRAME = "frame"
KIND_LIFECYCLE = "lifecycle"


@dataclass(frozen=True)
class SpoolRecord:
    seq: int
    ts_ns: int  # receive time, ns since the epoch, UTC
    kind: str  # KIND_FRAME | KIND_LIFECYCLE
    data: str | bytes  # frame text (bytes for binary frames) or lifecycle JSON text
    direction: str | None = "received"  # received | sent; None for lifecycle
    rebuilt: bool = False  # rebuilt from a decoded recording (import), not wire bytes

    def to_line(self) -> bytes:
        obj: dict = {"seq": self.seq, "ts": self.ts_ns, "kind": self.kind, "dir": self.direction}
        if isinstance(self.data, (bytes, bytearray)):
            obj["b64"] = base64.b64encode(self.data).decode()
        else:
            obj["data"] = self.data
        if self.rebuilt:
            obj["rebuilt"] = True
        return orjson.dumps(obj) + b"\n"

    @classmethod
    def from_obj(cls, obj: dict) -> "SpoolRecord":
        data = base64.b64decode(obj["b64"]) if "b64" in obj else obj["data"]
        return cls(obj["seq"], obj["ts"], obj["kind"], data, obj.get("dir"), bool(obj.get("rebuilt")))


@dataclass(frozen=True)
class SegmentHeader:
    session_id: str
    source: str
    format: int = SPOOL_FORMAT

    def to_line(self) -> bytes:
        return orjson.dumps({"spool": self.format, "session_id": self.session_id, "source": self.source}) + b"\n"


@dataclass(frozen=True)
class Segment:
    """A sealed segment file and what its name says about it."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def day(self) -> str:
        return self.path.parent.name

    @property
    def session_id(self) -> str:
        return self.name.split("_")[2]

    @property
    def started(self) -> datetime:
        return datetime.strptime("_".join(self.name.split("_")[:2]), "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)


def new_session_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)


def utc_day(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // 10**9, timezone.utc).strftime("%Y-%m-%d")


def segment_stem(session_id: str, first_seq: int, first_ts_ns: int) -> str:
    stamp = datetime.fromtimestamp(first_ts_ns // 10**9, timezone.utc).strftime("%Y%m%d_%H%M%S")
    return f"{stamp}_{session_id}_{first_seq:012d}"


def read_segment(path: Path) -> tuple[SegmentHeader, list[SpoolRecord], int]:
    """Read a segment; returns (header, records, bytes of valid content).

    A torn or corrupt last line (a crash mid-write) ends the read; the byte count
    tells ``recover`` where to truncate. Sealed segments are never torn.
    """
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    # The last element is what follows the final newline: empty unless torn.
    complete, valid_bytes = lines[:-1], 0
    if not complete:
        raise ValueError(f"{path}: no complete header line")
    header_obj = orjson.loads(complete[0])
    header = SegmentHeader(header_obj["session_id"], header_obj["source"], header_obj.get("spool", SPOOL_FORMAT))
    valid_bytes = len(complete[0]) + 1
    records = []
    for line in complete[1:]:
        try:
            records.append(SpoolRecord.from_obj(orjson.loads(line)))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            break
        valid_bytes += len(line) + 1
    return header, records, valid_bytes


def sealed_segments(spool_dir: Path, day: str | None = None) -> list[Segment]:
    """Sealed segments, oldest first; a directory listing only (cheap enough for a sensor)."""
    if not spool_dir.is_dir():
        return []
    days = [spool_dir / day] if day else sorted(p for p in spool_dir.iterdir() if p.is_dir())
    out = []
    for folder in days:
        if folder.is_dir():
            out.extend(Segment(p) for p in folder.glob(f"*{SEALED_SUFFIX}"))
    return sorted(out, key=lambda s: (s.day, s.name))


def write_sealed_segment(spool_dir: Path, header: SegmentHeader, records: list[SpoolRecord]) -> Segment:
    """Write a whole segment at once (used by import): temp + fsync + rename."""
    first = records[0]
    folder = spool_dir / utc_day(first.ts_ns)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / (segment_stem(header.session_id, first.seq, first.ts_ns) + SEALED_SUFFIX)
    tmp = final.with_name(f".{final.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(header.to_line())
        fh.write(b"".join(r.to_line() for r in records))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(folder)
    return Segment(final)


@dataclass(frozen=True)
class Recovered:
    segment: Segment | None  # None when the open segment held no complete record
    session_id: str
    records: int
    last_seq: int | None
    last_ts_ns: int | None
    torn_bytes: int


def recover(spool_dir: Path) -> list[Recovered]:
    """Seal every open segment left by a crashed writer and remove stray temp files."""
    out: list[Recovered] = []
    if not spool_dir.is_dir():
        return out
    for folder in sorted(p for p in spool_dir.iterdir() if p.is_dir()):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for part in sorted(folder.glob(f"*{OPEN_SUFFIX}")):
            out.append(_recover_one(part))
    return out


def _recover_one(part: Path) -> Recovered:
    size = part.stat().st_size
    try:
        header, records, valid = read_segment(part)
    except (ValueError, orjson.JSONDecodeError, KeyError):
        # Not even a header survived: nothing in it was ever acknowledged.
        part.unlink()
        return Recovered(None, part.stem.split("_")[2], 0, None, None, size)
    if not records:
        part.unlink()
        return Recovered(None, header.session_id, 0, None, None, size - valid)
    if valid < size:
        with open(part, "rb+") as fh:
            fh.truncate(valid)
            os.fsync(fh.fileno())
    final = part.with_suffix(SEALED_SUFFIX)
    os.replace(part, final)
    fsync_dir(part.parent)
    last = records[-1]
    return Recovered(Segment(final), header.session_id, len(records), last.seq, last.ts_ns, size - valid)


class SpoolWriter:
    """Appends one session's records to segments; see the module docstring for the guarantees.

    Not thread-safe: one writer per session, driven from one event loop.
    """

    def __init__(
        self,
        spool_dir: Path,
        session_id: str,
        source: str,
        *,
        seal_interval_s: float = 30.0,
        fsync_interval_s: float = 1.0,
        max_segment_bytes: int = 256 * 1024 * 1024,
        first_seq: int = 1,
        clock=time.monotonic,
    ) -> None:
        self.spool_dir = spool_dir
        self.header = SegmentHeader(session_id, source)
        self.seal_interval_s = seal_interval_s
        self.fsync_interval_s = fsync_interval_s
        self.max_segment_bytes = max_segment_bytes
        self.next_seq = first_seq
        self.acked_seq = first_seq - 1
        self.sealed: list[Segment] = []
        self._clock = clock
        self._fh = None
        self._path: Path | None = None
        self._day: str | None = None
        self._opened_at = 0.0
        self._synced_at = 0.0
        self._bytes = 0
        self._pending = 0

    @property
    def session_id(self) -> str:
        return self.header.session_id

    def append(self, kind: str, data: str | bytes, ts_ns: int, direction: str | None = "received", rebuilt: bool = False) -> int:
        """Append one record; returns its seq. Durable after the next ``sync``."""
        day = utc_day(ts_ns)
        if self._fh is not None and day != self._day:
            self.seal()
        seq = self.next_seq
        if self._fh is None:
            self._open(seq, ts_ns, day)
        line = SpoolRecord(seq, ts_ns, kind, data, direction, rebuilt).to_line()
        self._fh.write(line)
        self._bytes += len(line)
        self._pending += 1
        self.next_seq += 1
        return seq

    def tick(self) -> None:
        """Call often (at least every ``fsync_interval_s``): fsyncs and seals on schedule."""
        if self._fh is None:
            return
        now = self._clock()
        if now - self._opened_at >= self.seal_interval_s or self._bytes >= self.max_segment_bytes:
            self.seal()
        elif self._pending and now - self._synced_at >= self.fsync_interval_s:
            self.sync()

    def sync(self) -> None:
        if self._fh is None or not self._pending:
            return
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._synced_at = self._clock()
        self._pending = 0
        self.acked_seq = self.next_seq - 1

    def seal(self) -> Segment | None:
        if self._fh is None:
            return None
        self.sync()
        self._fh.close()
        self._fh = None
        final = self._path.with_suffix(SEALED_SUFFIX)
        os.replace(self._path, final)
        fsync_dir(final.parent)
        segment = Segment(final)
        self.sealed.append(segment)
        return segment

    def close(self) -> Segment | None:
        return self.seal()

    def _open(self, seq: int, ts_ns: int, day: str) -> None:
        folder = self.spool_dir / day
        folder.mkdir(parents=True, exist_ok=True)
        self._path = folder / (segment_stem(self.session_id, seq, ts_ns) + OPEN_SUFFIX)
        self._fh = open(self._path, "xb")
        self._fh.write(self.header.to_line())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        fsync_dir(folder)
        self._day = day
        self._opened_at = self._synced_at = self._clock()
        self._bytes = 0
        self._pending = 0


def iter_segment_records(segment: Segment) -> Iterator[SpoolRecord]:
    _, records, _ = read_segment(segment.path)
    yield from records
