"""The recorder: every frame of the feed, byte-exact, into the spool.

The receive time is taken the moment ``recv`` returns, before anything else is
done with the frame. Every frame is kept whatever it holds (known or unknown
event, malformed, binary); interpretation happens later, at landing. The
recorder answers the protocol (``40`` after OPEN, ``3`` for each ping) and keeps
what it sends too. It never gives up: each failure is a lifecycle record and a
capped, jittered backoff before the next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import websockets
from websockets.asyncio.client import connect

from rugs_pipeline.capture import spool
from rugs_pipeline.config import FEED_ORIGIN
from rugs_pipeline.feed.protocol import Handshake, parse_frame, reply_to

log = logging.getLogger(__name__)


class RecorderError(RuntimeError):
    """A fatal configuration problem, reported as one line."""


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
    connect_timeout_s: float = 15.0
    # Before the OPEN packet tells us the heartbeat, assume Engine.IO's defaults.
    default_silence_s: float = 45.0


class Recorder:
    def __init__(self, config: RecorderConfig) -> None:
        self.config = config
        self._stop = asyncio.Event()
        self.writer: spool.SpoolWriter | None = None
        self.frames_received = 0

    def stop(self) -> None:
        self._stop.set()

    def _lifecycle(self, event: str, **fields) -> None:
        self.writer.append(spool.KIND_LIFECYCLE, orjson.dumps({"event": event, **fields}).decode(), time.time_ns(), None)

    async def run(self) -> None:
        cfg = self.config
        _check_writable(cfg.spool_dir)
        recovered = spool.recover(cfg.spool_dir)
        self.writer = spool.SpoolWriter(
            cfg.spool_dir, spool.new_session_id(), cfg.source,
            seal_interval_s=cfg.seal_interval_s, fsync_interval_s=cfg.fsync_interval_s,
        )
        self._lifecycle("started", url=cfg.url, pid=os.getpid())
        for rec in recovered:
            # A crashed session: its acknowledged frames are sealed now; the time
            # between its last frame and this start is downtime.
            self._lifecycle(
                "recovered", crashed_session=rec.session_id, records=rec.records, last_seq=rec.last_seq,
                last_ts_ns=rec.last_ts_ns, torn_bytes=rec.torn_bytes,
                segment=rec.segment.name if rec.segment else None,
            )
        ticker = asyncio.create_task(self._tick_writer())
        attempt = 0
        try:
            while not self._stop.is_set():
                got_data = await self._connect_once(attempt)
                attempt = 0 if got_data else attempt + 1
                if self._stop.is_set():
                    break
                delay = _backoff(attempt, cfg.backoff_initial_s, cfg.backoff_max_s)
                self._lifecycle("reconnecting", attempt=attempt, delay_s=round(delay, 3))
                try:
                    await asyncio.wait_for(self._stop.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
        finally:
            ticker.cancel()
            self._lifecycle("stopped", frames_received=self.frames_received)
            self.writer.close()

    async def _tick_writer(self) -> None:
        interval = min(0.2, self.config.fsync_interval_s / 2)
        while True:
            await asyncio.sleep(interval)
            self.writer.tick()

    async def _connect_once(self, attempt: int) -> bool:
        """One connection, from connect to close. Returns whether any event arrived."""
        cfg = self.config
        got_events = False
        self._lifecycle("connecting", url=cfg.url, attempt=attempt)
        try:
            async with connect(
                cfg.url, origin=cfg.origin, open_timeout=cfg.connect_timeout_s, max_size=None,
                ping_interval=None, compression="deflate",
            ) as ws:
                self._lifecycle("connected", url=cfg.url)
                silence = cfg.default_silence_s
                stop_wait = asyncio.ensure_future(self._stop.wait())
                try:
                    while True:
                        recv = asyncio.ensure_future(ws.recv())
                        done, _ = await asyncio.wait({recv, stop_wait}, timeout=silence, return_when=asyncio.FIRST_COMPLETED)
                        if recv not in done:
                            recv.cancel()
                            if stop_wait in done:
                                await ws.close(1000, "recorder stopping")
                                self._lifecycle("disconnected", code=1000, reason="recorder stopping")
                            else:
                                self._lifecycle("disconnected", code=None, reason=f"no frame for {silence:.1f} s")
                            return got_events
                        message = recv.result()
                        ts_ns = time.time_ns()
                        self.writer.append(spool.KIND_FRAME, message, ts_ns, "received")
                        self.frames_received += 1
                        frame = parse_frame(message)
                        if frame.kind == "open":
                            hs = Handshake.from_open(frame)
                            silence = hs.silence_limit_s
                            self._lifecycle("handshake", sid=hs.sid, ping_interval_s=hs.ping_interval_s,
                                            ping_timeout_s=hs.ping_timeout_s)
                        elif frame.kind == "event":
                            got_events = True
                        reply = reply_to(frame)
                        if reply is not None:
                            await ws.send(reply)
                            self.writer.append(spool.KIND_FRAME, reply, time.time_ns(), "sent")
                finally:
                    stop_wait.cancel()
        except websockets.ConnectionClosed as exc:
            rcvd = exc.rcvd
            self._lifecycle("disconnected", code=rcvd.code if rcvd else None,
                            reason=(rcvd.reason if rcvd else "") or "connection closed without a close frame")
        except websockets.InvalidURI as exc:
            raise RecorderError(f"bad feed URL {cfg.url!r}: {exc}") from exc
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake, websockets.InvalidMessage) as exc:
            self._lifecycle("connect_failed", error=f"{type(exc).__name__}: {exc}")
        return got_events


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
