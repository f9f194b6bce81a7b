"""Reading earlier recorders' files and importing them into the spool.

Expectations are derived from the files themselves (parsed here with the standard
``json`` module), never pasted in, so the tests follow the fixtures if they change.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.formats.recordings import BadLine, RecordedEvent, RecordingError, detect_format, read_recording
from rugs_pipeline.formats.spool import KIND_FRAME, KIND_LIFECYCLE, read_segment, utc_day
from rugs_pipeline.formats.protocol import parse_frame

UTC = timezone.utc
EASTERN = ZoneInfo("America/New_York")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (file pattern, accepted format names, tz of its naive times, hours that tz is behind UTC there).
# The December 2025 files of the public recorders wrote US Eastern (EST, UTC-5) local time;
# the example_seq files wrote naive UTC (their gameId dates only fit UTC).
REAL = [
    ("public_2025-12-06_sandbox.jsonl", {"event-type-jsonl"}, EASTERN, 5),
    ("public_2025-12-12_raw.jsonl", {"seq-jsonl"}, EASTERN, 5),
    ("cdp_2025-12-15.jsonl", {"cdp-jsonl"}, UTC, 0),
    ("keysamples_2026-02-06.json", {"keysamples-json"}, UTC, 0),
    # One example is a single compact line (JSONL of one), the others are pretty-printed.
    ("example_seq_*.json", {"seq-json", "seq-jsonl"}, UTC, 0),
]


def _files(real_dir: Path, pattern: str) -> list[Path]:
    files = sorted(real_dir.glob(pattern))
    assert files, f"no fixture matches {pattern} in {real_dir}"
    return files


def _is_traced(data) -> bool:
    return isinstance(data, list) and len(data) == 2 and isinstance(data[0], dict) and data[0].get("__trace") is True


def recorded(path: Path) -> list[dict]:
    """The file's events as this test reads them, in the order the reader must yield them."""
    text = path.read_text()
    if path.name.startswith("keysamples"):
        samples = sorted(json.loads(text).items(), key=lambda kv: (kv[1]["timestamp_ms"], kv[1]["_meta"]["index"]))
        objs = [{"event": s["event_type"], "when": s["timestamp_ms"], "data": s["data"]} for _, s in samples]
    else:
        lines = text.splitlines() if path.suffix == ".jsonl" else [text]
        rows = [json.loads(line) for line in lines if line.strip()]
        objs = [{"event": o.get("event", o.get("event_type")), "when": o.get("ts", o.get("timestamp")), **o} for o in rows]
    for o in objs:
        data = o["data"]
        o["args"] = () if data is None else tuple(data) if _is_traced(data) else (data,)
        o["payload"] = o["args"][-1] if o["args"] else None
        o.setdefault("direction", "received")
    return objs


def expected_utc(when, behind_hours: int) -> datetime:
    if isinstance(when, int):  # timestamp_ms
        return datetime.fromtimestamp(when / 1000, UTC)
    parsed = datetime.fromisoformat(when)
    if parsed.tzinfo is not None:
        return parsed
    return (parsed + timedelta(hours=behind_hours)).replace(tzinfo=UTC)


def spool_records(report) -> list:
    return [r for seg in report.segments for r in read_segment(seg.path)[1]]


def spool_bytes(spool: Path) -> dict[str, bytes]:
    return {str(p.relative_to(spool)): p.read_bytes() for p in sorted(spool.rglob("*")) if p.is_file()}


# --- every real fixture format --------------------------------------------------------


@pytest.mark.parametrize("pattern, formats, tz, behind", REAL, ids=[r[0] for r in REAL])
def test_reads_every_event_of_real_recordings(real_dir, pattern, formats, tz, behind):
    for path in _files(real_dir, pattern):
        expected = recorded(path)
        items = list(read_recording(path, tz))
        assert detect_format(path) in formats
        assert not [i for i in items if isinstance(i, BadLine)]
        assert len(items) == len(expected)
        for event, exp in zip(items, expected):
            assert event.name == exp["event"]
            assert event.args == exp["args"]  # a trace header first, the payload last
            assert event.direction == exp["direction"]
            assert event.ts.utcoffset() == timedelta(0)
            if isinstance(exp["when"], int):
                assert round(event.ts.timestamp() * 1000) == exp["when"]
            assert event.ts == expected_utc(exp["when"], behind)


def test_keysamples_are_ordered_by_time_then_capture_index(real_dir):
    path = real_dir / "keysamples_2026-02-06.json"
    samples = json.loads(path.read_text())
    file_order = [s["event_type"] for s in samples.values()]
    events = list(read_recording(path))
    keys = [(s["timestamp_ms"], s["_meta"]["index"]) for s in samples.values()]
    assert [keys[e.line - 1] for e in events] == sorted(keys)
    # The file is ordered by name, not time (trades interleave), so order really changed.
    assert [e.name for e in events] != file_order
    assert sorted(e.line for e in events) == list(range(1, len(file_order) + 1))


