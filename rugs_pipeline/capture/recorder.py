"""The recorder: every frame of the feed, byte-exact, into the spool.

The receive time is taken the moment ``recv`` returns, before anything else is
done with the frame. Every frame is kept whatever it holds (known or unknown
event, malformed, binary, oversized up to ``max_frame_bytes``); interpretation
happens later, at landing. The recorder answers the protocol (``40`` after OPEN,
``3`` for each ping) and keeps what it sends too.

Durability: frames are appended in the receive loop; fsync and sealing run in a
worker thread one step at a time (``spool.DurabilityJob``), so a slow disk never
stalls reading. Memory stays bounded without any queue of ours: while a write
blocks, the loop stops reading and the socket's buffers push back on the server.
``spool/<session>.ack`` tells other processes what is acknowledged.

It never gives up: each failure is a lifecycle record, then a capped, jittered
exponential backoff (at least ``Retry-After`` when the server sends one, and never
two connects closer than ``min_connect_interval_s``) that resets only after real
data arrives. A watchdog drops a connection that stops delivering data. Each
outage, from the last data before it to the first data after it (a crash, a lost
connection, refused connects, a full disk), becomes one ``outage`` lifecycle
record written when it ends, so the store holds one row per outage even when it
spans many attempts or midnight; so does each stretch of storage failure, including one
still open at shutdown (written then if storage is back, else left, with the session's lock
file, for the next start to record as a crash).

Nothing the server sends ends it: a handshake it cannot use (an OPEN packet with a
ping field that is not a positive number, ...) is kept raw, recorded as a disconnect
with its cause, and followed by a reconnect; text frames are received undecoded, so one
that is not UTF-8 is kept as bytes (flagged ``not_utf8``) instead of dropping the
connection. The feed URL is shown and stored only with its credentials masked
(``feed_url``). State changes go to the log (stderr): connected, disconnected and why,
the retry delay, each outage's length, and a summary at stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import shutil
import signal
import time
from collections import deque
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path

import orjson
import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import Frame, Opcode

from rugs_pipeline.capture import legacy
from rugs_pipeline.formats import spool
from rugs_pipeline.capture.feed_url import FeedUrl, FeedUrlError, parse_feed_url
from rugs_pipeline.config import FEED_ORIGIN
from rugs_pipeline.errors import RugsError
from rugs_pipeline.formats.protocol import EIO_OPEN, Handshake, parse_frame, reply_to

log = logging.getLogger(__name__)

# Version of the lifecycle records: 2 records outages as ``outage`` records (1 left the
# derivation to pair ``disconnected`` with the next ``handshake``).
LIFECYCLE_VERSION = 2
GAME_STATE = '42["gameStateUpdate",'
DRAIN_TIMEOUT_S = 5.0  # websockets' own close timeout (2 s) normally ends the drain first


class RecorderError(RugsError, RuntimeError):
    """A fatal configuration problem, reported as one line."""


def check_feed_url(url: str) -> FeedUrl:
    """The feed URL, checked before anything is created (a bad one is a one-line ``RecorderError``)."""
    try:
        return parse_feed_url(url)
    except FeedUrlError as exc:
        raise RecorderError(str(exc)) from None


class _FrameConnection(ClientConnection):
    """Hands over each message undecoded, with whether it came as a text frame.

    websockets decodes text frames itself and fails the connection (1007) on one that is
    not UTF-8; the recorder keeps every frame, so it receives the bytes and decodes them here.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._text: deque[bool] = deque()  # one per message not received yet: its first frame's opcode

    def process_event(self, event) -> None:
        if isinstance(event, Frame) and event.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._text.append(event.opcode is Opcode.TEXT)
        super().process_event(event)

    async def recv_frame(self) -> tuple[str | bytes, bool, int]:
        """(the message: str for UTF-8 text, else bytes; whether it is text that is not UTF-8; its size in bytes)."""
        raw = await self.recv(decode=False)
        if not self._text.popleft():
            return raw, False, len(raw)
        try:
            return raw.decode(), False, len(raw)
        except UnicodeDecodeError:
            return raw, True, len(raw)


