"""Importing recordings that are JSON arrays, hold over-long lines, or land on another UTC day than expected.

Expectations come from the files the tests write (parsed with the standard ``json`` module) or
from importing the same events in a format already covered by test_recordings.py.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys

import pytest

from rugs_pipeline.formats import recordings
from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.formats.recordings import BadLine, RecordedEvent, RecordingError, detect_format, read_recording
from rugs_pipeline.formats.spool import KIND_LIFECYCLE, MAX_FRAME_BYTES, read_segment
from rugs_pipeline.testing import GOLDEN

from .conftest import REPO_ROOT

BIN = REPO_ROOT / ".venv" / "bin"
MIB = 2**20
# Strings holding every byte the array reader must not take for structure.
TRICKY = {"seq": 0, "ts": "2025-12-12T12:16:57", "event": "chat",
          "data": {"text": 'a "quoted" ]},[ \\ and \\" then \\\\', "k\\\"]": [[], {}, "}"]}}


def records(report) -> list[tuple]:
    """What an import stored, without the session id (it is the file's hash)."""
    return [(r.seq, r.ts_ns, r.kind, r.data, r.direction, r.rebuilt)
            for seg in report.segments for r in read_segment(seg.path)[1]]


def golden_events() -> list[dict]:
    """The golden day's events (the simulator's feed, in the {seq, ts, event, data} envelope)."""
    return [json.loads(line) for line in gzip.decompress(GOLDEN.read_bytes()).decode().splitlines()]


def events() -> list[dict]:
    return [TRICKY] + golden_events()[:600]  # the size of a short real recording


@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "pretty"])
@pytest.mark.parametrize("chunk", [recordings._CHUNK, 7], ids=["1MiB-reads", "7-byte-reads"])
def test_a_json_array_imports_like_the_same_events_one_per_line(tmp_path, monkeypatch, indent, chunk):
    monkeypatch.setattr(recordings, "_CHUNK", chunk)  # 7: every string, escape and bracket crosses a read
    objs = events()
    (tmp_path / "lines").mkdir(), (tmp_path / "array").mkdir()
    lines, array = tmp_path / "lines" / "events.json", tmp_path / "array" / "events.json"  # the name is stored
    lines.write_text("".join(json.dumps(o) + "\n" for o in objs))
    array.write_text(json.dumps(objs, indent=indent))

    assert detect_format(array) == "seq-json-array"
    items = list(read_recording(array))
    assert [i.line for i in items] == list(range(1, len(objs) + 1))
    assert all(isinstance(i, RecordedEvent) for i in items)
    assert items[0].args == (TRICKY["data"],)
    from_lines, from_array = import_recordings([lines, array], tmp_path / "spool")
    assert from_array.events == len(objs) and not from_array.bad_lines
    assert records(from_array) == records(from_lines)


def test_a_damaged_array_keeps_every_element_it_cannot_read(tmp_path):
    good = [{"seq": n, "ts": f"2025-12-12T12:00:0{n}", "event": "tick", "data": {"n": n}} for n in range(4)]
    text = json.dumps([good[0], "just text", {"seq": 1, "ts": "2025-12-12T12:00:01"}, good[1],
                       {**good[2], "data": {"pad": "x" * 5000}}, good[3], {"seq": 9, "ts": "2025-12-12T12:00:09"}])
    path = tmp_path / "damaged.json"
    path.write_text(text[:-30])  # torn mid-element, the array never closed

    items = list(read_recording(path, max_bytes=4000))
    assert [(i.line, type(i).__name__) for i in items] == [
        (1, "RecordedEvent"), (2, "BadLine"), (3, "BadLine"), (4, "RecordedEvent"), (5, "BadLine"),
        (6, "RecordedEvent"), (7, "BadLine")]
    assert items[1].reason == "not a JSON object but str" and items[2].reason == "missing field 'event', 'data'"
    assert items[4].reason.endswith("bytes, over the frame limit of 4000 bytes (--max-frame-mb): not read")
    assert int(items[4].reason.split()[0]) == len(json.dumps({**good[2], "data": {"pad": "x" * 5000}}))
    assert items[4].text == json.dumps({**good[2], "data": {"pad": "x" * 5000}})[:500]
    assert items[6].reason.startswith("not JSON")

    (report,) = import_recordings([path], tmp_path / "spool", max_bytes=4000)
    errors = [json.loads(r[3]) for r in records(report) if r[2] == KIND_LIFECYCLE]
    assert [(e["event"], e["line"]) for e in errors] == [("import_error", n) for n in (2, 3, 5, 7)]
    assert "over the frame limit" in errors[2]["reason"] and errors[2]["text"] == items[4].text


def test_text_after_the_end_of_an_array_is_kept_as_an_error(tmp_path):
    event = {"seq": 1, "ts": "2025-12-12T12:00:00", "event": "tick", "data": {}}
    path = tmp_path / "two.json"
    path.write_text(json.dumps([event]) + "\n" + " " * (3 * 2**20) + json.dumps([{**event, "seq": 2}]) + "\n")
    first, after = read_recording(path)
    assert isinstance(first, RecordedEvent)
    assert (after.line, after.reason) == (2, "text after the end of the JSON array: not read")
    assert after.text == json.dumps([{**event, "seq": 2}])
    path.write_text(json.dumps([event]) + "\n" + " " * (3 * 2**20))
    assert [type(i) for i in read_recording(path)] == [RecordedEvent]


