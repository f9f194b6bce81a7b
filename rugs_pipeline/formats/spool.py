"""The crash-safe spool between the socket and the store.

A recorder session appends records to one open segment at a time:

    spool/<YYYY-MM-DD>/<YYYYMMDD_HHMMSS>_<session_id>_<first seq>.part   (open, appended, fsync'd)
    spool/<YYYY-MM-DD>/<YYYYMMDD_HHMMSS>_<session_id>_<first seq>.seg    (sealed, immutable)

A segment is one JSON object per line: a header line, then one line per record.
Records carry the frame text exactly as received. The writer fsyncs the open
segment at least every ``fsync_interval_s`` (a record is *acknowledged* once it is
fsync'd) and seals it with fsync + rename at least every ``seal_interval_s``, at
each UTC midnight (so a segment belongs to one day partition) and on close.
A live recorder session also keeps two files beside the day folders:

    spool/<session_id>.lock   held (flock) while the session runs
    spool/<session_id>.ack    {"acked_seq", "acked_ts_ns", ...status}, replaced after each fsync

After a crash ``recover`` completes every ``.part`` of a dead session: it drops a
torn last line and seals what is left, so every acknowledged record survives and
nothing else is left behind.

Every file here is created mode 0600: records may hold what the feed URL or the
server's messages carry.
"""

from __future__ import annotations

import base64
import fcntl
import os
import secrets
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import orjson

from rugs_pipeline.formats.fs import fsync_dir

SPOOL_FORMAT = 1
OPEN_SUFFIX = ".part"
SEALED_SUFFIX = ".seg"
LOCK_SUFFIX = ".lock"
ACK_SUFFIX = ".ack"

FILE_MODE = 0o600

KIND_FRAME = "frame"
KIND_LIFECYCLE = "lifecycle"
# The largest frame a record may hold by default: the recorder refuses bigger ones (--max-frame-mb),
# the importer turns longer lines into import_error records. It bounds both processes' memory.
MAX_FRAME_BYTES = 16 * 2**20


@dataclass(frozen=True)
class SpoolRecord:
    seq: int
    ts_ns: int  # receive time, ns since the epoch, UTC
    kind: str  # KIND_FRAME | KIND_LIFECYCLE
    data: str | bytes  # frame text (bytes for binary frames) or lifecycle JSON text
    direction: str | None = "received"  # received | sent; None for lifecycle
    rebuilt: bool = False  # rebuilt from a decoded recording (import), not wire bytes
    not_utf8: bool = False  # data: the bytes of a text frame that are not valid UTF-8 (else bytes: a binary frame)

    def to_line(self) -> bytes:
        obj: dict = {"seq": self.seq, "ts": self.ts_ns, "kind": self.kind, "dir": self.direction}
        if isinstance(self.data, (bytes, bytearray)):
            obj["b64"] = base64.b64encode(self.data).decode()
        else:
            obj["data"] = self.data
        if self.rebuilt:
            obj["rebuilt"] = True
        if self.not_utf8:
            obj["not_utf8"] = True
        return orjson.dumps(obj) + b"\n"

    @classmethod
    def from_obj(cls, obj: dict) -> "SpoolRecord":
        data = base64.b64decode(obj["b64"]) if "b64" in obj else obj["data"]
        return cls(obj["seq"], obj["ts"], obj["kind"], data, obj.get("dir"), bool(obj.get("rebuilt")),
                   bool(obj.get("not_utf8")))


@dataclass(frozen=True)
class SegmentHeader:
    session_id: str
    source: str
    format: int = SPOOL_FORMAT

    def to_line(self) -> bytes:
        return orjson.dumps({"spool": self.format, "session_id": self.session_id, "source": self.source}) + b"\n"


@dataclass(frozen=True)
class Segment:
    """A segment file (sealed, or open while ``.part``) and what its name says about it."""

    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def day(self) -> str:
        return self.path.parent.name

    @property
    def session_id(self) -> str:
        return parse_stem(self.name)[1]

    @property
    def started(self) -> datetime:
        return parse_stem(self.name)[0]


