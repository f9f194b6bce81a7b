"""Replay from the store: ``consumers.replay`` (the reader) and ``rugs-pipeline replay`` (the Socket.IO server).

The reader's tests write ``ws_event`` files as landing writes them (``landing.records_to_table``);
the server's drive the real CLI with real clients and a real recorder.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from rugs_pipeline.formats import spool
from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.consumers import Frame, Replay, ReplayError, areplay, replay
from rugs_pipeline.consumers.replay_server import ReplayConfig, ReplayServer
from rugs_pipeline.formats.protocol import encode_event, encode_open, parse_frame, reply_to, trace_header
from rugs_pipeline.store import landing, schema
from rugs_pipeline.store.layout import SchemaVersionError, Store
from rugs_pipeline.store.versions import fill_typed_columns
from rugs_pipeline.testing import unpacked_golden

from .capture_harness import CLI, Recorder, Sim, land_and_derive, lifecycle

# the module: the package's attribute ``replay`` is the function
replay_module = importlib.import_module("rugs_pipeline.consumers.replay")

DAY = "2025-06-01"
T0 = int(datetime.fromisoformat(f"{DAY}T10:00:00+00:00").timestamp() * 1e9)
MS = 1_000_000  # ns


def state(game: str, tick: int) -> str:
    return encode_event("gameStateUpdate", {"gameId": game, "tickCount": tick, "price": 1 + tick / 100, "active": True})


def write_session(store: Store, session: str, frames: list[tuple[int, str]], name: str | None = None,
                  rebuilt: bool = False) -> None:
    """One landed ws_event file of ``session``: a lifecycle record, then ``frames`` ((ns after T0, text)) received."""
    records = [spool.SpoolRecord(0, T0 + frames[0][0] - MS, spool.KIND_LIFECYCLE, json.dumps({"event": "connected"}),
                                 None)]
    records += [spool.SpoolRecord(i + 1, T0 + at, spool.KIND_FRAME, text, rebuilt=rebuilt)
                for i, (at, text) in enumerate(frames)]
    table = fill_typed_columns(landing.records_to_table(spool.SegmentHeader(session, "public_ws"), records))
    store.ensure_manifest()
    store.write_partition_file("ws_event", DAY, table, name or f"{session}.parquet")


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "store")


def texts(frames) -> list[str]:
    return [f.raw for f in frames]


def test_frames_in_receive_order_byte_exact_without_control_packets_or_lifecycle(store) -> None:
    traced = encode_event("standard/newTrade", trace_header("a" * 32, "b" * 16), {"id": "t1", "gameId": "g1"})
    a = [(0, encode_open("sid1")), (1 * MS, "40{\"sid\":\"x\"}"), (2 * MS, "2"), (10 * MS, state("g1", 0)),
         (30 * MS, traced), (50 * MS, state("g1", 1)), (51 * MS, "not json at all")]
    b = [(20 * MS, encode_event("newChatMessage", {"message": "hi ünïcode"})), (50 * MS, state("g2", 0))]
    write_session(store, "s-a", a)
    write_session(store, "s-b", b)
    frames = list(replay(DAY, data_dir=store.root))
    # by receive time, then (session, seq); the OPEN, 40 and ping are the connection's, not the feed's
    assert texts(frames) == [a[3][1], b[0][1], traced, a[5][1], b[1][1], a[6][1]]
    first = frames[0]
    assert (first.session_id, first.seq, first.event_name) == ("s-a", 4, "gameStateUpdate")
    assert first.ts == datetime.fromtimestamp((T0 + 10 * MS) / 1e9, timezone.utc)
    assert frames[2].payload == {"id": "t1", "gameId": "g1"}  # the last argument, after the trace header
    assert frames[1].payload == {"message": "hi ünïcode"} and frames[-1].payload is None


def test_a_day_of_files_of_two_schemas_is_read_whole(store) -> None:
    """Part-way through a migration a day holds files of two versions: columns in another order, of another type,
    missing (one read, too: a file from before `is_rebuilt`)."""
    a, b = [(0, state("g", 0)), (20 * MS, state("g", 2))], [(10 * MS, state("g", 1))]
    write_session(store, "s-a", a)
    write_session(store, "s-b", b)
    path = store.partition_dir("ws_event", DAY) / "s-b.parquet"
    older = pq.read_table(path)
    older = older.select(sorted(set(older.column_names) - {"source", "doc_type", "is_rebuilt"}))
    pq.write_table(older.set_column(older.column_names.index("seq"), "seq", older["seq"].cast(pa.int32())), path)
    assert [f.raw for f in replay(DAY, data_dir=store.root)] == [state("g", t) for t in range(3)]


def test_payload_is_parsed_only_on_access(store, monkeypatch) -> None:
    write_session(store, "s", [(i * MS, state("g", i)) for i in range(5)])
    calls = []
    real = replay_module.orjson.loads
    monkeypatch.setattr(replay_module.orjson, "loads", lambda text: calls.append(1) or real(text))
    frames = list(replay(DAY, data_dir=store.root))
    assert calls == []
    assert frames[3].payload["tickCount"] == 3 and frames[3].payload["tickCount"] == 3
    assert calls == [1]


def test_two_sessions_copies_of_a_frame_are_served_once_the_first_received(store) -> None:
    """Two recorders on one feed: the same texts a few ms apart. Each session's own repeats stay."""
    feed = [state("g", t) for t in range(6)]
    repeat = encode_event("rugRoyaleUpdate", {"status": "INACTIVE"})
    a = [(i * 100 * MS, text) for i, text in enumerate(feed[:4])] + [(400 * MS, repeat), (450 * MS, repeat)]
    # b joined late (its own on-connect snapshot first), lagging a by 3 ms, and stayed after a stopped
    b = [(150 * MS, encode_event("gameStateUpdate", {"gameId": "g", "prices": [1.0, 1.01]}))]
    b += [(i * 100 * MS + 3 * MS, text) for i, text in enumerate(feed) if i >= 2]
    b = sorted(b + [(403 * MS, repeat), (453 * MS, repeat)])
    write_session(store, "s-a", a)
    write_session(store, "s-b", b)
    frames = list(replay(DAY, data_dir=store.root))
    assert texts(frames) == [feed[0], feed[1], b[0][1], feed[2], feed[3], repeat, feed[4], repeat, feed[5]]
    assert [f.session_id for f in frames] == ["s-a", "s-a", "s-b", "s-a", "s-a", "s-a", "s-b", "s-a", "s-b"]


