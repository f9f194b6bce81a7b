"""Fuzz the recorder: nothing the server sends ends it, and every frame it sends is kept as it came.

One real ``rugs-pipeline record`` process connects again and again to a real websockets
server (``ScriptedServer``) that plays one generated script per connection: an HTTP answer
instead of the upgrade (any status, odd Retry-After and Location headers, garbage), or an
Engine.IO OPEN packet (valid, with wrong or missing fields, or mutated bytes), a few frames
(events, protocol packets, random text, bytes that are not UTF-8, binary, mutations) and an
end (a close frame with any code and reason, invalid ones too, garbage, or a dropped TCP
connection); raw bytes in place of the HTTP answer, too. After each script the recorder must come back for the next; at the end every
frame of every connection must be in the spool, byte for byte, and each connection must have
its end recorded with a cause. The recorder shares its state across examples, so a failure
is reported as generated (no shrinking). ``make test`` runs a few dozen fixed examples; the
slow run (``make soak``) runs ``RUGS_FUZZ_EXAMPLES`` (500) random ones.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from rugs_pipeline.formats import spool
from rugs_pipeline.formats.protocol import Handshake, encode_event, encode_open, parse_frame

from .capture_harness import Recorder, Script, ScriptedServer, close_frame, records, wait_until

OPEN = encode_open("fuzz", 25000, 20000).encode()
EVENT = encode_event("gameStateUpdate", {"gameId": "g1", "active": True, "tickCount": 7}).encode()
HEADER_TEXT = st.text(string.printable.strip(), max_size=30)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


@st.composite
def mutated(draw, data: bytes) -> bytes:
    """``data`` with a few bytes flipped, inserted or deleted."""
    out = bytearray(data)
    for op, where, byte in draw(st.lists(st.tuples(st.sampled_from("fid"), st.integers(0, 10**6), st.integers(0, 255)),
                                         min_size=1, max_size=3)):
        at = where % (len(out) + 1)
        if op == "i" or not out:
            out.insert(at, byte)
        elif op == "f":
            out[at % len(out)] ^= byte or 1
        else:
            del out[at % len(out)]
    return bytes(out)


opens = st.one_of(
    st.builds(lambda sid, i, t: encode_open(sid, i, t).encode(), st.text(max_size=8), st.integers(1, 60000),
              st.integers(1, 60000)),
    st.fixed_dictionaries({}, optional={"sid": json_values, "pingInterval": json_values, "pingTimeout": json_values,
                                        "maxPayload": json_values}).map(lambda d: b"0" + orjson.dumps(d)),
    json_values.map(lambda v: b"0" + orjson.dumps(v)),
    st.binary(max_size=30).map(lambda b: b"0" + b),
    mutated(OPEN),
)
frames = st.one_of(
    st.builds(lambda name, value: encode_event(name, value).encode(), st.text(max_size=10), json_values),
    st.sampled_from([b"2", b"3", b"1", b"6", b"40", b'40{"sid":"x"}', b"41", b'44{"message":"no"}', b"", EVENT]),
    st.text(max_size=40).map(str.encode),
    st.binary(max_size=40),
    mutated(EVENT),
)
ends = st.one_of(
    st.builds(close_frame, st.sampled_from([1000, 1001, 1008, 1011, 1012, 3000, 4999]), HEADER_TEXT.map(str.encode)),
    st.builds(close_frame, st.integers(0, 65535), st.binary(max_size=20)),  # codes and reasons websockets refuses
    st.binary(min_size=1, max_size=1).map(lambda b: Frame(Opcode.CLOSE, b).serialize(mask=False, extensions=[])),
    st.binary(max_size=30),  # garbage, or nothing: the TCP connection just drops
)
websocket_scripts = st.builds(
    lambda first, rest, end: Script([(Opcode.TEXT, first), *rest], end),
    opens, st.lists(st.tuples(st.sampled_from([Opcode.TEXT] * 4 + [Opcode.BINARY]), frames), max_size=6), ends)
locations = st.sampled_from(["", "nonsense", ":::", "ws://127.0.0.1:1/", "http://127.0.0.1:1/x", "wss://127.0.0.1:1/"]) \
    | HEADER_TEXT.map(lambda t: "/" + t)  # relative: back to this server, where it takes the next script
http_scripts = st.builds(
    lambda status, headers, body: Script(response=(status, headers, body)),
    st.integers(100, 599).filter(lambda s: s != 101),
    st.lists(st.tuples(st.sampled_from(["Retry-After", "Content-Type", "Upgrade", "Connection", "X-Any"]),
                       st.sampled_from(["0", "1", "²", "9" * 30, "Wed, 21 Oct 2015 07:28:00 GMT"]) | HEADER_TEXT)
             | st.tuples(st.just("Location"), locations), max_size=4),
    st.binary(max_size=40),
)
UPGRADE = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
raw_http_scripts = st.builds(Script, response=st.one_of(st.binary(max_size=60), mutated(UPGRADE),
                                                         mutated(b"HTTP/1.1 429 Too Many\r\nRetry-After: 1\r\n\r\n")))
scripts = st.one_of(http_scripts, raw_http_scripts, websocket_scripts, websocket_scripts)

LAST = Script([(Opcode.TEXT, OPEN), (Opcode.TEXT, EVENT)])  # stays open until the recorder stops


def expected(opcode: Opcode, data: bytes) -> tuple[str | bytes, bool]:
    """How the spool keeps a frame: (data, not_utf8)."""
    if opcode is Opcode.BINARY:
        return data, False
    try:
        return data.decode(), False
    except UnicodeDecodeError:
        return data, True


def fuzz(tmp_path: Path, examples: int, derandomize: bool) -> None:
    server = ScriptedServer()
    data = tmp_path / "data"
    recorder = Recorder(server.url, data, "--min-connect-interval", "0.01", "--backoff-max", "0.05",
                        "--retry-after-max", "0.05")
    played: list[Script] = []

    def back() -> bool:
        """The recorder is waiting for the next script (or it is gone)."""
        return server.waiting > 0 or recorder.proc.poll() is not None

    @settings(max_examples=examples, derandomize=derandomize, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(scripts)
    def one(script: Script) -> None:
        wait_until(back, 60, "the recorder to connect")
        assert recorder.proc.poll() is None, f"the recorder ended after {played[-1:]}:\n{recorder.stderr}"
        finished = server.finished
        played.append(script)
        server.play(script)
        wait_until(lambda: server.finished > finished and back(), 60, "the script to play and the recorder to return")
        assert recorder.proc.poll() is None, f"the recorder ended on {script}:\n{recorder.stderr}"

    try:
        one()
        wait_until(back, 60, "the recorder to connect")
        played.append(LAST)
        server.play(LAST)
        wait_until(lambda: recorder.stderr.splitlines()[-1].startswith("outage over"), 60, "the last connection's data")
        assert recorder.stop() == 0, recorder.stderr
    finally:
        server.stop()
        if recorder.proc.poll() is None:
            recorder.kill9()
    assert "Traceback" not in recorder.stderr, recorder.stderr
    (session, kept), = records(data).items()
    conns: list[list[spool.SpoolRecord]] = []
    life = []
    for rec in kept:
        if rec.kind == spool.KIND_LIFECYCLE:
            info = orjson.loads(rec.data)
            life.append(info)
            if info["event"] == "connected":
                conns.append([])
        elif rec.direction == "received":
            conns[-1].append(rec)
    sent = [s for s in played if s.response is None]
    assert len(conns) == len(sent), "one connection per websocket script"
    for script, got in zip(sent, conns):
        assert [(r.data, r.not_utf8) for r in got] == [expected(*f) for f in script.frames], script
    ended = [info for info in life if info["event"] == "disconnected"]
    assert len(ended) == len(sent) and all(info["cause"] for info in ended)
    assert not [info for info in ended if info["cause"] == "internal_error"], ended
    assert life[-1]["event"] == "stopped"


def test_fuzzed_handshakes_and_frames_never_end_the_recorder(tmp_path: Path) -> None:
    fuzz(tmp_path, examples=25, derandomize=True)


@pytest.mark.slow
def test_fuzzed_handshakes_and_frames_never_end_the_recorder_long(tmp_path: Path) -> None:
    fuzz(tmp_path, examples=int(os.environ.get("RUGS_FUZZ_EXAMPLES", "500")), derandomize=False)


@settings(max_examples=1000, derandomize=True, database=None)
@given(st.one_of(st.text(), st.binary(), mutated(EVENT).map(lambda b: b.decode("utf-8", "replace")),
                 st.builds(lambda head, body: head + body, st.sampled_from(["0", "40", "42", "43", "45", "451-"]),
                           st.text())))
@example('42²["x"]')  # a digit to str.isdigit, not to int
@example("451²-[]")
def test_parsing_a_frame_never_raises(frame: str | bytes) -> None:
    parsed = parse_frame(frame)
    assert (parsed.kind == "malformed") == (parsed.error is not None)
    if parsed.kind == "open":
        assert Handshake.from_open(parsed).silence_limit_s > 0
