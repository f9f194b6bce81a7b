"""kill -9 of the real recorder at random moments, under load: nothing acknowledged is lost.

After each kill a new recorder starts on the same data dir, recovers the killed
session and records the downtime. The audit then compares the simulator's
sent-log with the spool and the landed ws_event: every frame sent is kept, or lost
in flight when its recorder died (explained by that crash), and every feed frame
broadcast while no recorder was connected falls inside a recorded outage.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from .capture_harness import Recorder, Sim, assert_clean_audit, land_and_derive, outages, records, wait_until

SEED = int(os.environ.get("RUGS_TEST_SEED") or time.time_ns() % 10**6)


def crash_run(tmp_path: Path, sim_args: tuple[str, ...], kills: int, alive: tuple[float, float],
              recorder_args: tuple[str, ...] = ()) -> tuple[dict, list[dict], dict]:
    """Record with ``kills`` kill -9s at random moments, then a clean stop; returns (audit, acks read at each kill, derived)."""
    rng = random.Random(SEED)
    sim = Sim(tmp_path, *sim_args)
    data = tmp_path / "data"
    acks = []
    try:
        for k in range(kills):
            recorder = Recorder(sim.url, data, *recorder_args)
            if k == 1:  # once while starting up: recovery and connect are moments too
                time.sleep(rng.uniform(0.0, 1.0))
            else:
                recorder.wait_acked(frames=1)
                time.sleep(rng.uniform(*alive))
            acks.append(recorder.ack())  # what it had acknowledged when killed (or a moment before)
            recorder.kill9()
        recorder = Recorder(sim.url, data, *recorder_args)
        recorder.wait_acked(frames=10)
        assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    report = assert_clean_audit(sim.sent_log, data)
    kept = records(data)
    for ack in acks:
        if ack:
            seqs = [r.seq for r in kept.get(ack["session_id"], [])]
            assert seqs[: ack["acked_seq"]] == list(range(1, ack["acked_seq"] + 1)), f"seed {SEED}: lost acknowledged records"
    assert not [p for p in (data / "spool").rglob("*") if p.is_file() and p.suffix != ".seg"], "temp or lock files left"
    derived = land_and_derive(data)
    crashes = [o for o in outages(derived) if o["message"].startswith("recorder down")]
    # one outage per kill of a recorder that had received data (a kill before that joins the outage it was in)
    killed_with_data = [s for s, recs in kept.items() if not any(r.kind == "lifecycle" and '"stopped"' in r.data
                                                                  for r in recs)
                        and any(r.kind == "frame" and r.data.startswith("42") for r in recs)]
    assert len(crashes) == len(killed_with_data), (SEED, crashes, acks)
    assert all(o["start_ts"] < o["end_ts"] for o in crashes)
    return report, acks, derived


def test_kill9_at_the_live_cadence_loses_nothing_acknowledged(tmp_path: Path) -> None:
    # speed 1: one frame per 250 ms tick in a game, 10 a second in cooldown
    report, acks, derived = crash_run(tmp_path, ("--speed", "1", "--seed", "3"), kills=3, alive=(0.3, 1.5))
    assert report["lost_unexplained"] == 0 and report["acked_missing"] == 0
    assert derived["ws_event"].num_rows > 20


def test_kill9_at_1000_frames_per_second_loses_nothing_acknowledged(tmp_path: Path) -> None:
    report, acks, _ = crash_run(tmp_path, ("--speed", "5", "--rate", "1000"), kills=3, alive=(0.3, 2.0))
    assert report["frames_captured"] > 2000, report


@pytest.mark.slow
def test_kill9_at_10000_frames_per_second_loses_nothing_acknowledged(tmp_path: Path) -> None:
    report, acks, _ = crash_run(tmp_path, ("--speed", "5", "--rate", "10000"), kills=8, alive=(0.2, 4.0))
    assert report["frames_captured"] > 20000, report
