"""The store played back: its ``ws_event`` frames in the order the server sent them, as Python objects.

One reader serves both ``replay()`` (and its async twin ``areplay()``) and the ``rugs-pipeline replay``
Socket.IO server (``replay_server.py``). Invariants:

- **What is a frame.** A received frame the server sent on the feed: every ``direction = 'received'``
  row but the connection's own Engine.IO / Socket.IO control packets (OPEN, ``40``, pings, closes: a
  replay makes its own) and binary frames (stored base64-encoded, not as sent). Recorder lifecycle rows
  (``direction`` null) are not frames. ``raw`` is ``raw_json`` unchanged; an import's rebuilt frame
  (``is_rebuilt``) is served as rebuilt.
- **Order.** Receive time, then the store's order: ``ORDER BY ts, session_id, seq``, the derivations'
  "first received" total order (``derive.games.FIRST_RECEIVED``).
- **Redundant sessions.** The derivations keep, of the copies of one thing that several sessions
  received, the first received in that order (a trade by its id, a tick by (game, tick), a history
  record by its text: ``derive/games.py``). A frame is the thing here, known by its text: a frame
  whose text another session's frame already had within ``DEDUP_WINDOW`` before it is that frame
  again, and is skipped. A session repeating its own text is the server sending it twice, and is
  kept. The window is the only state, so memory stays bounded.
- **Bounded memory.** A day is read in slices of whole minutes holding at most ~``SLICE_ROWS`` frames
  and ~``SLICE_BYTES`` of frame text (estimated from the files' footers),
  each one DuckDB query over the files whose receive times overlap the slice, whose filters (event
  names, games, the slice's time range) reach the Parquet reader, which skips row groups by their
  statistics; days are chosen by the ``date=`` partition folder. Memory depends on the slice, never on
  the day (a minute busier than a slice is one slice). The next slice is read (in a worker thread) while
  one is served: two slices are held at most. Queries hold the partition's shared lock; a
  compaction between two slices (which keeps every row) makes a listed file vanish, and the day's
  files are then listed again.
- **Pacing.** ``speed=None``: as fast as the reader goes. ``speed=X``: the recorded gap before each
  frame divided by X, kept against an absolute schedule. A recorded outage is a gap like any other:
  silence of its length (over X). ``Replay.outages`` lists the recorded outages (``system_event``, or
  the recorder's lifecycle records of a day not derived yet), for the server's ``--with-disconnects``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rugs_pipeline import config
from rugs_pipeline.derive.games import FIRST_RECEIVED
from rugs_pipeline.errors import RugsError
from rugs_pipeline.store.layout import SchemaVersionError, Store, check_compatible, sql_list, sql_literal

# per query, at most (but one minute's worth): two slices' frames are what is held. Bytes too: a state frame
# with a gameHistory is ~50x the average frame, and some minutes are full of them
SLICE_ROWS = 8_192
SLICE_BYTES = 24 * 2**20
DEDUP_WINDOW = timedelta(seconds=10)  # two sessions' copies of one frame arrive within this of each other
# Engine.IO / Socket.IO packets of the connection itself, not the feed: a replay has its own
CONTROL_KINDS = ("open", "close", "ping", "pong", "upgrade", "noop", "connect", "disconnect", "connect_error")
_US = 1_000_000
_MINUTE = 60 * _US
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ReplayError(RugsError, ValueError):
    """A replay that cannot start: no such day or game, a bad range, a store this code cannot read."""


class Frame:
    """One frame as the server sent it. ``payload`` (the event's last argument) is parsed on first access."""

    __slots__ = ("ts_us", "session_id", "seq", "event_name", "raw", "is_rebuilt", "_payload")

    def __init__(self, ts_us: int, session_id: str, seq: int, event_name: str | None, raw: str,
                 is_rebuilt: bool | None) -> None:
        self.ts_us, self.session_id, self.seq = ts_us, session_id, seq
        self.event_name, self.raw, self.is_rebuilt = event_name, raw, bool(is_rebuilt)
        self._payload = _UNPARSED

    @property
    def ts(self) -> datetime:
        """Receive time (UTC)."""
        return _EPOCH + timedelta(microseconds=self.ts_us)

    @property
    def payload(self) -> Any:
        """An event's payload (its last argument: a trace header may come first); None for other frames."""
        if self._payload is _UNPARSED:
            self._payload = _payload(self.raw)
        return self._payload

    def __repr__(self) -> str:
        return f"Frame({self.ts.isoformat()}, {self.session_id}#{self.seq}, {self.event_name!r}, {len(self.raw)} chars)"


_UNPARSED = object()


def _payload(raw: str) -> Any:
    """The last argument of an event frame ``42[name, ..., payload]`` (any packet id or namespace before it)."""
    start = raw.find("[")
    if not raw.startswith("42") or start < 0:
        return None
    try:
        value = orjson.loads(raw[start:])
    except orjson.JSONDecodeError:
        return None
    return value[-1] if isinstance(value, list) and len(value) > 1 else None


@dataclass(frozen=True)
class Outage:
    """A recorded outage (``system_event``): nothing was received from ``start_us`` to ``end_us``."""

    start_us: int
    end_us: int

    @property
    def seconds(self) -> float:
        return (self.end_us - self.start_us) / _US


def _day(value: date | str, what: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ReplayError(f"{what} {value!r} is not a day like 2025-12-12") from None


def _names(values: Iterable[str] | str | None) -> list[str]:
    """Game ids or event names: one (a string) or several."""
    return [values] if isinstance(values, str) else sorted(set(values or ()))


class Replay:
    """A stretch of the store to play back: days ``start``..``end``, optionally only some games and events."""

    def __init__(self, start: date | str, end: date | str | None = None, games: Iterable[str] | None = None,
                 events: Iterable[str] | None = None, data_dir: Path | str | None = None) -> None:
        first = _day(start, "start day")
        last = _day(end, "end day") if end is not None else first
        if last < first:
            raise ReplayError(f"the end day {last} is before the start day {first}")
        self.store = Store.at(data_dir or config.Settings.from_env().data_dir)
        manifest = self.store.read_manifest()
        if manifest is None:
            raise ReplayError(f"{self.store.manifest_path} not found: {self.store.root} is not a rugs_pipeline store")
        check_compatible(manifest.get("version"), self.store.manifest_path)
        self.games, self.events = _names(games), _names(events)
        self._schemas: dict[str, str] = {}  # a schema's text held once (a landed day: thousands of files, few schemas)
        self._files: dict[str, list[_File]] = {}  # the days with files, each with its files
        for day in (first + timedelta(n) for n in range((last - first).days + 1)):
            if files := self._list(day.isoformat()):
                self._files[day.isoformat()] = files
        self.days = list(self._files)
        self._con = self.store.duckdb()
        self._con.execute("SET TimeZone = 'UTC'")
        self._con.execute("SET enable_progress_bar = false")
        self.slices = [(day, lo, hi) for day in self.days  # (day, first µs, end µs): the queries, in order
                       for lo, hi in _slices(_minutes(self._files[day], day))]
        span = f"{first}" if first == last else f"{first}..{last}"
        if not any(self._has_frames(day) for day in self.days):
            what = f" of event {', '.join(self.events)}" if self.events else ""
            what += f" of game {', '.join(self.games)}" if self.games else ""
            raise ReplayError(f"no stored frames{what} for {span} in {self.store.root}: "
                              f"days with frames: {_days_summary(self.store)}")
        if self.games:
            seen = {g for day in self.days for g in self._query(
                day, lambda d=day: f"SELECT DISTINCT game_id FROM ({self._source(d, 'game_id')})"
            )["game_id"].to_pylist()}
            if unknown := [g for g in self.games if g not in seen]:
                raise ReplayError(f"no stored frames of game {', '.join(unknown)} in {span} ({self.store.root})")

    def _where(self) -> str:
        conds = ["direction = 'received'", f"frame_kind NOT IN ({', '.join(map(sql_literal, CONTROL_KINDS))})",
                 "NOT (frame_kind = 'malformed' AND coalesce(parse_error, '') LIKE 'binary%')"]
        if self.events:
            conds.append(f"event_name IN ({', '.join(map(sql_literal, self.events))})")
        if self.games:
            conds.append(f"game_id IN ({', '.join(map(sql_literal, self.games))})")
        return " AND ".join(conds)

    def _list(self, day: str) -> list[_File]:
        """The day's files, with their row groups' sizes and receive times (footers only: no rows read)."""
        with self._lock(day):
            # a footer at a time: they hold the statistics of every column (a state frame's text is its own min/max),
            # so reading a landed day's thousands at once would hold them all
            return [self._file(str(f)) for f in self.store.partition_files("ws_event", day)]

    def _file(self, path: str) -> _File:
        meta = pq.read_metadata(path, filesystem=self.store.filesystem)
        schema = str(meta.schema).split("\n", 1)[1]  # (its first line is the object's address)
        return _File(path, _row_groups(meta), self._schemas.setdefault(schema, schema))

    def _source(self, day: str, columns: str, lo: int | None = None, hi: int | None = None,
                only: str | None = None) -> str:
        """SQL: ``columns`` of the day's frames (received from ``lo`` to before ``hi``, µs; of file ``only``), in
        the files' order.

        Only the files whose receive times overlap the range are named: a day as landed has thousands.
        """
        chosen = [f for f in self._files[day] if (lo is None or f.overlaps(lo, hi)) and only in (None, f.path)]
        files = [f.path for f in chosen]
        if not files:
            return f"SELECT {columns} FROM (SELECT NULL::TIMESTAMPTZ AS ts) WHERE false"
        conditions = [self._where()]
        if lo is not None:
            conditions += [f"ts >= make_timestamptz({lo})", f"ts < make_timestamptz({hi})"]
        # by name where a day part-way through a migration holds files of two versions (the columns read are
        # 1.0.0's); only there: uniting the files' schemas opens each one once more
        by_name = len({f.schema for f in chosen}) > 1
        return (f"SELECT {columns} FROM read_parquet({sql_list(files)}, hive_partitioning = false, "
                f"union_by_name = {str(by_name).lower()}) WHERE {' AND '.join(conditions)}")

    def _lock(self, day: str):
        """The day's shared partition lock, against a compaction swapping its files. An s3 lake is never
        compacted, and its consumers need no spool for its locks."""
        return contextlib.nullcontext() if self.store.remote else self.store.partition_lock("ws_event", day, shared=True)

    def _has_frames(self, day: str) -> bool:
        """Whether the day holds a frame to serve: its files one at a time, the first usually answering (a query
        over all of a landed day's thousands of files at once would open them all)."""
        for f in list(self._files[day]):  # (a file a compaction took away meanwhile holds nothing)
            if self._query(day, lambda: f"{self._source(day, 'ts', only=f.path)} LIMIT 1").num_rows:
                return True
        return False

    def _query(self, day: str, sql: Callable[[], str], con: duckdb.DuckDBPyConnection | None = None) -> pa.Table:
        """Run ``sql()`` over the day's files (on ``con``, else the source's connection); listed again, once, when
        one has gone (a compaction swapped them)."""
        con = con or self._con
        try:
            with self._lock(day):
                return con.sql(sql()).to_arrow_table()
        except duckdb.IOException:
            self._files[day] = self._list(day)
            with self._lock(day):
                return con.sql(sql()).to_arrow_table()

    @functools.cached_property
    def outages(self) -> list[Outage]:
        """The recorded outages of these days: ``system_event`` ``outage`` rows where the day is derived, and the
        recorder's own ``outage`` lifecycle records (the same outages: they count once) where it is not yet."""
        found = []
        for day in self.days:
            files = [str(f) for f in self.store.partition_files("system_event", day)]
            if files:
                found += self._con.execute(
                    f"SELECT epoch_us(start_ts), epoch_us(end_ts) FROM read_parquet({sql_list(files)}, "
                    "union_by_name = true) WHERE event_name = 'outage' AND start_ts IS NOT NULL AND end_ts > start_ts"
                ).fetchall()
            if self._files[day]:
                records = self._query(day, lambda d=day: self._lifecycle_outages(d)).to_pylist()
                found += [(r["lo"], r["hi"]) for r in records
                          if r["lo"] is not None and r["hi"] is not None and r["hi"] > r["lo"]]
        return [Outage(lo, hi) for lo, hi in sorted(set(found))]

    def _lifecycle_outages(self, day: str) -> str:
        files = [f.path for f in self._files[day]]
        return ("SELECT TRY_CAST(raw_json->>'start_ns' AS BIGINT) // 1000 AS lo, "
                "TRY_CAST(raw_json->>'end_ns' AS BIGINT) // 1000 AS hi "
                f"FROM read_parquet({sql_list(files)}, hive_partitioning = false, union_by_name = true) "
                "WHERE frame_kind = 'lifecycle' AND event_name = 'outage'")

    def batches(self) -> Iterator[list[Frame]]:
        """The frames in order, deduplicated, a slice's Arrow batch at a time.

        The next slice is read (on a cursor of its own, in a worker thread: DuckDB reads without the GIL) while
        this one's frames are built and consumed, so reading and building overlap: two slices are held at most.
        """
        dedup = _Dedup()
        con = self._con.cursor()
        reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replay-read")
        try:
            ahead = [reader.submit(self._slice, con, *s) for s in self.slices[:1]]
            for n in range(len(self.slices)):
                table, sessions = ahead.pop().result()
                ahead += [reader.submit(self._slice, con, *s) for s in self.slices[n + 1:n + 2]]
                for batch in table.to_batches():
                    ts, session, seq, name, raw, rebuilt = (column.to_pylist() for column in batch.columns)
                    yield dedup.keep(list(map(Frame, ts, session, seq, name, raw, rebuilt)), sessions)
        finally:  # (also when the consumer stops early: the read under way, if any, ends first)
            reader.shutdown(cancel_futures=True)
            con.close()

    def _slice(self, con: duckdb.DuckDBPyConnection, day: str, lo: int, hi: int) -> tuple[pa.Table, set[str]]:
        """The slice's frames in order (received from ``lo`` to before ``hi``, µs), and their sessions."""
        columns = "epoch_us(ts) AS ts, session_id, seq, event_name, raw_json, is_rebuilt"
        table = self._query(day, lambda: self._source(day, columns, lo, hi), con)
        # the files' order is mostly the order wanted already (one session's segments, in turn): sort the
        # keys, and move the rows (their text) only when that is not so
        order = pc.sort_indices(table, [(key, "ascending") for key in FIRST_RECEIVED.split(", ")])
        if not np.array_equal(order.to_numpy(), np.arange(len(table))):
            table = table.take(order)
        return table, set(pc.unique(table["session_id"]).to_pylist())

    def close(self) -> None:
        self._con.close()

    def describe(self) -> str:
        """What is served: days, frames and games (counted: the only whole read of the columns filtered on)."""
        frames, games = 0, set()
        for day in self.days:
            row = self._query(day, lambda d=day: f"SELECT count(*) AS n, list(DISTINCT game_id) AS games "
                              f"FROM ({self._source(d, 'game_id')})").to_pylist()[0]
            frames += row["n"]
            games |= {g for g in row["games"] or () if g is not None}
        days = self.days[0] if len(self.days) == 1 else f"{self.days[0]}..{self.days[-1]} ({len(self.days)} days)"
        return (f"{days}: {frames:,} frames (before dropping redundant sessions' copies), {len(games):,} games"
                + (f", {len(self.outages)} outages" if self.outages else ""))


def _days_summary(store: Store) -> str:
    days = store.partition_days("ws_event")
    if not days:
        return "none"
    return ", ".join(days) if len(days) <= 6 else f"{days[0]}..{days[-1]} ({len(days)} days)"


@dataclass(frozen=True)
class _File:
    path: str
    groups: tuple[tuple[int, int, int | None, int | None], ...]  # each row group's (rows, text bytes, first µs, last)
    schema: str  # the Parquet schema, as text

    def overlaps(self, lo: int, hi: int) -> bool:
        """Whether the file may hold a row received from ``lo`` to before ``hi`` (µs)."""
        return any(first is None or (first < hi and last >= lo) for rows, _, first, last in self.groups if rows)


def _row_groups(meta: pq.FileMetaData) -> tuple[tuple[int, int, int | None, int | None], ...]:
    """Each row group's (rows, bytes of frame text, first receive time µs, last), the times None without
    statistics."""
    names = meta.schema.names  # the leaf columns' (row groups' columns are leaves)
    ts, text = names.index("ts"), names.index("raw_json")
    out = []
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        size = group.column(text).total_uncompressed_size
        stats = group.column(ts).statistics
        if stats is not None and stats.has_min_max:
            out.append((group.num_rows, size, _micros(stats.min), _micros(stats.max)))
        else:
            out.append((group.num_rows, size, None, None))
    return tuple(out)


def _micros(value: datetime) -> int:
    return (value - _EPOCH) // timedelta(microseconds=1)


def _minutes(files: list[_File], day: str) -> list[tuple[int, float, float]]:
    """Estimated (minute, rows, text bytes) of the day: each row group's spread evenly over its minutes (a row
    group without statistics over the whole day). Rows, not frames: slices come out a little smaller."""
    whole_day = int(datetime.fromisoformat(day).replace(tzinfo=timezone.utc).timestamp()) * _US
    rows_in: collections.Counter[int] = collections.Counter()
    bytes_in: collections.Counter[int] = collections.Counter()
    for f in files:
        for rows, size, first, last in f.groups:
            if not rows:
                continue
            lo, hi = (first, last) if first is not None else (whole_day, whole_day + 86_400 * _US - 1)
            minutes = range(lo // _MINUTE, hi // _MINUTE + 1)
            for m in minutes:
                rows_in[m] += rows / len(minutes)
                bytes_in[m] += size / len(minutes)
    return [(m, rows_in[m], bytes_in[m]) for m in sorted(rows_in)]


def _slices(minutes: list[tuple[int, float, float]]) -> Iterator[tuple[int, int]]:
    """Consecutive whole minutes grouped into ranges (µs, end exclusive) of at most SLICE_ROWS rows and
    SLICE_BYTES bytes each (a minute over either is a slice of its own)."""
    lo, rows, size = None, 0.0, 0.0
    for minute, n, b in minutes:
        if lo is not None and (rows + n > SLICE_ROWS or size + b > SLICE_BYTES):
            yield lo, minute * _MINUTE
            lo, rows, size = None, 0.0, 0.0
        if lo is None:
            lo = minute * _MINUTE
        rows, size = rows + n, size + b
    if lo is not None:
        yield lo, (minutes[-1][0] + 1) * _MINUTE


class _Dedup:
    """Drops a frame whose text another session's frame had within DEDUP_WINDOW before it (module docstring).

    The window holds the kept frames a batch at a time (a batch leaves once its last frame is out of the
    window), and their texts are only looked up while the window holds more than one session: a single
    session's stream, the usual case, costs a set of session ids per batch.
    """

    def __init__(self) -> None:
        self._window: collections.deque[tuple[list[Frame], set[str]]] = collections.deque()  # (kept, sessions)
        self._texts: dict[str, Frame] | None = None  # text -> the frame that first had it (several sessions)
        self._span = int(DEDUP_WINDOW.total_seconds() * _US)

    def keep(self, frames: list[Frame], sessions: set[str]) -> list[Frame]:
        """The frames of ``frames`` (in order) that are not another session's copy of one kept before. ``sessions``:
        at least the sessions of ``frames`` (their slice's)."""
        if not frames:
            return frames
        self._expire(frames[0].ts_us)
        sessions = set(sessions)
        for _, held in self._window:
            sessions |= held
        if len(sessions) <= 1:
            self._texts = None  # one session: nothing to match
            self._window.append((frames, sessions))
            return frames
        kept = [f for f in frames if not self._copy(f)]
        self._window.append((kept, {f.session_id for f in kept}))
        return kept

    def _copy(self, frame: Frame) -> bool:
        if self._texts is None:
            self._texts = {}
            for held, _ in self._window:
                for f in held:
                    self._texts.setdefault(f.raw, f)
        first = self._texts.get(frame.raw)
        if first is None or frame.ts_us - first.ts_us > self._span:
            self._texts[frame.raw] = frame
            return False
        return first.session_id != frame.session_id  # a session's own repeat is the server sending it again

    def _expire(self, now_us: int) -> None:
        while self._window:
            held, _ = self._window[0]
            if held and held[-1].ts_us >= now_us - self._span:
                return
            self._window.popleft()
            if self._texts is not None:
                for f in held:
                    if self._texts.get(f.raw) is f:
                        del self._texts[f.raw]


class Clock:
    """Where the replay stands against its schedule: the recorded gaps divided by ``speed``."""

    def __init__(self, speed: float) -> None:
        if not speed > 0:
            raise ReplayError(f"speed must be positive, not {speed}")
        self.speed = speed
        self._origin: tuple[int, float] | None = None  # (first frame's µs, its monotonic time)

    def delay(self, ts_us: int) -> float:
        """Seconds to wait before sending the frame received at ``ts_us``."""
        now = time.monotonic()
        if self._origin is None:
            self._origin = (ts_us, now)
            return 0.0
        return self._origin[1] + (ts_us - self._origin[0]) / _US / self.speed - now


def replay(start: date | str, end: date | str | None = None, games: Iterable[str] | None = None,
           events: Iterable[str] | None = None, speed: float | None = None,
           data_dir: Path | str | None = None) -> Iterator[Frame]:
    """The stored frames of days ``start``..``end`` (``YYYY-MM-DD`` or dates), in the server's order.

    ``games`` / ``events``: only frames of these game ids / event names. ``speed``: None as fast as
    possible, X the recorded gaps divided by X. The store is ``data_dir``, else ``$RUGS_DATA_DIR``.
    Raises ``ReplayError`` (or ``SchemaVersionError``) at once, before the first frame, for a stretch it cannot
    play.
    """
    source = Replay(start, end, games, events, data_dir)
    clock = Clock(speed) if speed is not None else None
    return _frames(source, clock)


def _frames(source: Replay, clock: Clock | None) -> Iterator[Frame]:
    try:
        for batch in source.batches():
            if clock is None:
                yield from batch
                continue
            for frame in batch:
                if (wait := clock.delay(frame.ts_us)) > 0:
                    time.sleep(wait)
                yield frame
    finally:
        source.close()


async def areplay(start: date | str, end: date | str | None = None, games: Iterable[str] | None = None,
                  events: Iterable[str] | None = None, speed: float | None = None,
                  data_dir: Path | str | None = None) -> AsyncIterator[Frame]:
    """``replay`` for asyncio: the same frames; reading runs in a worker thread, pacing sleeps on the loop."""
    source = await asyncio.to_thread(Replay, start, end, games, events, data_dir)
    clock = Clock(speed) if speed is not None else None
    async for batch in abatches(source):
        for frame in batch:
            if clock is not None and (wait := clock.delay(frame.ts_us)) > 0:
                await asyncio.sleep(wait)
            yield frame


async def abatches(source: Replay) -> AsyncIterator[list[Frame]]:
    """``source.batches()`` read in a worker thread, so the event loop keeps serving meanwhile."""
    batches = source.batches()
    try:
        while (batch := await asyncio.to_thread(next, batches, None)) is not None:
            yield batch
    finally:
        await asyncio.to_thread(batches.close)
        source.close()


__all__ = ["Frame", "Outage", "Replay", "ReplayError", "SchemaVersionError", "areplay", "replay"]
