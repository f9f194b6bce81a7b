"""Engine.IO v4 / Socket.IO v4 framing over a websocket, as pure functions.

Only this framing is hand-written: the frames themselves are the data we store,
so we must know exactly how each byte is interpreted. Parsing never raises: a
frame that does not follow the protocol comes back with ``error`` set so the
caller can keep it raw and explain it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

# Engine.IO packet types (first character of a text frame).
EIO_OPEN, EIO_CLOSE, EIO_PING, EIO_PONG, EIO_MESSAGE, EIO_UPGRADE, EIO_NOOP = "0123456"
EIO_NAMES = {
    EIO_OPEN: "open",
    EIO_CLOSE: "close",
    EIO_PING: "ping",
    EIO_PONG: "pong",
    EIO_MESSAGE: "message",
    EIO_UPGRADE: "upgrade",
    EIO_NOOP: "noop",
}
# Socket.IO packet types (second character of an Engine.IO message).
SIO_NAMES = {
    "0": "connect",
    "1": "disconnect",
    "2": "event",
    "3": "ack",
    "4": "connect_error",
    "5": "binary_event",
    "6": "binary_ack",
}

PING = EIO_PING
PONG = EIO_PONG
SIO_CONNECT = "40"


@dataclass(frozen=True)
class Frame:
    """One websocket frame, interpreted.

    ``kind`` is the most specific packet type: an Engine.IO type ("open",
    "ping", ...) or, for messages, the Socket.IO type ("event", "ack",
    "connect", ...). ``kind == "malformed"`` means ``error`` explains why.
    """

    kind: str
    event_name: str | None = None
    args: tuple[Any, ...] = ()
    ack_id: int | None = None
    namespace: str = "/"
    data: Any = None
    error: str | None = None
    binary: bool = False
    trace: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def payload(self) -> Any:
        """The event's payload: always the last argument (a trace header may precede it)."""
        return self.args[-1] if self.args else None


def _malformed(reason: str, binary: bool = False) -> Frame:
    return Frame(kind="malformed", error=reason, binary=binary)


def _is_trace_header(value: Any) -> bool:
    return isinstance(value, dict) and value.get("__trace") is True and "traceparent" in value


def parse_frame(frame: str | bytes) -> Frame:
    """Interpret one websocket frame. Never raises."""
    if isinstance(frame, (bytes, bytearray, memoryview)):
        # Engine.IO v4 sends binary attachments as raw binary frames; rugs.fun never
        # has, so a binary frame is kept and flagged rather than guessed at.
        return _malformed("binary websocket frame (no Socket.IO binary packet expected)", binary=True)
    if not frame:
        return _malformed("empty frame")
    eio = frame[0]
    if eio not in EIO_NAMES:
        return _malformed(f"unknown Engine.IO packet type {eio!r}")
    rest = frame[1:]
    if eio == EIO_OPEN:
        try:
            info = orjson.loads(rest)
        except orjson.JSONDecodeError as exc:
            return _malformed(f"OPEN packet is not JSON: {exc}")
        if not isinstance(info, dict) or not isinstance(info.get("sid"), str):
            return _malformed("OPEN packet without a string sid")
        for name in ("pingInterval", "pingTimeout"):
            # Absent: Engine.IO's default. Anything but a positive number would break the heartbeat.
            value = info.get(name, 1)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                return _malformed(f"OPEN packet with invalid {name} {orjson.dumps(value).decode()[:40]}: "
                                  "not a positive number of ms")
        return Frame(kind="open", data=info)
    if eio != EIO_MESSAGE:
        return Frame(kind=EIO_NAMES[eio], data=rest or None)
    return _parse_socketio(rest)


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²", which ``int`` refuses."""
    return text.isascii() and text.isdigit()


def _parse_socketio(packet: str) -> Frame:
    if not packet:
        return _malformed("empty Socket.IO packet")
    sio = packet[0]
    if sio not in SIO_NAMES:
        return _malformed(f"unknown Socket.IO packet type {sio!r}")
    kind = SIO_NAMES[sio]
    pos = 1
    if kind in ("binary_event", "binary_ack"):
        dash = packet.find("-", pos)
        if dash < 0 or not _digits(packet[pos:dash]):
            return _malformed("binary packet without attachment count")
        pos = dash + 1
    namespace = "/"
    if packet.startswith("/", pos):
        comma = packet.find(",", pos)
        end = comma if comma >= 0 else len(packet)
        namespace = packet[pos:end]
        pos = end + 1 if comma >= 0 else end
    start = pos
    while pos < len(packet) and _digits(packet[pos]):
        pos += 1
    ack_id = int(packet[start:pos]) if pos > start else None
    body = packet[pos:]
    data: Any = None
    if body:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _malformed(f"{kind} packet body is not JSON: {exc}")
    if kind in ("event", "binary_event"):
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            return _malformed("event packet is not a JSON array starting with the event name")
        args = tuple(data[1:])
        trace = args[0] if len(args) > 1 and _is_trace_header(args[0]) else None
        return Frame(kind=kind, event_name=data[0], args=args, ack_id=ack_id, namespace=namespace, trace=trace)
    if kind in ("ack", "binary_ack"):
        if not isinstance(data, list):
            return _malformed("ack packet is not a JSON array")
        return Frame(kind=kind, args=tuple(data), ack_id=ack_id, namespace=namespace)
    return Frame(kind=kind, data=data, namespace=namespace)


# --- encoders (used by the recorder for replies and by the simulator) ---------------


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def encode_open(sid: str, ping_interval_ms: int = 25000, ping_timeout_ms: int = 20000, max_payload: int = 1000000) -> str:
    return EIO_OPEN + _dumps(
        {"sid": sid, "upgrades": [], "pingInterval": ping_interval_ms, "pingTimeout": ping_timeout_ms, "maxPayload": max_payload}
    )


def encode_connect(namespace_sid: str | None = None) -> str:
    """Client: ``40`` joins the default namespace. Server: ``40{"sid":...}`` accepts it."""
    return SIO_CONNECT if namespace_sid is None else SIO_CONNECT + _dumps({"sid": namespace_sid})


def encode_event(name: str, *args: Any, ack_id: int | None = None) -> str:
    return "42" + ("" if ack_id is None else str(ack_id)) + _dumps([name, *args])


def encode_ack(ack_id: int, *args: Any) -> str:
    return f"43{ack_id}" + _dumps(list(args))


def trace_header(trace_id: str, span_id: str) -> dict[str, Any]:
    """The OpenTelemetry header rugs.fun puts before the payload of traced events."""
    return {"__trace": True, "traceparent": f"00-{trace_id}-{span_id}-01"}


@dataclass(frozen=True)
class Handshake:
    sid: str
    ping_interval_s: float
    ping_timeout_s: float

    @classmethod
    def from_open(cls, frame: Frame) -> "Handshake":
        """From an ``open`` frame (``parse_frame`` has checked its fields)."""
        info = frame.data
        return cls(
            sid=info["sid"],
            ping_interval_s=float(info.get("pingInterval", 25000)) / 1000.0,
            ping_timeout_s=float(info.get("pingTimeout", 20000)) / 1000.0,
        )

    @property
    def silence_limit_s(self) -> float:
        """How long the server may stay silent before the connection is dead (Engine.IO rule)."""
        return self.ping_interval_s + self.ping_timeout_s


def reply_to(frame: Frame) -> str | None:
    """What a read-only client must send back, if anything: a pong for a ping, ``40`` after OPEN."""
    if frame.kind == "ping":
        return PONG
    if frame.kind == "open":
        return SIO_CONNECT
    return None
