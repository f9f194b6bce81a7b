"""The recorder process: two recorders at once, a full disk, the legacy JSONL capture, one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.formats.protocol import parse_frame
from rugs_pipeline.formats.recordings import read_recording
from rugs_pipeline.testing import fill

from .capture_harness import (
    CLI, Recorder, Sim, assert_clean_audit, land_and_derive, lifecycle, outages, records, wait_until,
)

# Which recorder kept a frame, and when its copy arrived (games' start and end are receive times too).
ENVELOPE = ("ts", "session_id", "seq", "start_ts", "end_ts", "duration_s")


def content(table) -> list[tuple]:
    """The rows, without their envelope; sums of floats to 9 places (their order of addition varies)."""
    names = [n for n in table.column_names if n not in ENVELOPE]
    return sorted(tuple(str(round(v, 9) if isinstance(v, float) else v) for v in map(r.get, names))
                  for r in table.to_pylist())


def test_two_recorders_on_one_feed_stay_apart_and_derive_each_game_once(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10", "--seed", "5")
    data = tmp_path / "data"
    try:
        first = Recorder(sim.url, data)  # both in one data dir: neither may recover the other's open segment
        first.wait_acked(frames=20)
        second = Recorder(sim.url, data)
        second.wait_acked(frames=400)  # a game or so, while the first keeps recording
        assert second.stop() == 0, second.stderr
        first.wait_acked(frames=first.ack()["frames_received"] + 50)
        assert first.stop() == 0, first.stderr
    finally:
        sim.stop()
    assert_clean_audit(sim.sent_log, data)
    sessions = records(data)
    assert len(sessions) == 2
    assert not any(r["event"] == "recovered" for r in lifecycle(data)), "a live session was recovered"
    # the first recorder alone, from its own segments
    alone = tmp_path / "alone"
    first_session = min(sessions)
    for seg in (data / "spool").rglob(f"*_{first_session}_*.seg"):
        (alone / "spool" / seg.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(seg, alone / "spool" / seg.parent.name / seg.name)
    both, one = land_and_derive(data), land_and_derive(alone)
    assert set(both["ws_event"]["session_id"].to_pylist()) == set(sessions), "each recorder's rows stay apart"
    assert both["ws_event"].num_rows == sum(len(r) for r in sessions.values())
    assert one["game_tick"].num_rows > 100
    for doc_type in both:
        if doc_type not in ("ws_event", "system_event"):
            assert content(both[doc_type]) == content(one[doc_type]), doc_type


def test_full_disk_pauses_keeps_what_is_acknowledged_and_resumes(tmp_path: Path, small_disk: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10", "--rate", "200")
    data = small_disk / "data"
    try:
        recorder = Recorder(sim.url, data, "--resume-free-mb", "1")
        acked = recorder.wait_acked(frames=100)
        filler = fill(small_disk)
        error = wait_until(lambda: [x for x in recorder.stderr.splitlines() if x.startswith("error:")], 60,
                           "the disk-full message")
        assert len(error) == 1 and "No space left on device" in error[0] and "capture paused" in error[0]
        assert "retrying every 1 s until 1 MiB are free" in error[0]
        assert recorder.proc.poll() is None, "a full disk is not fatal"
        filler.unlink()
        wait_until(lambda: "capture resumed" in recorder.stderr, 60, "capture to resume")
        received = recorder.ack().get("frames_received", 0)
        recorder.wait_acked(frames=received + 100)
        assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    report = assert_clean_audit(sim.sent_log, data)
    # lost: only what was in flight when it stopped reading (about 240 frames a second are sent)
    assert set(report["lost_explained"]) <= {"storage", "stopping"} and report["lost"] < 240, report
    (session, kept), = records(data).items()
    assert [r.seq for r in kept[: acked["acked_seq"]]] == list(range(1, acked["acked_seq"] + 1))
    failed = [r for r in lifecycle(data) if r["event"] == "storage_failed"]
    assert len(failed) == 1 and "No space left on device" in failed[0]["error"]
    assert failed[0]["dropped_records"] >= 0 and failed[0]["until_ns"] > failed[0]["since_ns"]
    rows = outages(land_and_derive(data))
    assert len(rows) == 1 and rows[0]["message"].startswith("connection lost: cannot write the spool: No space left")


def test_legacy_jsonl_capture_is_written_by_default_and_reads_back(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10")
    try:
        on, off = tmp_path / "on", tmp_path / "off"
        recorders = [Recorder(sim.url, on), Recorder(sim.url, off, env={"RUGS_LEGACY_RECORDERS": "false"})]
        for recorder in recorders:
            recorder.wait_acked(frames=100)
        for recorder in recorders:
            assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    assert not (off / "legacy_jsonl").exists()
    (session, recs), = records(on).items()
    legacy = on / "legacy_jsonl" / f"{session}.jsonl"
    lines = [json.loads(line) for line in legacy.read_text().splitlines()]
    assert [x["seq"] for x in lines] == list(range(1, len(lines) + 1))
    assert lines[0]["event"] == "connect" and lines[-1]["event"] == "disconnect"
    # one line per event received, in order, with its receive time and arguments as earlier recorders kept them
    events = [parse_frame(r.data) for r in recs if r.direction == "received" and r.data.startswith("42")]
    assert [x["event"] for x in lines[1:-1]] == [e.event_name for e in events]
    read = [e for e in read_recording(legacy) if e.name not in ("connect", "disconnect")]
    assert [e.args for e in read] == [e.args for e in events]
    # and `import` takes it like any earlier recording
    report, = import_recordings([legacy], tmp_path / "imported" / "spool")
    assert report.format == "seq-jsonl" and not report.bad_lines and report.events == len(lines)


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})})


def one_error_line(out: subprocess.CompletedProcess) -> str:
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 1 and len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    return errors[0]


def test_one_line_errors(tmp_path: Path) -> None:
    env = {"RUGS_DATA_DIR": str(tmp_path / "data"), "RUGS_LEGACY_RECORDERS": "maybe"}
    line = one_error_line(run_cli("record", "--url", "ws://127.0.0.1:9/socket.io/", env=env))
    assert "RUGS_LEGACY_RECORDERS must be true or false, not 'maybe'" in line
    # a setting that cannot work stops every command, before it reads anything (config.Settings)
    line = one_error_line(run_cli("audit", "--sent-log", str(tmp_path / "missing.jsonl"), env=env))
    assert "RUGS_LEGACY_RECORDERS must be true or false, not 'maybe'" in line
    line = one_error_line(run_cli("audit", "--sent-log", str(tmp_path / "missing.jsonl"),
                                  env={"RUGS_DATA_DIR": str(tmp_path / "data")}))
    assert f"cannot read the sent-log {tmp_path / 'missing.jsonl'}" in line
    line = one_error_line(run_cli("simulate", "--port", "0", "--reject", "200", "--close-every", "0"))
    assert "close-every must be positive" in line and "reject status must be an HTTP error status" in line
    line = one_error_line(run_cli("simulate", "--port", "0", "--sent-log", str(tmp_path / "no" / "such" / "dir.jsonl")))
    assert "cannot write the sent-log" in line