def parse_stem(stem: str) -> tuple[datetime, str, int]:
    """(start, session id, first seq) of a segment's name, ``segment_stem``'s inverse: the one parser of it."""
    parts = stem.split("_")
    started = datetime.strptime(f"{parts[0]}_{parts[1]}", "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    return started, parts[2], int(parts[3])


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
    out = [Segment(p) for folder in days if folder.is_dir() for p in folder.glob(f"*{SEALED_SUFFIX}")]
    return sorted(out, key=lambda s: (s.day, s.name))


def segments_by_session(spool_dir: Path) -> dict[str, list[Path]]:
    """Every segment file, sealed or open, of each session, in seq order."""
    out: dict[str, list[Path]] = {}
    if spool_dir.is_dir():
        for folder in spool_dir.iterdir():
            if folder.is_dir():
                for path in [*folder.glob(f"*{SEALED_SUFFIX}"), *folder.glob(f"*{OPEN_SUFFIX}")]:
                    out.setdefault(Segment(path).session_id, []).append(path)
    return {s: sorted(paths, key=lambda p: parse_stem(p.stem)[2]) for s, paths in out.items()}


def write_sealed_segment(spool_dir: Path, header: SegmentHeader, records: list[SpoolRecord]) -> Segment:
    """Write a whole segment at once (used by import): temp + fsync + rename."""
    first = records[0]
    folder = spool_dir / utc_day(first.ts_ns)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / (segment_stem(header.session_id, first.seq, first.ts_ns) + SEALED_SUFFIX)
    tmp = final.with_name(f".{final.name}.tmp")
    with open_private(tmp, "wb") as fh:
        fh.write(header.to_line())
        fh.writelines(r.to_line() for r in records)  # one line at a time: no copy of the whole segment
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(folder)
    return Segment(final)


@dataclass(frozen=True)
class Recovered:
    """What ``recover`` found of one session that ended without closing its writer."""

    session_id: str
    segments: tuple[Segment, ...]  # its open segments, sealed now
    records: int
    last_seq: int | None
    last_ts_ns: int | None
    torn_bytes: int
    status: dict  # its last acknowledgement file ({} if it left none)
    # With ``recover(clear=False)``: its lock, held until ``clear_recovered`` removes its leftovers.
    lock: object = field(default=None, repr=False, compare=False)

    @property
    def segment(self) -> Segment | None:
        return self.segments[-1] if self.segments else None


def lock_path(spool_dir: Path, session_id: str) -> Path:
    return spool_dir / f"{session_id}{LOCK_SUFFIX}"


def ack_path(spool_dir: Path, session_id: str) -> Path:
    return spool_dir / f"{session_id}{ACK_SUFFIX}"


def read_ack(spool_dir: Path, session_id: str) -> dict:
    """A session's acknowledgement file ({} when absent or unreadable)."""
    try:
        value = orjson.loads(ack_path(spool_dir, session_id).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def open_private(path: Path, mode: str):
    """``open`` for a new or existing file, created mode 0600 (``mode``: "wb", "xb", "ab" or "a+b")."""
    flags = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "xb": os.O_WRONLY | os.O_CREAT | os.O_EXCL,
             "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a+b": os.O_RDWR | os.O_CREAT | os.O_APPEND}[mode]
    return os.fdopen(os.open(path, flags, FILE_MODE), mode)


def locked_sessions(spool_dir: Path) -> list[str]:
    """The sessions that have a lock file: recording now, or crashed (``session_alive`` tells which)."""
    if not spool_dir.is_dir():
        return []
    return sorted(p.name.removesuffix(LOCK_SUFFIX) for p in spool_dir.glob(f"*{LOCK_SUFFIX}"))


def session_alive(spool_dir: Path, session_id: str) -> bool:
    """Whether a process holds the session's lock (it is recording now). Changes nothing."""
    try:
        fh = open(lock_path(spool_dir, session_id), "rb")
    except FileNotFoundError:
        return False
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
    return False


def _try_lock(path: Path):
    """The open, exclusively locked file, or None when a live process holds it."""
    fh = open_private(path, "a+b")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    return fh


def recover(spool_dir: Path, *, clear: bool = True) -> list[Recovered]:
    """Seal the open segments of every session whose writer is gone, and clear its leftovers.

    A writer with ``status_files`` holds ``<session>.lock`` while it lives (the kernel
    drops the lock when the process dies, however it dies), so recovering never
    touches a session that is still recording.

    The leftover lock is what marks a session as crashed. With ``clear=False`` it stays,
    held by the caller, until ``clear_recovered``: a recorder first makes its own record
    of the crash durable, so that if it dies in between, the next start still finds the
    crashed session (sealing is idempotent; recovering again finds nothing to seal).
    """
    if not spool_dir.is_dir():
        return []
    live: set[str] = set()
    dead: dict[str, object] = {}  # session -> its lock, held while we clear it
    for session in locked_sessions(spool_dir):
        held = _try_lock(lock_path(spool_dir, session))
        if held is None:
            live.add(session)
        else:
            dead[session] = held
    parts: dict[str, list[Path]] = {}
    for folder in sorted(p for p in spool_dir.iterdir() if p.is_dir()):
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)
        for part in sorted(folder.glob(f"*{OPEN_SUFFIX}")):
            session = Segment(part).session_id
            if session not in live:
                parts.setdefault(session, []).append(part)
    out = []
    for session in sorted(set(parts) | set(dead)):
        found = [_recover_one(p) for p in parts.get(session, [])]
        kept = [f for f in found if f[0] is not None]
        last = max((f[1][-1] for f in kept), key=lambda r: r.seq, default=None)
        out.append(Recovered(
            session, tuple(f[0] for f in kept), sum(len(f[1]) for f in kept),
            last.seq if last else None, last.ts_ns if last else None, sum(f[2] for f in found),
            read_ack(spool_dir, session), dead.get(session),
        ))
    if clear:
        clear_recovered(spool_dir, out)
    return out


