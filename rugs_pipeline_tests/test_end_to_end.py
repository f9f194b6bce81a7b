"""The whole pipeline with real processes: simulator -> recorder -> sensor -> assets -> checks -> DuckDB.

The two consumer queries run verbatim, with HOME pointed at the test's folder so
that their ``~/rugs_data`` is this store.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from rugs_pipeline.formats import spool
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.defs.sensors import spool_sensor
from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import (
    CLI, SEED_QUERY_TICKS, SEED_QUERY_WS, land_and_derive_days, run_seed_query, start_recorder, stop, wait_until,
)

from .capture_harness import SLOW_START_S, Recorder


def start_simulator(*args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([CLI, "simulate", "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    match = re.search(r"(ws://\S+)", line)
    assert match, f"simulator did not report its address: {line!r}"
    return proc, match.group(1)


@pytest.fixture()
def simulator():
    proc, url = start_simulator("--speed", "25", "--seed", "11")
    yield url
    stop(proc)


def test_simulator_to_duckdb_through_dagster(simulator: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "rugs_data"
    monkeypatch.setenv("RUGS_DATA_DIR", str(data))
    env = {**os.environ, "RUGS_DATA_DIR": str(data)}
    started = datetime.now(timezone.utc)

    recorder = start_recorder(simulator, env)
    time.sleep(6)
    # a crash: nothing sealed in the open segment may be lost, and the downtime is recorded
    recorder.send_signal(signal.SIGKILL)
    recorder.wait(timeout=10)
    recorder = start_recorder(simulator, env)
    time.sleep(8)
    assert stop(recorder) == 0, recorder.stderr.read()
    finished = datetime.now(timezone.utc)

    store = Store(data)
    assert not list(store.spool_dir.rglob("*.part")), "every open segment is sealed on shutdown or recovery"
    requests = spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()}))
    days = sorted({r.partition_key for r in requests})
    assert days and all(r.run_key for r in requests)

    land_and_derive_days(days)
    assert isinstance(spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()})), dg.SkipReason)

    ws = {d: store.read_partition("ws_event", d) for d in days}
    rows = [r for d in days for r in ws[d].to_pylist()]
    by_session = defaultdict(list)
    for r in rows:
        by_session[r["session_id"]].append(r["seq"])
    assert len(by_session) == 2, "one session per recorder run"
    for seqs in by_session.values():
        # the killed run loses at most its unsynced tail; what it kept is gap-free from 1
        assert sorted(seqs) == list(range(1, len(seqs) + 1))
    assert all(started <= r["ts"] <= finished for r in rows), "receive times are UTC wall-clock times"
    kinds = {r["frame_kind"] for r in rows}
    assert {"open", "connect", "event", "lifecycle"} <= kinds
    sent = {r["raw_json"] for r in rows if r["direction"] == "sent"}
    assert "40" in sent

    system = [r for d in days for r in store.read_partition("system_event", d).to_pylist()]
    names = {r["event_name"] for r in system}
    assert {"started", "connecting", "connected", "handshake", "recovered", "outage", "stopped"} <= names
    outage = next(r for r in system if r["event_name"] == "outage" and "recorder down" in (r["message"] or ""))
    assert outage["start_ts"] < outage["end_ts"] and outage["duration_s"] > 0

    ticks = [r for d in days for r in store.read_partition("game_tick", d).to_pylist()]
    games = defaultdict(dict)
    for r in ticks:
        games[r["game_id"]][r["tick"]] = r
    # games seen from tick 0 to the rug by one recorder run (the kill leaves a real gap in one game)
    whole = {g: t for g, t in games.items() if 0 in t and any(x["is_rug_tick"] for x in t.values())
             and len({x["session_id"] for x in t.values()}) == 1}
    assert len(whole) >= 2, f"expected complete games, got {len(whole)} of {len(games)}"
    for game, t in whole.items():
        rug = max(t)
        assert t[rug]["is_rug_tick"] and sum(x["is_rug_tick"] for x in t.values()) == 1
        assert sorted(t) == list(range(rug + 1)), f"{game}: ticks not 0..R"

    ws_rows = run_seed_query(SEED_QUERY_WS, tmp_path)
    assert len(ws_rows) == 100
    tick_rows = run_seed_query(SEED_QUERY_TICKS, tmp_path)
    assert len(tick_rows) == len(ticks)
    assert {(g, t) for g, t, _, _ in tick_rows} == {(r["game_id"], r["tick"]) for r in ticks}

    # the CLI sees the same store, with one view per doc_type
    out = subprocess.run([CLI, "query", "SELECT count(*) AS n FROM game_tick"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and str(len(ticks)) in out.stdout
    manifest = json.loads((data / "manifests" / "schema_version.json").read_text())
    assert manifest["version"] == schema.SCHEMA_VERSION


def test_recorder_reports_fatal_config_in_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("")
    env = {**os.environ, "RUGS_DATA_DIR": str(blocker)}
    out = subprocess.run([CLI, "record", "--url", "ws://127.0.0.1:9/socket.io/"], env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "not writable" in errors[0] and str(blocker) in errors[0], out.stderr
    env["RUGS_DATA_DIR"] = str(tmp_path / "data")
    out = subprocess.run([CLI, "record", "--url", "http//nonsense"], env=env, capture_output=True, text=True, timeout=30)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 1 and len(errors) == 1 and "bad feed URL" in errors[0], out.stderr
    assert "Traceback" not in out.stderr


def test_recorder_reconnects_after_the_server_goes_away(tmp_path: Path) -> None:
    data = tmp_path / "rugs_data"
    sim, url = start_simulator("--speed", "25")
    recorder = Recorder(url, data, "--fsync-interval", "0.2")
    recorder.wait_acked(frames=1)
    stop(sim)
    wait_until(lambda: "disconnected" in recorder.stderr, SLOW_START_S, "the recorder to see the server go")
    port = url.split(":")[2].split("/")[0]
    sim2 = subprocess.Popen([CLI, "simulate", "--port", port, "--speed", "25"], stdout=subprocess.PIPE, text=True)
    sim2.stdout.readline()
    # said at the first event frame after the outage: reconnected (handshake first) and receiving again
    wait_until(lambda: "outage over after" in recorder.stderr, SLOW_START_S, "the recorder to reconnect")
    assert recorder.stop() == 0
    stop(sim2)
    records = [r for seg in spool.sealed_segments(data / "spool") for r in spool.iter_segment_records(seg)]
    life = [json.loads(r.data)["event"] for r in records if r.kind == spool.KIND_LIFECYCLE]
    assert life.count("handshake") >= 2, life
    assert "disconnected" in life and "reconnecting" in life
    assert life[-1] == "stopped"
