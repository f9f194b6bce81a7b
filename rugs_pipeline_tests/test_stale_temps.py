"""Temp files of writers killed mid-write are removed by the partition's next landing, derivation or compaction;
a live writer's temp file is left alone.

Each writer is a real process, stopped in the middle of writing a Parquet file, then killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


from rugs_pipeline.formats import spool
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.store import compaction, landing, schema
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import start_writer

T0 = 1_765_065_600 * 10**9  # 2025-12-07 00:00 UTC
DAY = "2025-12-07"


def land_one_segment(store: Store, seq: int = 1) -> None:
    frame = encode_event("gameStateUpdate", {"gameId": "20251207-aaaaaaaaaaaaaaaa", "tickCount": seq, "price": 1.0})
    spool.write_sealed_segment(store.spool_dir, spool.SegmentHeader("temp-test", "public_ws"),
                               [spool.SpoolRecord(seq, T0 + seq * 10**9, spool.KIND_FRAME, frame)])


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_landing_removes_a_killed_writers_temp_and_keeps_a_live_ones(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    land_one_segment(store)
    proc, temp = start_writer(store, "ws_event", tmp_path)
    try:
        landing.land_day(store, DAY)
        assert temp.exists(), "a live writer's temp file was removed"
    finally:
        kill(proc)
    assert temp.exists()
    landing.land_day(store, DAY)
    assert not temp.exists()
    assert store.read_partition("ws_event", DAY).num_rows == 1


def test_compaction_removes_a_killed_writers_temp_and_spill(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    land_one_segment(store)
    landing.land_day(store, DAY)
    assert compaction.compact_day(store, DAY).version == 1
    # compaction takes the partition alone, so no live writer can be beside it: only a dead one's temp
    proc, temp = start_writer(store, "ws_event", tmp_path)
    kill(proc)
    spill = store.root / "compaction" / "ws_event" / f".date={DAY}.v2.buckets"  # a compaction killed mid-merge
    spill.mkdir(parents=True)
    assert compaction.compact_day(store, DAY).version is None  # nothing new to merge
    assert not temp.exists()
    land_one_segment(store, 2)
    landing.land_day(store, DAY)
    assert compaction.compact_day(store, DAY).version == 2
    assert not spill.exists()


def test_derived_partition_temp_of_a_killed_writer_is_removed_by_the_next_derivation(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    proc, temp = start_writer(store, "game_tick", tmp_path)
    try:
        store.replace_partition("game_tick", DAY, schema.empty_table())
        assert temp.exists(), "a live writer's temp file was removed"
    finally:
        kill(proc)
    store.replace_partition("game_tick", DAY, schema.empty_table())
    assert not temp.exists()
    assert [p.name for p in store.partition_dir("game_tick", DAY).iterdir()] == \
        [p.name for p in store.partition_files("game_tick", DAY)]


def test_ledger_temp_of_a_killed_landing_is_removed(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    folder = store.manifests_dir / "landed" / DAY
    folder.mkdir(parents=True)
    # a ledger entry's temp file whose writer (a landing run) was killed: no process holds it
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = folder / f".x.json.{dead.pid}.tmp"
    left.write_text("{")
    land_one_segment(store)
    landing.land_day(store, DAY)
    assert not left.exists()


def test_a_write_that_fails_leaves_no_temp(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")

    def rows():
        yield schema.empty_table()
        raise RuntimeError("the derivation failed mid-file")

    try:
        store.write_partition_file("game_tick", DAY, rows(), "x.parquet")
    except RuntimeError:
        pass
    assert list(store.partition_dir("game_tick", DAY).iterdir()) == []


def test_compaction_leftovers_of_a_compacted_day_are_removed(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    land_one_segment(store)
    landing.land_day(store, DAY)
    compaction.compact_day(store, DAY)
    # killed after its swap: the day's old folder is still at the staging path
    old = store.root / "compaction" / "ws_event" / f"date={DAY}.v1"
    old.mkdir(parents=True)
    (old / "20251207_000001_0badf00d.parquet").write_bytes(b"old landed file")
    assert compaction.compact_day(store, DAY).version is None  # nothing new to merge
    assert not old.exists()
