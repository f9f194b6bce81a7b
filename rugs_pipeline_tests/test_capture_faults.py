"""Each simulator fault against the real recorder process.

For every fault: the recorder recovers by itself, the audit explains every frame
(lost only where the data shows why), the data holds exactly one outage row per
outage, and the derived datasets hold nothing twice. Faults combine, so one run
exercises several; each assertion names the fault it is about.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import dagster as dg

from rugs_pipeline.defs.assets import ws_event
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.store.landing import OVERSIZED

from .capture_harness import (
    Recorder, Sim, assert_clean_audit, land_and_derive, lifecycle, outages, records, wait_until,
)


def sent_events(sim: Sim) -> Counter:
    """Connection events in the sent-log, and "ping" for each ping sent."""
    lines = [json.loads(line) for line in sim.sent_log.read_text().split("\n")[:-1]]  # the last may be half-written
    return Counter("ping" if x.get("data") == "2" else x.get("event") for x in lines)


def assert_nothing_twice(derived: dict) -> None:
    ticks = [(r["game_id"], r["tick"]) for r in derived["game_tick"].to_pylist()]
    assert len(ticks) == len(set(ticks)) and ticks, "a tick twice in game_tick"
    actions = [(r["trade_id"], r["action_type"]) for r in derived["player_action"].to_pylist() if r["trade_id"]]
    assert len(actions) == len(set(actions)), "a trade twice in player_action"


def run(tmp_path: Path, sim_args: tuple[str, ...], recorder_args: tuple[str, ...], until, what: str):
    """Simulator + recorder until ``until(sim)`` holds; returns (sim, data, lifecycle, derived)."""
    sim = Sim(tmp_path, "--speed", "10", *sim_args)
    data = tmp_path / "data"
    try:
        recorder = Recorder(sim.url, data, *recorder_args)
        wait_until(lambda: until(sim), 90, what)
        recorder.wait_acked(frames=1)
        assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    assert_clean_audit(sim.sent_log, data)
    derived = land_and_derive(data)
    assert_nothing_twice(derived)
    return sim, data, lifecycle(data), derived


def connects(life: list[dict]) -> list[float]:
    return [r["_ts"] / 1e9 for r in life if r["event"] == "connecting"]


def test_server_closes_rejects_with_retry_after_and_flaps(tmp_path: Path) -> None:
    # an episode: one 429 with Retry-After 1, two accept-then-close, then 1.5 s of feed and a close
    sim, data, life, derived = run(
        tmp_path, ("--reject", "429", "--reject-count", "1", "--retry-after", "1", "--flap", "2", "--close-every", "1.5"),
        ("--backoff-max", "1", "--min-connect-interval", "0.5"),
        lambda s: sent_events(s)["closed"] >= 2, "two server closes")
    events = sent_events(sim)
    failed = [r for r in life if r["event"] == "connect_failed"]
    assert failed and all(r["status"] == 429 and r["retry_after_s"] == 1 for r in failed)
    starts = connects(life)
    # Retry-After honoured: the attempt after a 429 waits at least 1 s (backoff alone would be <= 1 s)
    for r in failed:
        after = [t for t in starts if t > r["_ts"] / 1e9]
        if after:
            assert after[0] - r["_ts"] / 1e9 >= 0.99, "Retry-After not honoured"
    # flapping does not spin: connects at least --min-connect-interval apart
    assert min(b - a for a, b in zip(starts, starts[1:])) >= 0.49
    flapped = [r for r in life if r["event"] == "disconnected" and r["frames"] == 0]
    assert len(flapped) >= 2 and events["flapped"] >= 2
    # one outage per episode: the startup's refusals, then each close with the 429 and flaps after it
    rows = outages(derived)
    closes = [r for r in life if r["event"] == "disconnected" and r["cause"] == "server_closed" and r["frames"]]
    assert len(rows) == 1 + len(closes)  # the last one ends when the recorder stops
    assert rows[0]["message"].startswith("cannot connect: HTTP 429") and "Retry-After 1 s" in rows[0]["message"]
    assert all(r["message"].startswith("connection lost: going away") for r in rows[1:])
    # each lasts from the last data before it to the first data after it: at least the 429's 1 s
    assert all(r["duration_s"] >= 1 for r in rows if "recorder stopped" not in r["message"])


def test_silent_socket_trips_the_watchdog_and_503_backs_off(tmp_path: Path) -> None:
    # the server stops sending (no data, no pings) after 1 s; every episode starts with a 503 without Retry-After
    sim, data, life, derived = run(
        tmp_path, ("--silent-after", "1", "--no-pings", "--reject", "503", "--reject-count", "1"),
        ("--stale-after", "1", "--stale-idle-after", "1"),
        lambda s: sent_events(s)["ended"] >= 2, "the recorder to give up on two silent sockets")
    failed = [r for r in life if r["event"] == "connect_failed"]
    assert failed and all(r["status"] == 503 and r["retry_after_s"] is None for r in failed)
    stale = [r for r in life if r["event"] == "disconnected" and r["cause"] == "stale"]
    assert len(stale) >= 2 and all(r["reason"].startswith("no data for 1 s") for r in stale)
    rows = outages(derived)
    assert rows[0]["message"].startswith("cannot connect: HTTP 503")
    watchdog = [r for r in rows if r["message"].startswith("connection lost: no data for 1 s")]
    assert len(watchdog) == len([r for r in stale if r["_ts"] < rows[-1]["end_ts"].timestamp() * 1e9])
    # each outage runs from the last data (the watchdog fires 1 s later) to the first data after it
    assert all(r["duration_s"] >= 1 for r in watchdog if "recorder stopped" not in r["message"])


def test_malformed_oversized_bursts_and_late_pings_lose_nothing(tmp_path: Path, monkeypatch) -> None:
    sim, data, life, derived = run(
        tmp_path,
        # pings every 2 s where OPEN says 0.5 + 0.5: a strict Engine.IO client would call the server dead
        ("--rate", "100", "--malformed-every", "15", "--oversized-every", "150", "--oversized-bytes", "1100000",
         "--burst-every", "1.5", "--burst-hold", "0.6", "--ping-interval-ms", "500", "--ping-timeout-ms", "500",
         "--ping-delay", "1.5"),
        (), lambda s: sent_events(s)["ping"] >= 3, "three late pings")
    assert not outages(derived), "late pings and bursts are no outage while data flows"
    assert [r["event"] for r in life].count("handshake") == 1
    ws = derived["ws_event"].to_pylist()
    sent = [r for r in ws if r["direction"] == "sent"]
    assert [r["raw_json"] for r in sent].count("3") >= 2, "late pings answered"
    malformed = [r for r in ws if r["frame_kind"] == "malformed"]
    errors = " | ".join(r["parse_error"] for r in malformed)
    for expected in ("not JSON", "binary websocket frame", "unknown Engine.IO packet type",
                     "unknown Socket.IO packet type", "empty frame"):
        assert expected in errors, expected
    wrong_types = [r for r in ws if r["event_name"] == "gameStateUpdate" and '"tickCount":"seven"' in r["raw_json"]]
    assert wrong_types and not any(r["game_id"] == "7" for r in derived["game_tick"].to_pylist())
    oversized = [r for r in ws if (r["parse_error"] or "").startswith(OVERSIZED)]
    assert len(oversized) >= 2 and all(len(r["raw_json"]) > 1_100_000 and r["frame_kind"] == "event" for r in oversized)
    parse_rows = [r for r in derived["system_event"].to_pylist() if r["event_name"] == "parse_error"]
    assert len(parse_rows) == len(malformed)
    # the counts surface in the ws_event asset's metadata
    day = derived["ws_event"]["ts"][0].as_py().strftime("%Y-%m-%d")
    monkeypatch.setenv("RUGS_DATA_DIR", str(data))
    for seg_ledger in (data / "manifests" / "landed").rglob("*.json"):
        seg_ledger.unlink()  # land again, through Dagster this time (same files, same rows)
    result = dg.materialize([ws_event], partition_key=day, instance=dg.DagsterInstance.ephemeral(),
                            resources={"store": StoreResource()})
    meta = result.asset_materializations_for_node("ws_event")[0].metadata
    assert meta["malformed_landed"].value == len(malformed) and meta["oversized_landed"].value == len(oversized)
    assert meta["rows"].value == len(ws), "re-landing added no rows"
    # bursts: frames held back 0.6 s, then delivered at once, none lost (the audit above) nor reordered
    ts = [r["ts"] for r in ws if r["direction"] == "received"]
    assert max((b - a).total_seconds() for a, b in zip(ts, ts[1:])) >= 0.5


def test_frame_over_the_limit_is_refused_counted_and_capture_goes_on(tmp_path: Path) -> None:
    sim, data, life, derived = run(
        tmp_path, ("--rate", "100", "--oversized-every", "200", "--oversized-bytes", "1500000"), ("--max-frame-mb", "1"),
        lambda s: sent_events(s)["ended"] >= 2, "two refused frames")
    refused = [r for r in life if r["event"] == "disconnected" and r["cause"] == "frame_too_big"]
    assert len(refused) >= 2 and all(r["code"] == 1009 and "1048576 bytes" in r["reason"] for r in refused)
    rows = outages(derived)
    assert rows and all("1048576 bytes was refused" in r["message"] for r in rows)
    assert sum(1 for s in records(data).values() for r in s if r.kind == "frame" and len(r.data) > 1_048_576) == 0
