"""The server side of an Engine.IO v4 / Socket.IO connection, shared by the simulator and the replay server.

Both speak to a client exactly as the rugs.fun server does: the request is checked like
Engine.IO checks it, then OPEN, the client's ``40`` answered with ``40{"sid"}``, pings at the
announced interval (a pong due ``ping_timeout`` after each ping leaves), acks for events that ask.
What each server feeds in between is its own. A connection's frames go through one outbox
(``(feed number or None, frame)`` items) drained by one writer, so control frames (pings, acks)
keep their place among the feed's.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from rugs_pipeline.formats.protocol import PING, encode_ack, encode_connect, encode_open, parse_frame

SIO_PATH = "/socket.io/"
CONNECT_TIMEOUT_S = 45.0  # socket.io's connectTimeout: how long a client may wait before sending 40

Outbox = asyncio.Queue  # of (feed number or None for a per-connection frame, frame)


def check_request(connection: ServerConnection, request: Request) -> Response | None:
    """Engine.IO's own answers to a wrong path, protocol version or transport; None for a good request."""
    url = urlsplit(request.path)
    if url.path != SIO_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
    query = parse_qs(url.query)
    if query.get("EIO") != ["4"]:
        return json_response(HTTPStatus.BAD_REQUEST, '{"code":5,"message":"Unsupported protocol version"}')
    if query.get("transport") != ["websocket"]:
        return json_response(HTTPStatus.BAD_REQUEST, '{"code":0,"message":"Transport unknown"}')
    return None


def json_response(status: HTTPStatus, body: str, extra: dict[str, str] | None = None) -> Response:
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))), *(extra or {}).items()])
    return Response(status.value, status.phrase, headers, body.encode())


def new_sid() -> str:
    return secrets.token_urlsafe(15)


async def handshake(ws: ServerConnection, send: Callable[[str], Awaitable[None]], ping_interval_ms: int,
                    ping_timeout_ms: int) -> bool:
    """OPEN, then the client's ``40`` answered with ``40{"sid"}``; False (the socket closed 1008) without a ``40``.

    ``send``: how the server sends a frame (the simulator logs each). Raises ConnectionClosed.
    """
    await send(encode_open(new_sid(), ping_interval_ms, ping_timeout_ms))
    if not await await_connect(ws):
        await ws.close(1008, "no Socket.IO connect")
        return False
    await send(encode_connect(new_sid()))
    return True


async def await_connect(ws: ServerConnection) -> bool:
    """Wait for the client's Socket.IO connect to the default namespace (``40``, maybe with auth data)."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            async for message in ws:
                frame = parse_frame(message)
                if frame.kind == "connect" and frame.namespace == "/":
                    return True
    except TimeoutError:
        pass
    return False


async def read_client(ws: ServerConnection, outbox: Outbox, pong: asyncio.Event) -> None:
    """Pongs feed the heartbeat; client events (authenticate, ...) are accepted and, if asked, acked."""
    try:
        async for message in ws:
            frame = parse_frame(message)
            if frame.kind == "pong":
                pong.set()
            elif frame.kind == "event" and frame.ack_id is not None:
                outbox.put_nowait((None, encode_ack(frame.ack_id)))
            elif frame.kind in ("close", "disconnect"):
                return
    except ConnectionClosed:
        pass


async def heartbeat(ws: ServerConnection, outbox: Outbox, pinged: asyncio.Event, pong: asyncio.Event,
                    interval_s: float, timeout_s: float) -> None:
    """A ping every ``interval_s`` through the outbox; close 1011 when its pong is late.

    ``pinged``: set by the writer once the ping has left (the pong is due ``timeout_s`` after that, however
    long the ping queued behind the feed).
    """
    while True:
        await asyncio.sleep(interval_s)
        pinged.clear()
        pong.clear()
        outbox.put_nowait((None, PING))
        await pinged.wait()
        try:
            await asyncio.wait_for(pong.wait(), timeout_s)
        except TimeoutError:
            await ws.close(1011, "ping timeout")
            return


async def serve_until_signal(work: Awaitable[None], stop: Callable[[], Awaitable[None]]) -> None:
    """Await ``work`` until it ends or SIGINT/SIGTERM comes, then ``stop`` the server; raises what ``work`` raised."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    waits = [asyncio.create_task(work), asyncio.create_task(stopping.wait())]
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        await stop()
    for task in done:
        task.result()