def clear_recovered(spool_dir: Path, recovered: list[Recovered]) -> None:
    """Remove the lock, acknowledgement and temp files of recovered sessions, and release their locks."""
    for rec in recovered:
        if rec.lock is None:
            continue
        for leftover in (ack_path(spool_dir, rec.session_id), spool_dir / f".{rec.session_id}{ACK_SUFFIX}.tmp",
                         lock_path(spool_dir, rec.session_id)):
            leftover.unlink(missing_ok=True)
        rec.lock.close()


def release_recovered(recovered: list[Recovered]) -> None:
    """Release the locks of recovered sessions, leaving their leftovers for the next start to recover again."""
    for rec in recovered:
        if rec.lock is not None:
            rec.lock.close()


def _recover_one(part: Path) -> tuple[Segment | None, list[SpoolRecord], int]:
    """(the sealed segment or None if nothing was kept, its records, torn bytes dropped)."""
    size = part.stat().st_size
    try:
        _, records, valid = read_segment(part)
    except (ValueError, orjson.JSONDecodeError, KeyError):
        valid, records = 0, []  # not even a header survived: nothing in it was ever acknowledged
    if not records:
        part.unlink()
        return None, [], size - valid
    if valid < size:
        with open(part, "rb+") as fh:
            fh.truncate(valid)
            os.fsync(fh.fileno())
    final = part.with_suffix(SEALED_SUFFIX)
    os.replace(part, final)
    fsync_dir(part.parent)
    return Segment(final), records, size - valid


class AppendFile:
    """A file appended to by one thread and made durable by another, one step at a time.

    ``write`` and ``flush`` run where the data arrives; ``make_durable`` (fsync) may
    run in a worker thread meanwhile, since it only needs the descriptor. ``synced``
    is the length known to be on disk: ``abandon`` cuts the file back to it.
    """

    def __init__(self, path: Path, *, new: bool = True) -> None:
        self.path = path
        self.fh = open_private(path, "xb" if new else "ab")
        self.written = self.synced = self.fh.tell()
        self._dir_synced = not new

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.written += len(data)

    def flush(self) -> int:
        """Hand buffered bytes to the kernel; returns the length a following fsync covers."""
        self.fh.flush()
        return self.written

    def make_durable(self, length: int) -> None:
        os.fsync(self.fh.fileno())
        if not self._dir_synced:  # a new file's name must survive a crash too
            fsync_dir(self.path.parent)
            self._dir_synced = True
        self.synced = length

    def abandon(self) -> None:
        """After a failed write or fsync: close and keep only what is known durable."""
        try:
            self.fh.close()
        except OSError:
            pass  # the buffered tail could not be written: it is cut below anyway
        os.truncate(self.path, self.synced)


@dataclass
class _OpenSegment:
    file: AppendFile
    day: str
    opened_at: float
    last_seq: int = 0
    last_ts_ns: int = 0
    synced_seq: int = 0  # 0: none of its records is durable yet
    synced_ts_ns: int = 0


