"""Engine.IO / Socket.IO framing, on the real events of the recordings and on protocol edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rugs_pipeline.formats import protocol
from rugs_pipeline.formats.protocol import parse_frame


def _real_events(real_dir: Path):
    """(name, data) of every event in the JSONL recordings, read with plain json."""
    for path in sorted(real_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            obj = json.loads(line)
            name = obj.get("event") or obj.get("event_type")
            yield name, obj.get("data")
    for path in sorted(real_dir.glob("example_seq_*.json")):
        obj = json.loads(path.read_text())
        yield obj["event"], obj["data"]


def _wire(name: str, data) -> str:
    """The wire form as the server writes it (recorders stored traced args as [header, payload])."""
    args = data if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("__trace") else [data]
    return "42" + json.dumps([name, *args], separators=(",", ":"))


def test_every_real_event_parses_with_payload_last(real_dir: Path) -> None:
    seen = 0
    for name, data in _real_events(real_dir):
        frame = parse_frame(_wire(name, data))
        assert frame.kind == "event" and frame.error is None
        assert frame.event_name == name
        expected = data[-1] if isinstance(data, list) and data and isinstance(data[0], dict) and data[0].get("__trace") else data
        assert frame.payload == expected
        seen += 1
    assert seen > 1000


def test_traced_event_keeps_header_and_payload() -> None:
    header = {"__trace": True, "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    payload = {"id": "t1", "type": "buy", "price": 1.25}
    frame = parse_frame("42" + json.dumps(["standard/newTrade", header, payload]))
    assert frame.trace == header
    assert frame.payload == payload
    assert frame.args == (header, payload)
    # the encoder writes what the parser reads
    assert parse_frame(protocol.encode_event("standard/newTrade", header, payload)) == frame


def test_open_handshake_keeps_heartbeat() -> None:
    frame = parse_frame('0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')
    assert frame.kind == "open"
    hs = protocol.Handshake.from_open(frame)
    assert (hs.sid, hs.ping_interval_s, hs.ping_timeout_s) == ("abc", 25.0, 20.0)
    assert hs.silence_limit_s == 45.0
    assert protocol.reply_to(frame) == "40"


@pytest.mark.parametrize(
    ("text", "kind", "reply"),
    [("2", "ping", "3"), ("3", "pong", None), ("1", "close", None), ("6", "noop", None),
     ('40{"sid":"x"}', "connect", None), ("41", "disconnect", None)],
)
def test_control_packets(text: str, kind: str, reply: str | None) -> None:
    frame = parse_frame(text)
    assert frame.kind == kind and frame.error is None
    assert protocol.reply_to(frame) == reply


def test_ack_connect_error_and_namespace() -> None:
    ack = parse_frame('4312[{"ok":true}]')
    assert (ack.kind, ack.ack_id, ack.args) == ("ack", 12, ({"ok": True},))
    err = parse_frame('44{"message":"Not authorized"}')
    assert (err.kind, err.data) == ("connect_error", {"message": "Not authorized"})
    ns = parse_frame('42/admin,7["ping",1]')
    assert (ns.namespace, ns.ack_id, ns.event_name, ns.payload) == ("/admin", 7, "ping", 1)
    assert protocol.encode_ack(12, {"ok": True}) == '4312[{"ok":true}]'


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("", "empty frame"),
        ("9hello", "unknown Engine.IO packet type"),
        ("4x", "unknown Socket.IO packet type"),
        ('42["gameStateUpdate",{"price":1', "not JSON"),
        ("42{}", "JSON array starting with the event name"),
        ("42[17]", "JSON array starting with the event name"),
        ("0not-json", "OPEN packet is not JSON"),
        (b"\x00\x01binary", "binary websocket frame"),
    ],
)
def test_malformed_frames_are_explained_not_raised(frame, reason: str) -> None:
    parsed = parse_frame(frame)
    assert parsed.kind == "malformed"
    assert reason in parsed.error