@dataclass
class RecorderConfig:
    url: str
    spool_dir: Path
    source: str = "public_ws"
    origin: str = FEED_ORIGIN
    seal_interval_s: float = 30.0
    fsync_interval_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    min_connect_interval_s: float = 1.0
    retry_after_max_s: float = 600.0  # a Retry-After beyond this is taken as this
    connect_timeout_s: float = 15.0
    stale_game_s: float = 10.0  # no data this long while a game runs: reconnect
    stale_idle_s: float = 30.0  # ... at any other time (cooldown, before the first frame)
    # Before the OPEN packet tells us the heartbeat, assume Engine.IO's defaults.
    default_silence_s: float = 45.0
    max_frame_bytes: int = spool.MAX_FRAME_BYTES  # bigger frames are refused (1009) and counted
    legacy_dir: Path | None = None  # write the legacy JSONL capture here too
    resume_free_bytes: int = 16 * 2**20  # after a write failed, resume once this much is free
    storage_retry_s: float = 1.0


@dataclass
class _Down:
    """Capture is not receiving data since ``since_ns``; ``cause`` None: not an outage unless something fails."""

    since_ns: int
    cause: str | None


@dataclass
class _StoragePause:
    """Capture paused since ``since_ns`` because storage failed; ``dropped`` unacknowledged records."""

    since_ns: int
    dropped: int


@dataclass
class _Connection:
    silence_s: float
    rejected: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    last_frame: float = field(default_factory=time.monotonic)
    last_data: float = field(default_factory=time.monotonic)
    last_data_ns: int = 0
    in_game: bool = False
    frames: int = 0


