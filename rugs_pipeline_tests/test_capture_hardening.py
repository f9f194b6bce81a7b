"""Hardening of the recorder: whatever the server sends, whatever the disk does, whatever the URL holds.

Each test drives the real ``rugs-pipeline record`` process: against a real websockets server
that plays scripted connections (``ScriptedServer``), against the simulator, or on a small
tmpfs filled up by the test.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import duckdb
from websockets.frames import Opcode

from rugs_pipeline.formats import spool
from rugs_pipeline.capture.feed_url import parse_feed_url
from rugs_pipeline.config import DEFAULT_FEED_URL
from rugs_pipeline.formats.protocol import encode_connect, encode_event, encode_open
from rugs_pipeline.store.landing import NOT_UTF8_STORED
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import fill

from .capture_harness import (
    CLI, Recorder, Script, ScriptedServer, Sim, assert_clean_audit, audit, close_frame, land_and_derive, lifecycle,
    outages, records, text, wait_until,
)

FAST_RETRY = ("--min-connect-interval", "0.05", "--backoff-max", "0.2")
GOOD_OPEN = encode_open("good")
BAD_OPENS = [
    '0{"sid":"a","pingInterval":"abc","pingTimeout":20000}',
    '0{"sid":"b","pingInterval":null,"pingTimeout":20000}',
    '0{"sid":"c","pingInterval":25000,"pingTimeout":-5}',
    '0{"sid":"d","pingInterval":0}',
    '0{"sid":17,"pingInterval":25000,"pingTimeout":20000}',
    "0garbage",
]


def received(data: Path) -> list[spool.SpoolRecord]:
    return [r for recs in records(data).values() for r in recs if r.kind == spool.KIND_FRAME and r.direction == "received"]


def test_unusable_handshakes_are_kept_recorded_and_retried(tmp_path: Path) -> None:
    server = ScriptedServer()
    try:
        recorder = Recorder(server.url, tmp_path / "data", *FAST_RETRY)
        for bad in BAD_OPENS:
            wait_until(lambda: server.waiting or recorder.proc.poll() is not None, 60, "the recorder to connect")
            assert recorder.proc.poll() is None, recorder.stderr
            finished = server.finished
            server.play(Script([text(bad)]))  # and wait: the recorder must end it
            wait_until(lambda: server.finished > finished, 60, "the recorder to close the connection")
        server.play(Script([text(GOOD_OPEN), text(encode_connect("ns")), text(encode_event("hello", {"n": 1}))]))
        recorder.wait_acked(frames=len(BAD_OPENS) + 3)
        assert recorder.stop() == 0, recorder.stderr
    finally:
        server.stop()
    assert "Traceback" not in recorder.stderr
    kept = [r.data for r in received(tmp_path / "data")]
    assert kept[: len(BAD_OPENS)] == BAD_OPENS, "each unusable OPEN kept raw, in order"
    life = lifecycle(tmp_path / "data")
    ends = [r for r in life if r["event"] == "disconnected"]
    assert [r["cause"] for r in ends] == ["bad_handshake"] * len(BAD_OPENS) + ["stopping"]
    assert all(r["code"] == 1002 and r["reason"].startswith("unusable handshake: OPEN packet") for r in ends[:-1])
    assert "invalid pingInterval \"abc\"" in ends[0]["reason"] and "invalid pingInterval null" in ends[1]["reason"]
    assert "invalid pingTimeout -5" in ends[2]["reason"] and "not JSON" in ends[5]["reason"]
    assert len([r for r in life if r["event"] == "reconnecting"]) >= len(BAD_OPENS)
    assert [r["sid"] for r in life if r["event"] == "handshake"] == ["good"]
    # one outage, from the start to the first data, naming the true cause
    outages = [r for r in life if r["event"] == "outage"]
    assert len(outages) == 1 and outages[0]["cause"].startswith("connection lost: unusable handshake: OPEN packet")


def test_a_text_frame_that_is_not_utf8_is_kept_and_the_connection_stays(tmp_path: Path) -> None:
    bad = b'42["gameStateUpdate",{"gameId":"\xff\xfe"}]'
    after = encode_event("hello", {"n": 2})
    server = ScriptedServer()
    try:
        recorder = Recorder(server.url, tmp_path / "data")
        server.play(Script([text(GOOD_OPEN), text(encode_connect("ns")), text(encode_event("hello", {"n": 1})),
                            text(bad), (Opcode.BINARY, b"\x00\x01"), text(after)], close_frame(1000, b"done")))
        server.play(Script(response=(503, [("Retry-After", "600")], b"")))  # then it waits while we stop it
        wait_until(lambda: server.finished == 2, 60, "both scripts to play")
        assert recorder.stop() == 0, recorder.stderr
    finally:
        server.stop()
    data = tmp_path / "data"
    frames = received(data)
    assert [r.data for r in frames][3:] == [bad, b"\x00\x01", after], "the frame's bytes kept, and what came after"
    assert [r.not_utf8 for r in frames][3:] == [True, False, False], "flagged apart from a binary frame"
    ends = [(r["cause"], r["code"], r["reason"]) for r in lifecycle(data) if r["event"] == "disconnected"]
    assert ends == [("server_closed", 1000, "done")], "no drop (1007): the server's own close"
    rows = [r for r in land_and_derive(data)["ws_event"].to_pylist() if r["direction"] == "received"]
    assert rows[3]["parse_error"] == NOT_UTF8_STORED and base64.b64decode(rows[3]["raw_json"]) == bad
    assert rows[4]["parse_error"].startswith("binary websocket frame") and rows[5]["event_name"] == "hello"


USER, PASSWORD, TOKEN, API_KEY = "alice-the-user", "hunter2-PASSWORD", "SECRET-token-value", "k3y-SECRET-value"


def private(path: Path) -> bool:
    return path.stat().st_mode & 0o777 == 0o600


def test_credentials_in_the_feed_url_are_used_to_connect_and_never_written_or_printed(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10", "--close-every", "2")
    url = sim.url.replace("ws://", f"ws://{USER}:{PASSWORD}@") + f"&token={TOKEN}&api_key={API_KEY}"
    data = tmp_path / "data"
    try:
        recorder = Recorder(url, data)
        wait_until(lambda: [r for r in lifecycle(data) if r["event"] == "outage"], 90, "a server close and a reconnect")
        recorder.wait_acked(frames=recorder.ack()["frames_received"] + 1)
        live = [*data.glob("spool/*.ack"), *data.glob("spool/*.lock"), *data.glob("spool/*/*.part"),
                *data.glob("legacy_jsonl/*")]
        assert {".ack", ".lock", ".jsonl"} <= {p.suffix for p in live}
        assert [oct(p.stat().st_mode & 0o777) for p in live] == ["0o600"] * len(live), live
        assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    store = Store(data)
    derived = land_and_derive(data)
    day = derived["ws_event"]["ts"][0].as_py().strftime("%Y-%m-%d")
    store.replace_partition("system_event", day, derived["system_event"])
    shown = sim.url.replace("ws://", "ws://***@") + "&token=***&api_key=***"
    assert any(shown in (r["message"] or "") for r in derived["system_event"].to_pylist()), "the URL, masked"
    assert all(map(private, data.glob("spool/*/*.seg")))
    # every file of the data dir, Parquet decoded, and what the recorder printed
    texts = {"stderr": recorder.stderr}
    for path in data.rglob("*"):
        if path.suffix == ".parquet":
            texts[str(path)] = str(duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall())
        elif path.is_file():
            texts[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert sum(p.endswith(".parquet") for p in texts) >= 2
    for secret in (USER, PASSWORD, TOKEN, API_KEY):
        assert not [name for name, content in texts.items() if secret in content], secret
    assert f"recording {shown} into" in recorder.stderr


def test_record_reports_connection_state_and_a_summary(tmp_path: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10", "--close-every", "2", "--reject", "503", "--reject-count", "1")
    data = tmp_path / "data"
    try:
        recorder = Recorder(sim.url, data, *FAST_RETRY)
        wait_until(lambda: len([r for r in lifecycle(data) if r["event"] == "outage"]) >= 2, 90, "two outages to end")
        assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    lines = recorder.stderr.splitlines()
    assert lines[0] == f"recording {sim.url} into {data / 'spool'}"
    assert lines[1] == "connect failed: HTTP 503 Service Unavailable"
    assert re.fullmatch(r"retry in \d+\.\d s \(attempt 2\)", lines[2]), lines[2]
    assert lines[3] == f"connected to {sim.url}"
    assert re.fullmatch(r"outage over after \d+\.\d s: cannot connect: HTTP 503 Service Unavailable", lines[4]), lines
    assert "disconnected (server_closed): going away" in lines
    assert any(re.fullmatch(r"outage over after \d+\.\d s: connection lost: going away", x) for x in lines), lines
    assert "disconnected (stopping): recorder stopping" in lines
    summary = re.fullmatch(r"stopped: (\d+) frames \((\d+\.\d) MiB\) received, (\d+) outages, (\d+) segments sealed",
                           lines[-1])
    assert summary, lines[-1]
    kept = received(data)
    life = lifecycle(data)
    assert int(summary[1]) == len(kept)
    size = sum(len(r.data.encode() if isinstance(r.data, str) else r.data) for r in kept)
    assert summary[2] == f"{size / 2**20:.1f}"
    assert int(summary[3]) == len([r for r in life if r["event"] == "outage"]) >= 2
    assert int(summary[4]) == len(list(data.glob("spool/*/*.seg")))


def test_record_checks_the_url_before_it_creates_anything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for url, why in [("http://nonsense", "scheme isn't ws or wss"),
                     (f"ws://{USER}:{PASSWORD}@/?token={TOKEN}", "hostname isn't provided")]:
        out = subprocess.run([CLI, "record", "--url", url], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "RUGS_DATA_DIR": str(data)})
        assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
        assert out.stderr.startswith("error: bad feed URL ") and why in out.stderr, out.stderr
        assert PASSWORD not in out.stderr and TOKEN not in out.stderr and USER not in out.stderr
        assert not data.exists(), "nothing created: no spool session, no legacy file"


def full_disk_error(recorder: Recorder, count: int) -> None:
    wait_until(lambda: recorder.stderr.count("capture paused") >= count, 60, f"disk-full message {count}")


def test_disk_full_again_and_still_full_at_stop_is_recorded_by_the_next_start(tmp_path: Path, small_disk: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10", "--rate", "200")
    data = small_disk / "data"
    (small_disk / "top").mkdir()
    try:
        recorder = Recorder(sim.url, data, "--resume-free-mb", "1")
        recorder.wait_acked(frames=100)
        filler = fill(small_disk)
        full_disk_error(recorder, 1)
        filler.unlink()
        wait_until(lambda: "capture resumed" in recorder.stderr, 60, "capture to resume")
        recorder.wait_acked(frames=recorder.ack()["frames_received"] + 100)
        filler = fill(small_disk)  # a second time, and it stays full until the recorder has stopped
        full_disk_error(recorder, 2)
        top = fill(small_disk / "top")  # what the recorder freed cutting back to its last fsync
        assert recorder.stop() == 1, recorder.stderr
        assert recorder.stderr.splitlines()[-2].startswith("stopped: ")
        error = recorder.stderr.splitlines()[-1]
        assert error.startswith("error: could not record the end of session ") and "No space left on device" in error
        assert error.endswith("what was acknowledged is kept; the next start of the recorder records the outage")
        filler.unlink()
        top.unlink()
        # what it received after its last record is lost, not pending: the session is gone
        rc, report = audit(sim.sent_log, data)
        assert rc == 1 and report["lost_pending"] == 0 and report["lost_unrecorded"] > 0, report
        assert any("ended without recording its end" in p for p in report["problems"]), report
        first = next(iter(records(data)))
        again = Recorder(sim.url, data)
        again.wait_acked(frames=50)
        assert again.stop() == 0, again.stderr
    finally:
        sim.stop()
    assert_clean_audit(sim.sent_log, data)
    rows = outages(land_and_derive(data))
    messages = [r["message"] for r in rows]
    assert messages == ["connection lost: cannot write the spool: No space left on device",
                        f"recorder down: session {first} stopped without sealing"], messages


def test_storage_back_by_the_stop_gets_its_outage_and_a_stopped_record(tmp_path: Path, small_disk: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10", "--rate", "200")
    data = small_disk / "data"
    try:
        recorder = Recorder(sim.url, data, "--resume-free-mb", "1000")  # more than the disk: it never resumes itself
        recorder.wait_acked(frames=100)
        filler = fill(small_disk)
        full_disk_error(recorder, 1)
        filler.unlink()
        assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    assert_clean_audit(sim.sent_log, data)
    events = [r["event"] for r in lifecycle(data)]
    assert events[-3:] == ["storage_failed", "outage", "stopped"], events
    rows = outages(land_and_derive(data))
    assert [r["message"] for r in rows] == [
        "connection lost: cannot write the spool: No space left on device (recorder stopped)"]
    assert rows[0]["duration_s"] > 0


def test_a_crash_while_the_disk_is_full_is_one_outage_recorded_by_the_next_start(tmp_path: Path,
                                                                                 small_disk: Path) -> None:
    sim = Sim(tmp_path, "--speed", "10", "--rate", "200")
    data = small_disk / "data"
    try:
        recorder = Recorder(sim.url, data, "--resume-free-mb", "1")
        recorder.wait_acked(frames=100)
        filler = fill(small_disk)
        full_disk_error(recorder, 1)
        recorder.kill9()
        filler.unlink()
        first = next(iter(records(data)))
        again = Recorder(sim.url, data)
        again.wait_acked(frames=50)
        assert again.stop() == 0, again.stderr
    finally:
        sim.stop()
    assert_clean_audit(sim.sent_log, data)
    rows = outages(land_and_derive(data))
    assert [r["message"] for r in rows] == [f"recorder down: session {first} stopped without sealing"]


def test_the_feed_url_shows_no_userinfo_and_no_secret_looking_query_value() -> None:
    feed = parse_feed_url("wss://bob:pa%24%24word@h.example:443/socket.io/?EIO=4&transport=websocket"
                          "&access_token=abcd1234&apiKey=K3Y-K3Y&X-Signature=s1gnature&sessionid=&frontend-version=1.0")
    assert feed.shown == ("wss://***@h.example:443/socket.io/?EIO=4&transport=websocket"
                          "&access_token=***&apiKey=***&X-Signature=***&sessionid=&frontend-version=1.0")
    assert feed.scrub("HTTP 401 for pa$$word, abcd1234 and K3Y-K3Y (bob:pa%24%24word)") == \
        "HTTP 401 for ***, *** and *** (***)"
    assert parse_feed_url(DEFAULT_FEED_URL).shown == DEFAULT_FEED_URL