@pytest.mark.parametrize("name", ["public_2025-12-06_sandbox.jsonl", "public_2025-12-12_raw.jsonl"])
def test_tz_option_puts_naive_times_on_the_server_clock(real_dir, name):
    """Frames come after the end time the server gives the newest finished game; only Eastern fits."""
    path = real_dir / name
    checked = 0
    for eastern, as_utc in zip(read_recording(path, EASTERN), read_recording(path)):
        history = eastern.args[-1].get("gameHistory") if eastern.name == "gameStateUpdate" else None
        if history:
            ended = datetime.fromtimestamp(max(g["timestamp"] for g in history) / 1000, UTC)
            assert ended <= eastern.ts < ended + timedelta(minutes=10)
            assert as_utc.ts < ended  # read as UTC, the frame would predate its own history
            checked += 1
    assert checked


def test_keysamples_keep_the_recorders_clock_as_stated(real_dir):
    """That recorder's timestamp_ms runs 5 h ahead; the reader does not silently correct it."""
    for event in read_recording(real_dir / "keysamples_2026-02-06.json"):
        history = event.args[-1].get("gameHistory")
        if history:
            ended = datetime.fromtimestamp(max(g["timestamp"] for g in history) / 1000, UTC)
            assert timedelta(hours=5) <= event.ts - ended < timedelta(hours=5, minutes=2)


@pytest.mark.parametrize("pattern, formats, tz, behind", REAL, ids=[r[0] for r in REAL])
def test_import_rebuilds_wire_frames(real_dir, tmp_path, pattern, formats, tz, behind):
    files = _files(real_dir, pattern)
    reports = import_recordings(files, tmp_path / "spool", tz)
    assert [r.path for r in reports] == files
    for path, report in zip(files, reports):
        expected = recorded(path)
        assert report.session_id == "import-" + hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        assert report.format in formats and report.events == len(expected) and not report.bad_lines
        for seg in report.segments:
            header, records, _ = read_segment(seg.path)
            assert (header.session_id, header.source) == (report.session_id, "replay")
            assert {utc_day(r.ts_ns) for r in records} == {seg.day}
        records = spool_records(report)
        assert [r.seq for r in records] == list(range(1, len(expected) + 1))
        for record, exp in zip(records, expected):
            assert record.ts_ns == (expected_utc(exp["when"], behind) - EPOCH) // timedelta(microseconds=1) * 1000
            if exp["event"] in ("connect", "disconnect") and exp["data"] is None:
                assert (record.kind, record.direction) == (KIND_LIFECYCLE, None)
                state = {"connect": "connected", "disconnect": "disconnected"}[exp["event"]]
                assert json.loads(record.data) == {"event": state, "imported": True, "file": path.name}
                continue
            frame = parse_frame(record.data)
            assert (record.kind, record.rebuilt, record.direction) == (KIND_FRAME, True, exp["direction"])
            assert (frame.kind, frame.event_name) == ("event", exp["event"])
            assert frame.payload == exp["payload"]
            assert frame.trace == (exp["data"][0] if _is_traced(exp["data"]) else None)


def test_real_fixtures_exercise_traces_sent_frames_and_connect(real_dir, tmp_path):
    """Guards the tests above against vacuous passes: the fixtures hold each special case."""
    raw, cdp = real_dir / "public_2025-12-12_raw.jsonl", real_dir / "cdp_2025-12-15.jsonl"
    traced = sum(_is_traced(o["data"]) for o in recorded(raw))
    sent = sum(o["direction"] == "sent" for o in recorded(cdp))
    assert traced and sent and recorded(raw)[0]["event"] == "connect"
    raw_report, cdp_report = import_recordings([raw, cdp], tmp_path, EASTERN)
    assert sum(parse_frame(r.data).trace is not None for r in spool_records(raw_report) if r.kind == KIND_FRAME) == traced
    assert sum(r.direction == "sent" for r in spool_records(cdp_report)) == sent
    assert spool_records(raw_report)[0].kind == KIND_LIFECYCLE


def test_importing_twice_is_byte_identical(real_dir, tmp_path):
    names = ["public_2025-12-12_raw.jsonl", "cdp_2025-12-15.jsonl", "keysamples_2026-02-06.json"]
    files = [real_dir / name for name in names]
    first, second = tmp_path / "a", tmp_path / "b"
    import_recordings(files, first, EASTERN)
    once = spool_bytes(first)
    import_recordings(files, first, EASTERN)
    import_recordings(files, second, EASTERN)
    assert once and spool_bytes(first) == once == spool_bytes(second)


