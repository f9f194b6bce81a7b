"""``rugs-pipeline replay``: a stored stretch served as the live Socket.IO feed.

A client connects exactly as to rugs.fun (``formats/sio_server.py``: OPEN, ``40`` -> ``40{"sid"}``,
pings) and gets the stored frames of ``consumers.replay.Replay`` byte-exact, in their order, each
once. Invariants:

- Nothing is read or served before the first client has completed its handshake; frames go to every
  client connected at the time (a broadcast, like the real feed), and a client connecting later
  joins the feed where it is. Paced, the feed runs on while no client is connected (as the real one
  does); under ``--max`` it waits for one.
- Pacing: the recorded gaps divided by ``speed``; ``speed=None`` (``--max``) sends as fast as the
  slowest client takes them. Memory stays bounded either way: each client's outbox holds at most
  ``OUTBOX_FRAMES`` feed frames (the feed waits for room), and websockets holds at most its write
  limit in the socket's buffer (``send`` waits for the drain), so a slow client pushes back on the
  reader instead of piling frames up.
- A recorded outage is silence of its length (over ``speed``); with ``disconnects`` it is a close
  (1001) of every client, and the feed resumes, its pacing restarted, once a client has connected again.
- After the last frame every client's outbox is drained and each is closed with 1000.
"""

from __future__ import annotations

import asyncio
import errno
import sys
from dataclasses import dataclass

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from rugs_pipeline.consumers.replay import Frame, Replay, ReplayError, Clock, abatches
from rugs_pipeline.formats.protocol import PING
from rugs_pipeline.formats.sio_server import (SIO_PATH, check_request, handshake, heartbeat, read_client,
                                              serve_until_signal)

OUTBOX_FRAMES = 256  # feed frames queued per client at most (control frames never wait)
WRITE_LIMIT = 2**20  # bytes the socket's buffer may hold before send() waits for the client
PING_INTERVAL_MS, PING_TIMEOUT_MS = 25_000, 20_000  # the real server's
CLOSE_TIMEOUT_S = 10.0
DRAIN_POLL_S = 0.01


@dataclass
class ReplayConfig:
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port
    speed: float | None = 1.0  # None: as fast as the clients take the frames
    disconnects: bool = False