@dataclass
class DurabilityJob:
    """One step that makes records durable: fsync the segment, and seal it if asked.

    ``run`` is the blocking part (it may run in a worker thread); the writer's
    ``finish`` then moves the acknowledgement forward. Steps must run one at a time,
    in the order the writer hands them out.
    """

    segment: _OpenSegment
    length: int
    upto_seq: int
    upto_ts_ns: int
    seal: bool
    ack: tuple[Path, dict] | None

    def run(self) -> None:
        self.segment.file.make_durable(self.length)
        self.segment.synced_seq, self.segment.synced_ts_ns = self.upto_seq, self.upto_ts_ns
        if self.seal:
            self.segment.file.fh.close()
            part = self.segment.file.path
            os.replace(part, part.with_suffix(SEALED_SUFFIX))
            fsync_dir(part.parent)
        if self.ack is not None:
            self._write_ack(*self.ack)

    def _write_ack(self, path: Path, status: dict) -> None:
        # Atomic (rename), not fsync'd: it must survive the process, not the machine, whose
        # crash leaves the spool itself as the record of what was kept. Best effort: on a full
        # disk the records are safe but their acknowledgement cannot be published.
        tmp = path.with_name(f".{path.name}.tmp")
        try:
            with open_private(tmp, "wb") as fh:
                fh.write(orjson.dumps({**status, "acked_seq": self.upto_seq, "acked_ts_ns": self.upto_ts_ns,
                                       "updated_ns": time.time_ns()}))
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)