class Recorder:
    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self._storage_failed = asyncio.Event()
        self._storage_error: OSError | None = None
        self._storage_pause: _StoragePause | None = None
        self._io = asyncio.Lock()  # one durability step at a time; none while storage recovers
        self.writer: spool.SpoolWriter | None = None
        self.legacy: legacy.LegacyWriter | None = None
        self.feed: FeedUrl | None = None
        self.frames_received = 0
        self.bytes_received = 0
        self.outages_recorded = 0
        self._down: _Down | None = None
        self._closing = False

    def stop(self) -> None:
        self._stop.set()

    def _clean(self, value):
        """Fit to print or store: no credential, and no lone surrogate (undecodable bytes of an HTTP
        header in an error message), which JSON cannot hold."""
        if isinstance(value, str):
            return self.feed.scrub(value.encode("utf-8", "backslashreplace").decode())
        if isinstance(value, list):
            return [self._clean(v) for v in value]
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        return value

    def _say(self, message: str, *args) -> None:
        log.info(self._clean(message % args))

    def _record(self, event: str, **fields) -> None:
        record = self._clean({"event": event, "v": LIFECYCLE_VERSION, **fields})
        self.writer.append(spool.KIND_LIFECYCLE, orjson.dumps(record).decode(), time.time_ns(), None)

    def _lifecycle(self, event: str, **fields) -> None:
        """A lifecycle record, unless storage has failed: ``storage_failed`` then sums the gap up."""
        if self._storage_failed.is_set():
            return
        try:
            self._record(event, **fields)
        except OSError as exc:
            self._fail_storage(exc)

    def _legacy_note(self, ts_ns: int, event: str) -> None:
        if self.legacy is None or self._storage_failed.is_set():
            return
        try:
            self.legacy.write(ts_ns, event)
        except OSError as exc:
            self._fail_storage(exc)

    # --- outages ------------------------------------------------------------------------

    def _went_down(self, cause: str, since_ns: int | None = None) -> None:
        cause = self._clean(cause)  # it goes to the .ack file too (a redirect's error may quote the URL)
        if self._down is None:
            self._down = _Down(since_ns or time.time_ns(), cause)
        elif self._down.cause is None:
            self._down.cause = cause
        self.writer.status.update(state="down", down_since_ns=self._down.since_ns, cause=self._down.cause)

    def _end_outage(self, end_ns: int, ended_by: str | None = None) -> None:
        down, self._down = self._down, None
        if down is not None and down.cause is not None:
            self.outages_recorded += 1
            self._say("outage over after %.1f s: %s", (end_ns - down.since_ns) / 1e9, down.cause)
            self._lifecycle("outage", start_ns=down.since_ns, end_ns=end_ns, cause=down.cause,
                            duration_s=round((end_ns - down.since_ns) / 1e9, 6), ended_by=ended_by)
        self.writer.status.update(state="receiving", down_since_ns=None, cause=None)

    # --- the session --------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.config
        self.feed = check_feed_url(cfg.url)
        _check_writable(cfg.spool_dir)
        if cfg.legacy_dir is not None:
            _check_writable(cfg.legacy_dir)
        # The crashed sessions' locks stay (held by us) until our record of their crash is durable:
        # killed before that, we leave them for the next start to recover again, not forgotten.
        recovered = spool.recover(cfg.spool_dir, clear=False)
        try:
            self._start_session(recovered)
            if recovered and not self._storage_failed.is_set():
                try:
                    await asyncio.to_thread(self.writer.sync)
                except OSError as exc:
                    # Kept in memory: the outage is recorded once storage is back (as before, a kill
                    # before that forgets it; keeping the leftovers would count it again on every start).
                    self._fail_storage(exc)
        except BaseException:
            spool.release_recovered(recovered)
            raise
        spool.clear_recovered(cfg.spool_dir, recovered)
        durability = asyncio.create_task(self._durability())
        try:
            await self._connect_forever()
        finally:
            await self._shutdown(durability)

    def _start_session(self, recovered: list[spool.Recovered]) -> None:
        """Open this session's spool and record its start and the crashes it recovered."""
        cfg = self.config
        session = spool.new_session_id()
        self.writer = spool.SpoolWriter(
            cfg.spool_dir, session, cfg.source,
            seal_interval_s=cfg.seal_interval_s, fsync_interval_s=cfg.fsync_interval_s, status_files=True,
        )
        self.writer.status.update(url=self.feed.shown, state="starting")
        if cfg.legacy_dir is not None:
            for rec in recovered:
                legacy.repair(cfg.legacy_dir, rec.session_id)
            self.legacy = legacy.LegacyWriter(cfg.legacy_dir, session)
        started = time.time_ns()
        self._lifecycle("started", url=self.feed.shown, pid=os.getpid(),
                        legacy_jsonl=str(self.legacy.path) if self.legacy else None)
        self._down = _Down(started, None)
        crashed: list[tuple[int, str]] = []
        segments = spool.segments_by_session(cfg.spool_dir)
        for rec in recovered:
            since = _stopped_receiving(segments.get(rec.session_id, []))
            self._lifecycle(
                "recovered", crashed_session=rec.session_id, records=rec.records, last_seq=rec.last_seq,
                last_ts_ns=rec.last_ts_ns, torn_bytes=rec.torn_bytes, segments=[s.name for s in rec.segments],
                acked_seq=rec.status.get("acked_seq"), down_since_ns=since,
            )
            if since:
                crashed.append((since, rec.session_id))
        if crashed:
            since, session_id = max(crashed)  # the most recent: this data dir's previous recorder
            self._down = _Down(since, f"recorder down: session {session_id} stopped without sealing")

    async def _connect_forever(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        attempt, last_connect = 0, -float("inf")
        while not self._stop.is_set():
            if self._storage_failed.is_set():
                await self._wait_for_storage()
                continue
            if await self._pause(last_connect + cfg.min_connect_interval_s - loop.time(), self._storage_failed):
                break
            last_connect = loop.time()
            got_data, retry_after = await self._connect_once(attempt)
            attempt = 0 if got_data else attempt + 1
            if self._stop.is_set() or self._storage_failed.is_set():
                continue
            delay = _backoff(attempt, cfg.backoff_initial_s, cfg.backoff_max_s)
            if retry_after is not None:
                delay = max(delay, min(retry_after, cfg.retry_after_max_s))
            self._lifecycle("reconnecting", attempt=attempt, delay_s=round(delay, 3))
            self._say("retry in %.1f s (attempt %d)", delay, attempt + 1)
            await self._pause(delay, self._storage_failed)

    async def _pause(self, seconds: float, *wake: asyncio.Event) -> bool:
        """Sleep, waking early when stopping or on any of ``wake``; returns whether stopping."""
        if seconds > 0:
            waits = [asyncio.ensure_future(e.wait()) for e in (self._stop, *wake)]
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
        return self._stop.is_set()

    async def _shutdown(self, durability: asyncio.Task) -> None:
        """Record the end (the storage failure and outage still open, ``stopped``) and seal, if storage allows.

        If it does not, what is acknowledged stays and the lock file is left: the next start
        recovers the session as a crashed one and records its outage.
        """
        self._closing = True
        await durability
        if self._storage_failed.is_set():
            await self._pause_for_storage()
        async with self._io:
            try:
                if self._storage_pause is not None:
                    await self._storage_back()
                if self._down is not None:
                    self._end_outage(time.time_ns(), ended_by="recorder stopped")
                self._record("stopped", frames_received=self.frames_received)
                if self._storage_failed.is_set():  # a record above could not be written
                    raise self._storage_error
                await asyncio.to_thread(self._close_files)
            except OSError as exc:
                self.writer.abandon()
                self.writer.release()
                if self.legacy is not None:
                    self.legacy.file.abandon()
                self._summary()
                raise RecorderError(
                    f"could not record the end of session {self.writer.session_id} in {self.config.spool_dir} "
                    f"({_why(exc)}): what was acknowledged is kept; the next start of the recorder records "
                    "the outage") from None
        self._summary()

    def _summary(self) -> None:
        self._say("stopped: %d frames (%.1f MiB) received, %d outages, %d segments sealed", self.frames_received,
                  self.bytes_received / 2**20, self.outages_recorded, self.writer.segments_sealed)

    def _close_files(self) -> None:
        self.writer.close()
        if self.legacy is not None:
            self.legacy.close()

    # --- durability ---------------------------------------------------------------------

    async def _durability(self) -> None:
        interval = min(0.1, self.config.fsync_interval_s / 4)
        while not self._closing:
            await asyncio.sleep(interval)
            if self._storage_failed.is_set():
                continue
            async with self._io:
                try:
                    await self._durable_step()
                except OSError as exc:
                    self._fail_storage(exc)

    async def _durable_step(self) -> None:
        self.writer.status["frames_received"] = self.frames_received
        job = self.writer.next_job()
        if job is None:
            return
        mark = self.legacy.flush() if self.legacy else None

        def run() -> None:
            job.run()
            if mark is not None:
                self.legacy.make_durable(mark)

        await asyncio.to_thread(run)
        self.writer.finish(job)

    def _fail_storage(self, exc: OSError) -> None:
        if not self._storage_failed.is_set():
            self._storage_error = exc
            self._storage_failed.set()

    async def _wait_for_storage(self) -> None:
        """Keep what is acknowledged, then wait for space (or the cause to go away) and resume."""
        cfg = self.config
        await self._pause_for_storage()
        since = self._storage_pause.since_ns
        while not await self._pause(cfg.storage_retry_s):
            if shutil.disk_usage(cfg.spool_dir).free < cfg.resume_free_bytes:
                continue
            async with self._io:
                try:
                    await self._storage_back()
                except OSError:
                    self.writer.abandon()
                    continue
            log.warning("capture resumed: %s is writable again after %.1f s", cfg.spool_dir, (time.time_ns() - since) / 1e9)
            return

    async def _pause_for_storage(self) -> None:
        """After a failed write: cut back to what is acknowledged and count the stretch as an outage (once)."""
        if self._storage_pause is not None:
            return
        cfg = self.config
        exc = self._storage_error
        async with self._io:
            dropped = self.writer.abandon()
            if self.legacy is not None:
                self.legacy.abandon()
        since = time.time_ns()
        self._storage_pause = _StoragePause(since, dropped)
        kept_until = self.writer.acked_ts_ns or since
        self._went_down(f"cannot write the spool: {_why(exc)}", since_ns=kept_until)
        self._down.since_ns = min(self._down.since_ns, kept_until)  # what was dropped is part of the outage
        log.error("error: cannot write %s (%s): capture paused, %d unacknowledged record(s) dropped; retrying every "
                  "%g s until %g MiB are free", cfg.spool_dir, _why(exc), dropped, cfg.storage_retry_s,
                  cfg.resume_free_bytes / 2**20)

    async def _storage_back(self) -> None:
        """Record the stretch of storage failure that ends now, durably (OSError: storage still fails)."""
        pause, exc = self._storage_pause, self._storage_error
        self._record("storage_failed", error=f"{type(exc).__name__}: {exc}", since_ns=pause.since_ns,
                     until_ns=time.time_ns(), dropped_records=pause.dropped)
        await asyncio.to_thread(self.writer.sync)
        self._storage_error = self._storage_pause = None
        self._storage_failed.clear()

    # --- one connection -----------------------------------------------------------------

    async def _connect_once(self, attempt: int) -> tuple[bool, float | None]:
        """One connection, from connect to close: (whether data arrived, the server's Retry-After)."""
        cfg = self.config
        self._lifecycle("connecting", url=self.feed.shown, attempt=attempt)
        try:
            ws = await connect(
                self.feed.real, origin=cfg.origin, open_timeout=cfg.connect_timeout_s, max_size=cfg.max_frame_bytes,
                ping_interval=None, close_timeout=2, compression="deflate", create_connection=_FrameConnection,
            )
        except websockets.InvalidStatus as exc:
            response = exc.response
            retry_after = _retry_after(response.headers.get_all("Retry-After"))
            error = f"HTTP {response.status_code} {response.reason_phrase}".strip()
            self._lifecycle("connect_failed", error=error, status=response.status_code, retry_after_s=retry_after)
            self._went_down(f"cannot connect: {error}" + (f", Retry-After {retry_after:g} s" if retry_after else ""))
            self._say("connect failed: %s", error)
            return False, retry_after
        except Exception as exc:  # noqa: BLE001 - whatever the server answers (a redirect to a bad URI, ...), try again
            error = f"{type(exc).__name__}: {exc}"
            self._lifecycle("connect_failed", error=error)
            self._went_down(f"cannot connect: {error}")
            self._say("connect failed: %s", error)
            return False, None
        self._lifecycle("connected", url=self.feed.shown)
        self._say("connected to %s", self.feed.shown)
        conn = _Connection(silence_s=cfg.default_silence_s)
        cause, code, reason = await self._serve(ws, conn)
        self._lifecycle("disconnected", code=code, reason=reason, cause=cause, frames=conn.frames)
        self._say("disconnected (%s): %s", cause, reason)
        self._legacy_note(time.time_ns(), "disconnect")
        if cause == "stopping":
            pass  # stopping on purpose is no outage
        elif conn.last_data_ns:  # the outage starts with the last data this connection brought
            self._went_down(f"connection lost: {reason}", since_ns=conn.last_data_ns)
        else:
            self._went_down(f"connection lost: {reason}")
        return conn.last_data_ns > 0, None

    async def _serve(self, ws: ClientConnection, conn: _Connection) -> tuple[str, int | None, str]:
        """Receive until the connection ends; returns (cause, close code, reason)."""
        reader = asyncio.create_task(self._receive(ws, conn))
        watchdog = asyncio.create_task(self._watch(conn))
        stopping = asyncio.create_task(self._stop.wait())
        failing = asyncio.create_task(self._storage_failed.wait())
        ends = (watchdog, stopping, failing, conn.rejected)
        try:
            await asyncio.wait((reader, *ends), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in ends:
                task.cancel()
        if reader.done():
            ended = self._reader_ended(reader)
            await ws.close()  # closed already unless the spool failed: then the server must stop sending
            return ended
        if failing.done():
            reader.cancel()  # nothing more can be kept
            cause, code, reason = "storage", 1001, f"cannot write the spool: {_why(self._storage_error)}"
            await ws.close(code, reason[:100])
            return cause, code, reason
        if watchdog.done():
            cause, reason = watchdog.result()
            code = 1001
        elif conn.rejected.done() and not conn.rejected.cancelled():
            cause, code, reason = "bad_handshake", 1002, conn.rejected.result()
        else:
            cause, code, reason = "stopping", 1000, "recorder stopping"
        # Close, and keep reading: what the server sent before it saw our close frame is still kept.
        closing = asyncio.create_task(ws.close(code, reason[:100]))
        await asyncio.wait((reader,), timeout=DRAIN_TIMEOUT_S)
        reader.cancel()
        await closing
        if reader.done() and not reader.cancelled():
            self._reader_ended(reader)
        return cause, code, reason

    def _reader_ended(self, reader: asyncio.Task) -> tuple[str, int | None, str]:
        exc = reader.exception()
        if isinstance(exc, OSError):  # the spool's: the socket's errors come as ConnectionClosed
            self._fail_storage(exc)
            return "storage", None, f"cannot write the spool: {_why(exc)}"
        if not isinstance(exc, websockets.ConnectionClosed):
            # A bug of ours, not the server's doing: the frame is kept already; record it and reconnect.
            log.error("error: the recorder failed on a frame (reconnecting)", exc_info=exc)
            return "internal_error", 1011, f"{type(exc).__name__}: {exc}"
        return _closed(exc, self.config.max_frame_bytes)

    async def _receive(self, ws: _FrameConnection, conn: _Connection) -> None:
        writer, legacy_writer = self.writer, self.legacy
        while True:
            message, not_utf8, size = await ws.recv_frame()
            ts_ns = time.time_ns()
            self.bytes_received += size
            if not_utf8:
                writer.append(spool.KIND_FRAME, message, ts_ns, "received", not_utf8=True)
                self.frames_received += 1
                conn.frames += 1
                conn.last_frame = time.monotonic()
                continue
            data = isinstance(message, str) and message.startswith("42")
            if data and self._down is not None:
                # The first data after an outage ends it. Frame and outage record reach the file in
                # one write: were the frame kept without the record, the next start (after a kill -9)
                # would take the frame for the last data of a recorder that had recorded its outage.
                with writer.together():
                    writer.append(spool.KIND_FRAME, message, ts_ns, "received")
                    self._end_outage(ts_ns)
            else:
                writer.append(spool.KIND_FRAME, message, ts_ns, "received")
            self.frames_received += 1
            conn.frames += 1
            conn.last_frame = time.monotonic()
            # Events are almost every frame: only game states (and, for the legacy file, every
            # event) are parsed here; the full interpretation happens at landing.
            if data:
                conn.last_data, conn.last_data_ns = conn.last_frame, ts_ns
                if legacy_writer is None and not message.startswith(GAME_STATE):
                    continue
                frame = parse_frame(message)
                if frame.kind != "event":
                    continue
                if legacy_writer is not None:
                    legacy_writer.write(ts_ns, frame.event_name, frame.args)
                if frame.event_name == "gameStateUpdate" and isinstance(frame.payload, dict):
                    conn.in_game = frame.payload.get("active") is True and frame.payload.get("rugged") is not True
                continue
            frame = parse_frame(message)
            if frame.kind == "open":
                hs = Handshake.from_open(frame)
                conn.silence_s = hs.silence_limit_s
                self._lifecycle("handshake", sid=hs.sid, ping_interval_s=hs.ping_interval_s,
                                ping_timeout_s=hs.ping_timeout_s)
            elif frame.kind == "connect":
                self._legacy_note(ts_ns, "connect")
            elif frame.kind == "malformed" and isinstance(message, str) and message.startswith(EIO_OPEN):
                # Kept (above); the heartbeat it should set is unknown, so this connection cannot be trusted.
                if not conn.rejected.done():
                    conn.rejected.set_result(f"unusable handshake: {frame.error}")
            reply = reply_to(frame)
            if reply is not None:
                try:
                    await ws.send(reply)
                except websockets.ConnectionClosed:
                    continue  # too late to answer; what the server sent before closing is still to be read
                writer.append(spool.KIND_FRAME, reply, time.time_ns(), "sent")

    async def _watch(self, conn: _Connection) -> tuple[str, str]:
        """Returns (cause, reason) once the connection has stopped delivering."""
        cfg = self.config
        period = min(0.25, cfg.stale_game_s / 4, cfg.stale_idle_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            limit = cfg.stale_game_s if conn.in_game else cfg.stale_idle_s
            if now - conn.last_data >= limit:
                return "stale", f"no data for {limit:g} s" + (" during a game" if conn.in_game else "")
            if now - conn.last_frame >= conn.silence_s:
                return "silent", f"no frame for {conn.silence_s:g} s"


def _stopped_receiving(segments: list[Path]) -> int | None:
    """When a crashed session last received data, read from what it kept (newest first).

    Its last event frame; without one, the outage it had inherited from a crash before it
    (its ``recovered`` records), else its start. The spool, not the acknowledgement file, is
    the truth here: after kill -9 what survives is a prefix of what the session appended (all
    it acknowledged, and whatever its buffered file had handed to the kernel), and a frame that
    ended an outage is only ever kept together with that outage's record (``together``).
    """
    inherited = 0
    for path in reversed(segments):
        for rec in reversed(spool.read_segment(path)[1]):
            if rec.kind == spool.KIND_FRAME:
                if rec.direction == "received" and isinstance(rec.data, str) and rec.data.startswith("42"):
                    return rec.ts_ns
                continue
            info = orjson.loads(rec.data)
            if info.get("event") == "recovered":
                inherited = max(inherited, info.get("down_since_ns") or 0)
            elif info.get("event") == "started":
                return inherited or rec.ts_ns
    return inherited or None


def _closed(exc: websockets.ConnectionClosed, max_frame_bytes: int) -> tuple[str, int | None, str]:
    """(cause, code, reason) of a connection that ended under the reader."""
    if exc.sent is not None and not exc.rcvd_then_sent:  # websockets failed the connection
        if exc.sent.code == 1009:
            return "frame_too_big", 1009, f"a frame over {max_frame_bytes} bytes was refused"
        return "protocol_error", exc.sent.code, ("the server broke the WebSocket protocol: "
                                                    + (exc.sent.reason or f"close {exc.sent.code}"))
    if exc.rcvd is not None:
        return "server_closed", exc.rcvd.code, exc.rcvd.reason or f"closed by the server ({exc.rcvd.code})"
    return "lost", None, "connection closed without a close frame"


def _why(exc: OSError | None) -> str:
    return (exc.strerror if exc is not None and exc.strerror else None) or str(exc)


def _retry_after(values: list[str]) -> float | None:
    """Seconds to wait from the (first) Retry-After header (delta-seconds or an HTTP date); None if absent or unreadable."""
    if not values:
        return None
    value = values[0].strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


def _backoff(attempt: int, initial: float, cap: float) -> float:
    """Capped exponential backoff with jitter, so many recorders do not reconnect in step."""
    if attempt <= 0:
        return initial * random.uniform(0.5, 1.0)
    return min(cap, initial * 2**attempt) * random.uniform(0.5, 1.0)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise RecorderError(f"data dir {folder} is not writable: {exc.strerror or exc}") from exc


def run(config: RecorderConfig) -> None:
    """Run until SIGINT/SIGTERM, then seal what is held."""

    async def main() -> None:
        recorder = Recorder(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, recorder.stop)
        await recorder.run()

    asyncio.run(main())
