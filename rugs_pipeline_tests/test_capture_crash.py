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

from rugs_pipeline.formats import spool

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


def _kept(spool_dir: Path, session: str) -> list[spool.SpoolRecord]:
    """What a running session has handed to the kernel so far (what a kill -9 would leave)."""
    out = []
    for path in spool.segments_by_session(spool_dir).get(session, []):
        try:
            out.extend(spool.read_segment(path)[1])
        except (OSError, ValueError):
            pass  # sealed meanwhile, or no header yet
    return out


def _crash_in_the_next_start(tmp_path: Path, kill_when) -> tuple[dict, dict[str, list[spool.SpoolRecord]], str, str]:
    """A records and is killed; B is killed once ``kill_when(a_session, b_session)``; C records and stops."""
    sim = Sim(tmp_path, "--speed", "1", "--seed", "3")
    data = tmp_path / "data"
    try:
        a = Recorder(sim.url, data)
        a.wait_acked(frames=1)
        wait_until(lambda: any(r.kind == "frame" and str(r.data).startswith("42") for r in _kept(a.spool, a.ack()["session_id"])),
                   60, "A's first event on disk")
        a_session = a.ack()["session_id"]
        a.kill9()
        b = Recorder(sim.url, data)
        b_session = wait_until(lambda: next((p.name.removesuffix(spool.LOCK_SUFFIX) for p in b.spool.glob("*.lock")
                                             if not p.name.startswith(a_session)), None), 60, "B's lock")
        wait_until(lambda: kill_when(a_session, b_session), 60, "B's moment")
        b.kill9()
        c = Recorder(sim.url, data)
        c.wait_acked(frames=10)
        assert c.stop() == 0, c.stderr
    finally:
        sim.stop()
    return assert_clean_audit(sim.sent_log, data), records(data), a_session, b_session


def test_a_kill_right_after_recovering_a_crash_does_not_forget_it(tmp_path: Path) -> None:
    # The crashed session's lock is what tells the next start it crashed: B may remove it only
    # once its own record of the crash is durable, or a kill in between forgets the outage.
    spool_dir = tmp_path / "data" / "spool"
    report, kept, a_session, b_session = _crash_in_the_next_start(
        tmp_path, lambda a, b: not spool.lock_path(spool_dir, a).exists())
    a_last = max(r.ts_ns for r in kept[a_session] if r.kind == "frame" and str(r.data).startswith("42"))
    starts = [o["start_ns"] for o in report["outages"]]
    assert starts and min(starts) == a_last, (report["outages"], a_last)


def test_a_frame_that_ends_an_outage_survives_a_kill_only_with_its_outage(tmp_path: Path) -> None:
    # B is killed as soon as its first event (the one that ends the outage A's crash began) has
    # reached the file: the outage record must have reached it with it.
    spool_dir = tmp_path / "data" / "spool"
    report, kept, a_session, b_session = _crash_in_the_next_start(
        tmp_path, lambda a, b: any(r.kind == "frame" and str(r.data).startswith("42") for r in _kept(spool_dir, b)))
    b_kept = kept[b_session]
    assert any(r.kind == "frame" and str(r.data).startswith("42") for r in b_kept)
    assert any(r.kind == "lifecycle" and '"outage"' in r.data for r in b_kept), [r.data[:80] for r in b_kept]