def test_same_text_from_another_session_outside_the_window_is_a_new_frame(store) -> None:
    late = int(replay_module.DEDUP_WINDOW.total_seconds() * 1e9) + MS
    text = encode_event("rugRoyaleUpdate", {"status": "INACTIVE"})
    write_session(store, "s-a", [(0, text)])
    write_session(store, "s-b", [(late, text)])
    assert [f.session_id for f in replay(DAY, data_dir=store.root)] == ["s-a", "s-b"]


def test_filters_by_game_and_event_and_reads_a_long_day_in_slices(store, monkeypatch) -> None:
    monkeypatch.setattr(replay_module, "SLICE_ROWS", 50)
    frames = []
    for minute in range(30):  # 30 minutes of 20 frames: slices of 2 minutes
        for i in range(20):
            game = f"g{minute // 10}"
            frames.append(((minute * 60_000 + i * 100) * MS, state(game, minute * 20 + i)))
        frames.append(((minute * 60_000 + 5_000) * MS, encode_event("newChatMessage", {"n": minute})))
    write_session(store, "s", frames, name="a.parquet")
    source = replay_module.Replay(DAY, data_dir=store.root)
    # planned from the footers (no rows read): slices of whole minutes, none over SLICE_ROWS
    per_slice = [sum(lo <= (T0 + at) // 1000 < hi for at, _ in frames) for _, lo, hi in source.slices]
    assert sum(per_slice) == 630 and max(per_slice) <= 50 and len(per_slice) <= 16
    assert source.describe() == f"{DAY}: 630 frames (before dropping redundant sessions' copies), 3 games"
    source.close()
    everything = list(replay(DAY, data_dir=store.root))
    assert texts(everything) == [t for _, t in sorted(frames)]
    only = list(replay(DAY, DAY, games=["g1"], events=["gameStateUpdate"], data_dir=store.root))
    assert len(only) == 200 and {f.payload["gameId"] for f in only} == {"g1"}
    chat = list(replay(DAY, events="newChatMessage", data_dir=store.root))  # one name as a string
    assert [f.payload["n"] for f in chat] == list(range(30))


def test_speed_paces_by_the_recorded_gaps(store) -> None:
    write_session(store, "s", [(0, state("g", 0)), (400 * MS, state("g", 1)), (800 * MS, state("g", 2))])
    started = time.monotonic()
    list(replay(DAY, speed=4, data_dir=store.root))  # 0.8 s recorded: 0.2 s at 4x
    paced = time.monotonic() - started
    assert paced >= 0.19


def test_async_twin_gives_the_same_frames(store) -> None:
    write_session(store, "s-a", [(i * MS, state("g", i)) for i in range(10)])
    write_session(store, "s-b", [(i * MS + 1000, state("g", i)) for i in range(5, 15)])

    async def collect() -> list[Frame]:
        return [f async for f in areplay(DAY, data_dir=store.root)]

    assert texts(asyncio.run(collect())) == texts(replay(DAY, data_dir=store.root))
    assert len(texts(replay(DAY, data_dir=store.root))) == 15


def test_bad_input_is_refused_before_the_first_frame(store) -> None:
    write_session(store, "s", [(0, state("g", 0))])
    with pytest.raises(ReplayError, match="no stored frames for 2025-06-02 .*days with frames: 2025-06-01"):
        replay("2025-06-02", data_dir=store.root)
    with pytest.raises(ReplayError, match="end day 2025-05-31 is before the start day 2025-06-01"):
        replay(DAY, "2025-05-31", data_dir=store.root)
    with pytest.raises(ReplayError, match="no stored frames of game nope"):
        replay(DAY, games=["nope"], data_dir=store.root)
    with pytest.raises(ReplayError, match="not a day"):
        replay("June", data_dir=store.root)
    manifest = json.loads(store.manifest_path.read_text())
    store.manifest_path.write_text(json.dumps({**manifest, "version": "2.0.0"}))
    with pytest.raises(SchemaVersionError, match="'2.0.0' is not readable"):
        replay(DAY, data_dir=store.root)


# --- the server ------------------------------------------------------------------------------------------

ENVELOPE = ("ts", "session_id", "seq", "source")  # what a round trip changes in a derived row (README: Replay)


def serve(data: Path, *args: str) -> tuple[subprocess.Popen, str]:
    """``rugs-pipeline replay`` on a free port over the store ``data``; its URL."""
    proc = subprocess.Popen([CLI, "replay", "--port", "0", *args], env={**os.environ, "RUGS_DATA_DIR": str(data)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"(ws://\S+)", line)
    assert match, f"replay did not start: {line!r} {proc.stderr.read() if not line else ''}"
    return proc, match.group(1)


def refused(data: Path, *args: str) -> str:
    """The one line a replay that must not start prints; it exits 1 without a traceback."""
    out = subprocess.run([CLI, "replay", *args], env={**os.environ, "RUGS_DATA_DIR": str(data)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and out.stdout == "", (out.returncode, out.stdout, out.stderr)
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
    return out.stderr.strip()


def days_of(data: Path) -> list[str]:
    return Store(data).partition_days("ws_event")


def served(data: Path) -> list[str]:
    days = days_of(data)
    return texts(replay(days[0], days[-1], data_dir=data))


def rows(table, order: list[str] | None = None) -> list[tuple]:
    """A derived table's rows without what a round trip changes; received rows only (sent ones are not served)."""
    names = [n for n in table.column_names if n not in ENVELOPE]
    out = [tuple(r[n] for n in names) for r in table.to_pylist() if r.get("direction") in ("received", None)]
    return sorted(out, key=repr) if order else out


def round_trip(original: Path, copy: Path) -> dict:
    """Serve ``original`` with --max, record it into ``copy``, land and derive both; they must agree."""
    before = land_and_derive(original)
    days = days_of(original)
    proc, url = serve(original, "--from", days[0], "--to", days[-1], "--max")
    recorder = Recorder(url, copy)
    try:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
        said = proc.stderr.read()
    finally:
        assert recorder.stop() == 0, recorder.stderr
    assert "frames sent" in said and f"replay serving {days[0]}" in said, said
    disconnected = [r for r in lifecycle(copy) if r["event"] == "disconnected"]
    assert [r["code"] for r in disconnected] == [1000], disconnected  # closed once, cleanly, after the last frame
    after = land_and_derive(copy)
    expected = served(original)
    assert expected and served(copy) == expected
    # the copy as stored, read without the reader: its received frames (but the connection's own) in seq order
    stored = sorted((r["seq"], r["raw_json"]) for r in after["ws_event"].to_pylist()
                    if r["direction"] == "received" and r["frame_kind"] not in replay_module.CONTROL_KINDS)
    assert [text for _, text in stored] == expected
    assert {r["is_rebuilt"] for r in after["ws_event"].to_pylist() if r["direction"] == "received"} == {False}
    ticks = {name: sorted((r["game_id"], r["tick"], r["price"]) for r in t["game_tick"].to_pylist())
             for name, t in (("before", before), ("after", after))}
    assert ticks["after"] == ticks["before"]
    for doc_type in ("player_action", "server_state"):
        assert rows(after[doc_type]) == rows(before[doc_type]), doc_type
    return before


def test_round_trip_of_a_simulator_recording(tmp_path) -> None:
    sim = Sim(tmp_path / "sim", "--speed", "10", "--seed", "7")
    original = tmp_path / "original"
    try:
        first = Recorder(sim.url, original)
        first.wait_acked(frames=500)  # a game or so: ticks, trades, sidebets, a rug, a history
        assert first.stop() == 0, first.stderr
    finally:
        sim.stop()
    before = round_trip(original, tmp_path / "copy")
    assert before["game_tick"].num_rows > 50 and len(rows(before["player_action"])) > 5
    assert len(rows(before["server_state"])) > 5


@pytest.mark.parametrize("pattern", ["golden", "public_2025-12-06_sandbox.jsonl", "public_2025-12-12_raw.jsonl",
                                     "cdp_2025-12-15.jsonl", "keysamples_2026-02-06.json", "example_seq_*.json"])
def test_round_trip_of_each_recording_imported(request, tmp_path, pattern) -> None:
    """The golden day in any clone; each real recording where ../shared holds it."""
    original = tmp_path / "original"
    eastern = ZoneInfo("America/New_York")
    files = ([unpacked_golden(tmp_path)] if pattern == "golden"
             else sorted(request.getfixturevalue("real_dir").glob(pattern)))
    import_recordings(files, Store(original).spool_dir, eastern if pattern.startswith("public") else timezone.utc)
    Store(original).ensure_manifest()
    round_trip(original, tmp_path / "copy")


@pytest.mark.parametrize("known_from", ["system_event", "lifecycle"])
def test_a_recorded_outage_is_a_disconnect_with_disconnects(store, known_from) -> None:
    write_session(store, "s", [(0, state("g", 0)), (10 * MS, state("g", 1)),
                               (60_000 * MS, state("g", 2)), (60_010 * MS, state("g", 3))])
    if known_from == "lifecycle":  # the day not derived yet: the recorder's own record of the outage
        record = spool.SpoolRecord(9, T0 + 60_000 * MS, spool.KIND_LIFECYCLE, json.dumps(
            {"event": "outage", "v": 2, "start_ns": T0 + 10 * MS, "end_ns": T0 + 60_000 * MS}), None)
        table = fill_typed_columns(landing.records_to_table(spool.SegmentHeader("s", "public_ws"), [record]))
        store.write_partition_file("ws_event", DAY, table, "s-outage.parquet")
    outage = schema.conform(pa.table({
        "ts": pa.array([T0 // 1000 + 60_000_000], pa.timestamp("us", tz="UTC")), "source": ["public_ws"],
        "doc_type": ["system_event"],
        "session_id": ["s"], "seq": [9], "event_name": ["outage"], "message": ["connection lost: going away"],
        "start_ts": pa.array([T0 // 1000 + 10_000], pa.timestamp("us", tz="UTC")),
        "end_ts": pa.array([T0 // 1000 + 60_000_000], pa.timestamp("us", tz="UTC"))}))
    if known_from == "system_event":
        store.replace_partition("system_event", DAY, outage)
    proc, url = serve(store.root, "--from", DAY, "--speed", "1000", "--with-disconnects")

    async def connection() -> tuple[list[str], int | None]:
        got = []
        async with connect(url) as ws:
            try:
                async for message in ws:
                    frame = parse_frame(message)
                    if frame.kind == "event":
                        got.append(message)
                    elif (reply := reply_to(frame)) is not None:
                        await ws.send(reply)
            except ConnectionClosed:
                pass
        return got, ws.close_code

    try:
        first, second = asyncio.run(connection()), asyncio.run(connection())
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        proc.kill()
    assert first == ([state("g", 0), state("g", 1)], 1001)  # the outage: a close, not 60 s of silence
    assert second == ([state("g", 2), state("g", 3)], 1000)  # then the rest, and a clean close
    assert "1 outages served as disconnects" in proc.stderr.read()


def test_bad_input_is_one_line_and_no_traceback(store) -> None:
    write_session(store, "s", [(0, state("g", 0))])
    assert "no stored frames for 2025-06-02" in refused(store.root, "--from", "2025-06-02", "--port", "0")
    assert "no stored frames of game nope" in refused(store.root, "--from", DAY, "--game", "nope", "--port", "0")
    assert "end day 2025-05-31 is before the start day" in refused(store.root, "--from", DAY, "--to", "2025-05-31")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert f"port {port} on 127.0.0.1 is in use" in refused(store.root, "--from", DAY, "--port", str(port))
    manifest = json.loads(store.manifest_path.read_text())
    store.manifest_path.write_text(json.dumps({**manifest, "version": "2.0.0"}))
    assert "'2.0.0' is not readable" in refused(store.root, "--from", DAY, "--port", "0")


def test_a_compaction_between_two_slices_loses_and_repeats_nothing(store, monkeypatch) -> None:
    monkeypatch.setattr(replay_module, "SLICE_ROWS", 10)
    write_session(store, "s-a", [(minute * 60_000 * MS, state("g", minute)) for minute in range(0, 20, 2)])
    write_session(store, "s-b", [(minute * 60_000 * MS, state("g", minute)) for minute in range(1, 20, 2)])
    frames = replay(DAY, data_dir=store.root)
    got = [next(frames).raw]
    # as compaction leaves a day: one merged file in place of the listed ones
    folder = store.partition_dir("ws_event", DAY)
    merged = pa.concat_tables([pq.read_table(f) for f in sorted(folder.glob("*.parquet"))])
    store.write_partition_file("ws_event", DAY, merged, "20250601_c0001-0.parquet")
    for f in folder.glob("s-*.parquet"):
        f.unlink()
    got += [f.raw for f in frames]
    assert got == [state("g", minute) for minute in range(20)]


def test_a_client_that_stops_reading_holds_the_max_replay_back(store) -> None:
    """Back-pressure: with --max, a client reading nothing stops the feed after a bounded amount (the outbox,
    the socket's buffers), rather than the day piling up in the replay's memory; then it gets every frame."""
    padding = "x" * 12_000
    frames = [(i * MS, encode_event("gameStateUpdate", {"gameId": "g", "tickCount": i, "pad": padding}))
              for i in range(4_000)]  # 48 MB of text
    write_session(store, "s", frames)

    async def scenario() -> tuple[list[str], int]:
        server = ReplayServer(Replay(DAY, data_dir=store.root), ReplayConfig(speed=None))
        await server.start()
        feed = asyncio.create_task(server.run())
        got: list[str] = []
        async with connect(server.url, max_size=None, compression=None) as ws:  # the text as is: 48 MB
            async for message in ws:  # the handshake, then the first frame
                if message.startswith("0"):
                    await ws.send("40")
                elif message.startswith("42"):
                    got.append(message)
                    break
            await asyncio.sleep(2)  # reading nothing
            held_back = server.frames_sent
            async for message in ws:
                if message.startswith("42"):
                    got.append(message)
        await feed
        await server.stop()
        return got, held_back

    got, held_back = asyncio.run(scenario())
    assert got == [text for _, text in frames]
    assert held_back < len(frames) / 2, f"{held_back} of {len(frames)} frames sent to a client that read none"



def test_reads_one_slice_ahead_at_most_and_stopping_ends_the_read_ahead(store, monkeypatch) -> None:
    """The next slice is read in a worker thread while one is served: never more (memory), and a consumer that
    stops leaves no thread behind."""
    monkeypatch.setattr(replay_module, "SLICE_ROWS", 2)  # 10 slices of 2 minutes
    write_session(store, "s", [(minute * 60_000 * MS, state("g", minute)) for minute in range(20)])
    read = []  # each slice read: its first µs
    real = replay_module.Replay._slice
    monkeypatch.setattr(replay_module.Replay, "_slice",
                        lambda self, con, day, lo, hi: read.append(lo) or real(self, con, day, lo, hi))
    frames = replay(DAY, data_dir=store.root)
    for n, frame in enumerate(frames):
        if n % 4 == 0:
            time.sleep(0.2)  # time for any read ahead to happen
        assert sum(lo > frame.ts_us for lo in read) <= 1  # the frame's slice, and at most the next
        if n == 10:
            break
    assert len(read) >= 2 and any(t.name.startswith("replay-read") for t in threading.enumerate())
    frames.close()
    assert not any(t.name.startswith("replay-read") for t in threading.enumerate())