@pytest.mark.parametrize("chunk", [recordings._CHUNK, 7], ids=["1MiB-reads", "7-byte-reads"])
def test_a_line_over_the_frame_limit_becomes_an_import_error(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(recordings, "_CHUNK", chunk)  # 7: the long lines are read past in many pieces
    before = {"seq": 1, "ts": "2025-12-12T12:00:00", "event": "tick", "data": {}}
    after = {**before, "seq": 3}
    huge = json.dumps({"seq": 2, "ts": "2025-12-12T12:00:01", "event": "tick", "data": ["y" * 100] * 100})
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join([json.dumps(before), huge, "", json.dumps(after), huge]))  # the last: no newline

    first, bad, last, bad_again = read_recording(path, max_bytes=len(huge) - 1)
    assert (first.line, last.line) == (1, 4) and isinstance(first, RecordedEvent)
    for item, line in ((bad, 2), (bad_again, 5)):
        assert isinstance(item, BadLine) and item.line == line and item.text == huge[:500]
        assert item.reason == (f"{len(huge)} bytes, over the frame limit of {len(huge) - 1} bytes "
                               "(--max-frame-mb): not read")
    assert all(isinstance(i, RecordedEvent) for i in read_recording(path, max_bytes=len(huge)))
    first, bad, last, bad_again = read_recording(path, max_bytes=100)
    assert [i.line for i in (first, last)] == [1, 4] and bad.reason.startswith(f"{len(huge)} bytes, over")


def test_a_single_document_is_parsed_whole_only_within_four_frame_limits(tmp_path):
    event = {"seq": 1, "ts": "2025-12-17T21:35:05", "event": "playerUpdate", "data": {"pad": "z" * 3000}}
    path = tmp_path / "single.json"
    path.write_text(json.dumps(event, indent=2))
    size = path.stat().st_size
    (read,) = read_recording(path, max_bytes=-(-size // 4))  # 4 limits hold the file
    assert isinstance(read, RecordedEvent) and read.args == (event["data"],)
    with pytest.raises(RecordingError) as info:
        read_recording(path, max_bytes=(size - 1) // 4)  # they do not
    assert str(info.value) == (
        f"{path}: unrecognised format: no {{seq, ts, event, data}} or {{timestamp, event_type, data}} line among "
        f"the first 100, and at {size} bytes over 4 times the frame limit (--max-frame-mb) to be read as a single "
        "JSON document")


def test_a_json_array_of_anything_else_is_still_refused(tmp_path):
    for name, text in (("numbers.json", "[1, 2, 3]"), ("empty.json", " [ ] "), ("games.json", '[{"type": "tick"}]')):
        (tmp_path / name).write_text(text)
        with pytest.raises(RecordingError, match=f"{name}: unrecognised format: a JSON array, but none of its first"):
            detect_format(tmp_path / name)


# --- memory: a subprocess's peak RSS --------------------------------------------------------


def _peak_rss_mib(args: list, env: dict) -> float:
    """Peak RSS of ``rugs-pipeline ARGS`` run in a fresh interpreter that does nothing else."""
    code = ("import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
            "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, str(BIN / "rugs-pipeline"), *map(str, args)],
                         env=env, capture_output=True, text=True, timeout=600)
    returncode, kib = out.stdout.split()[-2:]
    assert returncode == "0", out.stderr
    return int(kib) / 1024


def test_import_memory_stays_within_twice_the_frame_limit(tmp_path):
    """An event over four times the limit, among 10 MB of ordinary ones, in both line and array form.

    The measure is the growth over importing a small file (the interpreter, pyarrow, rich, ...).
    Before the limit, this 35 MB line cost ~470 MB more and the array was refused.
    """
    limit_mib = 8
    ordinary = golden_events()
    # Many small values: parsed whole, such a line takes several times its size in Python objects.
    huge = {"seq": 0, "ts": "2025-12-12T12:16:58", "event": "gameStateUpdate",
            "data": {"gameHistory": [{"prices": [1.5] * 1000}] * (5 * limit_mib * MIB // 6000)}}
    objs = ordinary[:5] + [huge] + ordinary[5:]
    small, lines, array = tmp_path / "small.jsonl", tmp_path / "big.jsonl", tmp_path / "big.json"
    small.write_text("".join(json.dumps(o) + "\n" for o in ordinary[:10]))
    with open(lines, "w") as fh:
        fh.writelines(json.dumps(o) + "\n" for o in objs)
    with open(array, "w") as fh:
        fh.write("[" + ",\n".join(json.dumps(o) for o in objs) + "]")
    assert len(json.dumps(huge)) > 4 * limit_mib * MIB and lines.stat().st_size > 5 * limit_mib * MIB

    env = {**os.environ, "RUGS_DATA_DIR": str(tmp_path / "data")}
    baseline = _peak_rss_mib(["import", small], env)
    for path in (lines, array):
        grown = _peak_rss_mib(["import", path, "--max-frame-mb", limit_mib], env) - baseline
        assert grown < 2 * limit_mib, f"{path.name}: peak RSS {grown:.0f} MiB over the baseline, limit {limit_mib} MiB"
    assert MAX_FRAME_BYTES == 16 * MIB  # the recorder's default, which import's --max-frame-mb mirrors