class SpoolWriter:
    """Appends one session's records to segments; see the module docstring for the guarantees.

    Not thread-safe: one writer per session, appended to from one thread. Durability
    comes either from ``tick`` / ``sync`` / ``seal`` (blocking, in the caller's
    thread) or from running ``next_job`` steps elsewhere and handing each back to
    ``finish``, so that fsync never stalls the appending thread.

    With ``status_files`` the writer holds ``<session>.lock`` for its lifetime and
    keeps ``<session>.ack`` (JSON: ``acked_seq`` and the ``status`` fields) current
    after each step: that is how other processes see what is acknowledged.
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
        status_files: bool = False,
    ) -> None:
        self.spool_dir = spool_dir
        self.header = SegmentHeader(session_id, source)
        self.seal_interval_s = seal_interval_s
        self.fsync_interval_s = fsync_interval_s
        self.max_segment_bytes = max_segment_bytes
        self.next_seq = first_seq
        self.acked_seq = first_seq - 1
        self.acked_ts_ns = 0  # receive time of the last acknowledged record
        self.last_sealed: Segment | None = None  # not a list: a recorder runs for weeks
        self.segments_sealed = 0
        self.status: dict = {"session_id": session_id, "pid": os.getpid()}
        self._clock = clock
        self._current: _OpenSegment | None = None
        self._sealing: list[_OpenSegment] = []  # detached, waiting for their sealing step
        self._synced_at = clock()
        self._held: list[tuple[AppendFile, bytes]] | None = None  # inside ``together``
        self._lock = None
        if status_files:
            spool_dir.mkdir(parents=True, exist_ok=True)
            self._lock = _try_lock(lock_path(spool_dir, session_id))
            if self._lock is None:
                raise RuntimeError(f"session {session_id} is already recording in {spool_dir}")

    @property
    def session_id(self) -> str:
        return self.header.session_id

    def append(self, kind: str, data: str | bytes, ts_ns: int, direction: str | None = "received", rebuilt: bool = False,
               not_utf8: bool = False) -> int:
        """Append one record; returns its seq. Durable after the next sync (or sealing) step."""
        day = utc_day(ts_ns)
        if self._current is not None and day != self._current.day:
            self._detach()
        seq = self.next_seq
        if self._current is None:
            self._open(seq, ts_ns, day)
        line = SpoolRecord(seq, ts_ns, kind, data, direction, rebuilt, not_utf8).to_line()
        if self._held is None:
            self._current.file.write(line)
        else:
            self._held.append((self._current.file, line))
        self._current.last_seq, self._current.last_ts_ns = seq, ts_ns
        self.next_seq += 1
        return seq

    @contextmanager
    def together(self) -> Iterator[None]:
        """Records appended inside reach the file in one write: a kill -9 keeps all of them or none.

        The file is buffered: a record reaches the kernel (and so survives the process) when
        a step flushes it or when the buffer overflows, which can fall between any two
        records. What survives is always a prefix of what was appended; ``together`` makes
        records that only mean something as a group (a frame and the outage it ends) one
        step of that prefix. (A group is split only if it spans a UTC midnight, or by a kill
        landing inside that very write, which the kernel may then cut short at a page.)
        """
        assert self._held is None, "together() does not nest"
        self._held = []
        try:
            yield
        finally:
            held, self._held = self._held, None
            while held:
                file = held[0][0]
                n = next((i for i, (f, _) in enumerate(held) if f is not file), len(held))
                file.write(b"".join(line for _, line in held[:n]))
                held = held[n:]

    def next_job(self) -> DurabilityJob | None:
        """The step that is due now (sealing on schedule, else fsync on schedule), if any."""
        if self._sealing:
            return self._job(self._sealing[0], seal=True)
        seg = self._current
        if seg is None:
            return None
        now = self._clock()
        if now - seg.opened_at >= self.seal_interval_s or seg.file.written >= self.max_segment_bytes:
            self._detach()
            return self._job(seg, seal=True)
        if seg.last_seq > seg.synced_seq and now - self._synced_at >= self.fsync_interval_s:
            return self._job(seg, seal=False)
        return None

    def finish(self, job: DurabilityJob) -> None:
        """Record a step that has run: its records are acknowledged."""
        if job.upto_seq > self.acked_seq:
            self.acked_seq, self.acked_ts_ns = job.upto_seq, job.upto_ts_ns
        self._synced_at = self._clock()
        if job.seal:
            self._sealing.remove(job.segment)
            self.last_sealed = Segment(job.segment.file.path.with_suffix(SEALED_SUFFIX))
            self.segments_sealed += 1

    def tick(self) -> None:
        """Call often (at least every ``fsync_interval_s``): fsyncs and seals on schedule, blocking."""
        while (job := self.next_job()) is not None:
            self._run(job)

    def sync(self) -> None:
        seg = self._current
        if seg is not None and seg.last_seq > seg.synced_seq:
            self._run(self._job(seg, seal=False))

    def seal(self) -> Segment | None:
        """Seal everything open; returns the last segment sealed (None if nothing was open)."""
        self._detach()
        if not self._sealing:
            return None
        while self._sealing:
            self._run(self._job(self._sealing[0], seal=True))
        return self.last_sealed

    def close(self) -> Segment | None:
        """Seal, then (with ``status_files``) clear the lock and acknowledgement files: a clean end."""
        sealed = self.seal()
        if self._lock is not None:
            ack_path(self.spool_dir, self.session_id).unlink(missing_ok=True)
            lock_path(self.spool_dir, self.session_id).unlink(missing_ok=True)
            self.release()
        return sealed

    def release(self) -> None:
        """Let go of the lock and leave its file: the next ``recover`` takes the session for a crashed one.

        For a session that could not record its own end (the disk still full): its successor records it.
        """
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def abandon(self) -> int:
        """After a failed write or step: keep what is durable, seal it, and carry on from there.

        Every open segment is cut back to its last fsync; records after that are
        dropped and their seqs are given again, so a session's seqs stay gap-free.
        Returns how many records were dropped.
        """
        received = self.next_seq - 1
        for seg in [*self._sealing, *([self._current] if self._current else [])]:
            final = seg.file.path.with_suffix(SEALED_SUFFIX)
            if seg.file.path.exists():
                seg.file.abandon()
                if not seg.synced_seq:
                    seg.file.path.unlink()
                    continue
                os.replace(seg.file.path, final)
            else:  # its sealing step failed after the rename: all of it is kept
                seg.synced_seq, seg.synced_ts_ns = seg.last_seq, seg.last_ts_ns
            self.last_sealed = Segment(final)
            self.segments_sealed += 1
            if seg.synced_seq > self.acked_seq:
                self.acked_seq, self.acked_ts_ns = seg.synced_seq, seg.synced_ts_ns
        self._current, self._sealing = None, []
        self.next_seq = self.acked_seq + 1
        return received - self.acked_seq

    def _run(self, job: DurabilityJob) -> None:
        job.run()
        self.finish(job)

    def _job(self, seg: _OpenSegment, seal: bool) -> DurabilityJob:
        ack = (ack_path(self.spool_dir, self.session_id), dict(self.status)) if self._lock is not None else None
        return DurabilityJob(seg, seg.file.flush(), seg.last_seq, seg.last_ts_ns, seal, ack)

    def _detach(self) -> None:
        if self._current is not None:
            self._sealing.append(self._current)
            self._current = None

    def _open(self, seq: int, ts_ns: int, day: str) -> None:
        folder = self.spool_dir / day
        folder.mkdir(parents=True, exist_ok=True)
        file = AppendFile(folder / (segment_stem(self.session_id, seq, ts_ns) + OPEN_SUFFIX))
        file.write(self.header.to_line())
        self._current = _OpenSegment(file, day, self._clock())


def iter_segment_records(segment: Segment) -> Iterator[SpoolRecord]:
    _, records, _ = read_segment(segment.path)
    yield from records