# --- corrupt input ------------------------------------------------------------------


def corrupt_copy(src: Path, dst: Path) -> dict[int, str]:
    """Copy ``src`` with garbage inserted; returns {line number: garbage text}."""
    good = src.read_text().splitlines()
    garbage = {
        0: "this is not json",
        10: good[10][: len(good[10]) // 2],  # truncated
        20: '{"seq": 0, "ts": "yesterday", "event": "x", "data": null}',
        30: '{"seq": 0, "ts": "2025-12-12T17:17:00", "data": {}}',
        40: "[1, 2, 3]",
    }
    out, bad = [], {}
    for index, line in enumerate(good):
        if index in garbage:
            out.append(garbage[index])
            bad[len(out)] = garbage[index]
        out.append(line)
    out.append(good[-1][:100])  # a torn last write, no newline
    bad[len(out)] = out[-1]
    dst.write_text("\n".join(out))
    return bad


def test_corrupt_lines_are_reported_and_imported_as_errors(real_dir, tmp_path):
    src = real_dir / "public_2025-12-12_raw.jsonl"
    path = tmp_path / "damaged.jsonl"
    bad = corrupt_copy(src, path)
    good_count = len(recorded(src))

    items = list(read_recording(path, EASTERN))
    bad_lines = [i for i in items if isinstance(i, BadLine)]
    assert [b.line for b in bad_lines] == sorted(bad)
    assert [b.text for b in bad_lines] == [bad[n][:500] for n in sorted(bad)]
    reasons = [b.reason for b in bad_lines]
    assert reasons[0].startswith("not JSON") and reasons[1].startswith("not JSON") and reasons[-1].startswith("not JSON")
    assert reasons[2].startswith("bad timestamp")
    assert reasons[3] == "missing field 'event'"
    assert reasons[4].startswith("not a JSON object")
    assert sum(isinstance(i, RecordedEvent) for i in items) == good_count

    (report,) = import_recordings([path], tmp_path / "spool", EASTERN)
    assert report.events == good_count and report.bad_lines == bad_lines
    records = spool_records(report)
    assert [r.seq for r in records] == list(range(1, len(items) + 1))
    lifecycle = [(i, json.loads(r.data)) for i, r in enumerate(records) if r.kind == KIND_LIFECYCLE]
    errors = [(i, e) for i, e in lifecycle if e["event"] == "import_error"]
    assert [e["line"] for _, e in errors] == sorted(bad)
    assert all(e["file"] == path.name and e["reason"] and e["text"] == bad[e["line"]][:500] for _, e in errors)
    for index, _ in errors:
        # At the previous good record's time; the first line, having none, at the next one's.
        assert records[index].ts_ns == records[index - 1 if index else index + 1].ts_ns
    assert len(records) - len(errors) == good_count


# --- no real fixtures needed ----------------------------------------------------------


def _line(**fields) -> str:
    return json.dumps(fields)


def test_synthetic_recordings_of_every_format(tmp_path):
    trace = {"__trace": True, "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}
    minus5 = timezone(timedelta(hours=-5))
    seq = tmp_path / "seq.log"  # the name says nothing; the content decides
    seq.write_text("\n".join([
        _line(seq=1, ts="2025-12-31T18:59:59.5", event="connect", data=None),
        _line(seq=2, ts="2025-12-31T18:59:59.9", event="gameStateUpdate", data={"tickCount": 1}),
        "{garbage",
        _line(seq=3, ts="2025-12-31T19:00:00.1", event="standard/newTrade", data=[trace, {"id": "t1"}]),
        _line(seq=4, ts="2025-12-31T23:59:59.95+00:00", event="gameStateUpdate", data={"tickCount": 2}),
        "",
        _line(seq=5, ts="2026-01-01T00:00:01Z", event="disconnect", data=None),
    ]) + "\n")
    cdp = tmp_path / "cdp.txt"
    cdp.write_text("\n".join([
        _line(seq=1, ts="2025-12-15T05:39:20+00:00", event="authenticate", data=trace, source="cdp", direction="sent"),
        _line(seq=2, ts="2025-12-15T05:39:21+00:00", event="x", data=1, source="cdp", direction="up"),
    ]))
    typed = tmp_path / "typed"
    typed.write_text(_line(timestamp="2025-12-06T19:57:10.420892", event_type="rugRoyaleUpdate", data={"a": 1}) + "\n")
    single = tmp_path / "single.json"
    event = {"seq": 7, "ts": "2025-12-17T21:35:05", "event": "playerUpdate", "data": {"cash": 1.5}}
    single.write_text(json.dumps(event, indent=2))
    samples = tmp_path / "samples.json"
    samples.write_text(json.dumps({
        "b": {"_meta": {}, "event_type": "second", "timestamp_ms": 1770365059440, "data": {}},
        "a": {"_meta": {}, "event_type": "first", "timestamp_ms": 1770365059440, "data": {}},
        "c": {"_meta": {}, "event_type": "broken", "data": {}},
        "0": {"_meta": {}, "event_type": "earliest", "timestamp_ms": 1770365000000, "data": None},
    }, indent=2))

    assert [detect_format(p) for p in (seq, cdp, typed, single, samples)] == [
        "seq-jsonl", "cdp-jsonl", "event-type-jsonl", "seq-json", "keysamples-json"]

    items = list(read_recording(seq, minus5))
    assert [i.line for i in items] == [1, 2, 3, 4, 5, 7]
    assert isinstance(items[2], BadLine) and items[2].text == "{garbage"
    assert items[0].args == () and items[1].args == ({"tickCount": 1},)
    assert items[3].args == (trace, {"id": "t1"})
    assert items[0].ts == datetime(2025, 12, 31, 23, 59, 59, 500000, UTC)
    assert items[3].ts == datetime(2026, 1, 1, 0, 0, 0, 100000, UTC)

    sent, wrong = read_recording(cdp)
    assert (sent.direction, sent.args) == ("sent", (trace,))  # lossy recorder: header, no payload
    assert isinstance(wrong, BadLine) and "direction" in wrong.reason
    (typed_event,) = read_recording(typed, minus5)
    assert typed_event.ts == datetime(2025, 12, 7, 0, 57, 10, 420892, UTC)
    (single_event,) = read_recording(single)
    assert (single_event.name, single_event.args, single_event.ts.hour) == ("playerUpdate", ({"cash": 1.5},), 21)
    *ordered, broken = read_recording(samples)
    assert [e.name for e in ordered] == ["earliest", "first", "second"] and ordered[0].args == ()
    assert isinstance(broken, BadLine) and broken.line == 3 and "timestamp_ms" in broken.reason

    spool = tmp_path / "spool"
    report = import_recordings([seq], spool, minus5)[0]
    assert (report.format, report.events, len(report.bad_lines)) == ("seq-jsonl", 5, 1)
    # Midnight, then an out-of-order frame back before it: one segment per run of one day.
    assert [s.day for s in report.segments] == ["2025-12-31", "2026-01-01", "2025-12-31", "2026-01-01"]
    assert "_" not in report.session_id
    records = spool_records(report)
    assert [r.kind for r in records] == [KIND_LIFECYCLE, KIND_FRAME, KIND_LIFECYCLE, KIND_FRAME, KIND_FRAME, KIND_LIFECYCLE]
    assert json.loads(records[0].data) == {"event": "connected", "imported": True, "file": "seq.log"}
    assert json.loads(records[2].data)["line"] == 3 and records[2].ts_ns == records[1].ts_ns
    assert json.loads(records[5].data)["event"] == "disconnected"
    assert records[3].data == '42["standard/newTrade",' + json.dumps([trace, {"id": "t1"}], separators=(",", ":"))[1:]
    before = spool_bytes(spool)
    import_recordings([seq], spool, minus5)
    assert spool_bytes(spool) == before


def test_missing_and_unrecognised_files_raise(tmp_path):
    cases = {
        tmp_path / "absent.jsonl": "no such file",
        tmp_path / "empty.jsonl": "empty",
        tmp_path / "prose.txt": "unrecognised format",
        tmp_path / "other.json": "unrecognised format",
        tmp_path / "games.jsonl": "unrecognised format",
    }
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "prose.txt").write_text("hello\nworld\n")
    (tmp_path / "other.json").write_text(json.dumps({"a": {"b": 1}}, indent=2))
    # The replayer's processed game files are not event recordings.
    (tmp_path / "games.jsonl").write_text(_line(type="tick", timestamp="2025-10-29T18:36:08", tick=1) + "\n")
    for path, reason in cases.items():
        for call in (detect_format, read_recording):
            with pytest.raises(RecordingError) as info:
                call(path)
            message = str(info.value)
            assert path.name in message and reason in message and "\n" not in message
    good = tmp_path / "good.jsonl"
    good.write_text(_line(seq=1, ts="2025-12-12T17:16:58", event="x", data=None) + "\n")
    with pytest.raises(RecordingError, match="absent.jsonl"):
        import_recordings([good, tmp_path / "absent.jsonl"], tmp_path / "spool")
    assert not (tmp_path / "spool").exists()  # checked before anything was written


def test_real_replayer_games_are_not_recordings(real_dir, tmp_path):
    game = _files(real_dir, "replayer_games/*.jsonl")[0]
    with pytest.raises(RecordingError, match=game.name):
        read_recording(game)