class _Client:
    """One connection: its outbox, and an event set while the outbox has room for feed frames."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.outbox: asyncio.Queue[tuple[int | None, str]] = asyncio.Queue()
        self.room = asyncio.Event()
        self.room.set()
        self.feed_frames = 0  # feed frames in the outbox

    def put(self, frame: str) -> None:
        self.outbox.put_nowait((0, frame))
        self.feed_frames += 1
        if self.feed_frames >= OUTBOX_FRAMES:
            self.room.clear()

    async def write(self, pinged: asyncio.Event) -> None:
        try:
            while True:
                feed, message = await self.outbox.get()
                await self.ws.send(message)  # waits while the socket's buffer is over WRITE_LIMIT
                self.outbox.task_done()
                if feed is not None:
                    self.feed_frames -= 1
                    if self.feed_frames < OUTBOX_FRAMES:
                        self.room.set()
                elif message == PING:
                    pinged.set()
        except ConnectionClosed:
            self.room.set()  # a dead client holds up nobody


class ReplayServer:
    def __init__(self, source: Replay, config: ReplayConfig) -> None:
        self.source, self.config = source, config
        self.clock = Clock(config.speed) if config.speed is not None else None
        self._clients: dict[ServerConnection, _Client] = {}
        self._connected = asyncio.Event()  # set while at least one client is connected
        self._server: Server | None = None
        self.port = 0
        self.frames_sent = 0
        self.disconnects = 0

    @property
    def url(self) -> str:
        return f"ws://{self.config.host}:{self.port}{SIO_PATH}?EIO=4&transport=websocket"

    async def start(self) -> int:
        cfg = self.config
        try:
            self._server = await serve(self._serve_client, cfg.host, cfg.port, process_request=check_request,
                                       ping_interval=None, max_size=None, write_limit=WRITE_LIMIT,
                                       close_timeout=CLOSE_TIMEOUT_S)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ReplayError(f"port {cfg.port} on {cfg.host} is in use: pick another --port") from None
            raise ReplayError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _serve_client(self, ws: ServerConnection) -> None:
        try:
            if not await handshake(ws, ws.send, PING_INTERVAL_MS, PING_TIMEOUT_MS):
                return
        except ConnectionClosed:
            return
        client = _Client(ws)
        self._clients[ws] = client
        self._connected.set()
        pinged, pong = asyncio.Event(), asyncio.Event()
        tasks = [asyncio.create_task(read_client(ws, client.outbox, pong)),
                 asyncio.create_task(client.write(pinged)),
                 asyncio.create_task(heartbeat(ws, client.outbox, pinged, pong, PING_INTERVAL_MS / 1000,
                                               PING_TIMEOUT_MS / 1000))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            self._drop(ws)
            await ws.close()

    def _drop(self, ws: ServerConnection) -> None:
        client = self._clients.pop(ws, None)
        if client is not None:
            client.room.set()
        if not self._clients:
            self._connected.clear()

    async def run(self) -> None:
        """Serve every frame (from the first client's connect on), then close each client with 1000."""
        await self._connected.wait()
        outages = list(self.source.outages) if self.config.disconnects else []
        previous: int | None = None
        async for batch in abatches(self.source):
            for frame in batch:
                if previous is not None:
                    while outages and outages[0].end_us <= frame.ts_us:
                        if outages.pop(0).start_us >= previous:  # nothing was received during it: it was the gap
                            await self._disconnect()
                previous = frame.ts_us
                await self._send(frame)
        await self._finish()

    async def _send(self, frame: Frame) -> None:
        if self.clock is None:
            await self._connected.wait()  # as fast as the clients take them: none connected takes none
        elif (wait := self.clock.delay(frame.ts_us)) > 0:
            await asyncio.sleep(wait)
        for client in list(self._clients.values()):
            if not client.room.is_set():
                await client.room.wait()
            if client.ws in self._clients:
                client.put(frame.raw)
        self.frames_sent += 1

    async def _disconnect(self) -> None:
        """A recorded outage: close every client, then wait for one to come back; pacing restarts there."""
        self.disconnects += 1
        clients = list(self._clients.values())
        await self._drain(clients)  # what was received before the outage, first
        for client in clients:
            self._drop(client.ws)
        await asyncio.gather(*(c.ws.close(1001, "going away") for c in clients), return_exceptions=True)
        await self._connected.wait()
        if self.clock is not None:
            self.clock = Clock(self.clock.speed)

    async def _finish(self) -> None:
        clients = list(self._clients.values())
        await self._drain(clients)
        await asyncio.gather(*(c.ws.close(1000, "replay finished") for c in clients), return_exceptions=True)

    async def _drain(self, clients: list[_Client]) -> None:
        """Wait until the clients' outboxes are sent; a client that goes meanwhile is not waited for."""
        async def drained(client: _Client) -> None:
            while client.ws in self._clients and client.outbox.qsize():
                await asyncio.sleep(DRAIN_POLL_S)
        await asyncio.gather(*(drained(c) for c in clients))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def run(source: Replay, config: ReplayConfig) -> None:
    """Serve ``source`` until its last frame has gone out (or SIGINT/SIGTERM); says what it serves on stderr."""

    async def main() -> None:
        server = ReplayServer(source, config)
        await server.start()
        pace = "as fast as the client takes them" if config.speed is None else f"at {config.speed:g}x"
        print(f"replay serving {source.describe()}, {pace}", file=sys.stderr, flush=True)
        print(f"replay listening on {server.url}", flush=True)
        await serve_until_signal(server.run(), server.stop)
        outages = f", {server.disconnects} outages served as disconnects" if config.disconnects else ""
        print(f"replay done: {server.frames_sent:,} frames sent{outages}", file=sys.stderr, flush=True)

    try:
        asyncio.run(main())
    finally:
        source.close()
