"""Landing stays exactly-once with real processes: two at once, one killed mid-run, a re-landing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc

from rugs_pipeline.formats import spool
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store

from .capture_harness import wait_until

T0 = 1_765_065_600 * 10**9  # 2025-12-07 00:00 UTC
DAY = "2025-12-07"
SEGMENTS, PER_SEGMENT = 30, 300
LAND = "import sys; from rugs_pipeline.store import landing; from rugs_pipeline.store.layout import Store; " \
       "landing.land_day(Store(__import__('pathlib').Path(sys.argv[1])), sys.argv[2])"


def make_segments(store: Store) -> int:
    seq = 0
    for s in range(SEGMENTS):
        records = []
        for _ in range(PER_SEGMENT):
            seq += 1
            frame = encode_event("gameStateUpdate", {"gameId": "20251207-aaaaaaaaaaaaaaaa", "tickCount": seq,
                                                     "price": 1.0, "active": True, "pad": "x" * 200})
            records.append(spool.SpoolRecord(seq, T0 + seq * 10**6, spool.KIND_FRAME, frame))
        spool.write_sealed_segment(store.spool_dir, spool.SegmentHeader("land-test", "public_ws"), records)
    return seq


def land_in(store: Store) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LAND, str(store.root), DAY])


def assert_exactly_once(store: Store, total: int) -> None:
    table = store.read_partition("ws_event", DAY)
    assert table.num_rows == total
    assert pc.count_distinct(table["seq"]).as_py() == total
    assert landing.pending_segments(store, DAY) == []


def file_bytes(store: Store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.partition_files("ws_event", DAY)}


def test_two_landings_of_one_day_at_once_land_each_row_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    total = make_segments(store)
    first, second = land_in(store), land_in(store)
    assert first.wait(timeout=300) == 0 and second.wait(timeout=300) == 0
    assert_exactly_once(store, total)
    # the same segments landed again from scratch give byte-identical files
    before = file_bytes(store)
    for path in [*store.partition_files("ws_event", DAY), *(store.manifests_dir / "landed").rglob("*.json")]:
        path.unlink()
    landing.land_day(store, DAY)
    assert file_bytes(store) == before


def test_landing_killed_mid_run_then_rerun_lands_each_row_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    total = make_segments(store)
    proc = land_in(store)
    # a Dagster run process dies (restart, OOM, kill -9) with some segments landed and some not
    wait_until(lambda: len(store.partition_files("ws_event", DAY)) >= 5, 120, "some segments landed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert 0 < len(landing.pending_segments(store, DAY)) < SEGMENTS
    landing.land_day(store, DAY)
    assert_exactly_once(store, total)
    # a file written but not yet in the ledger (a crash between the two) is rewritten, not doubled
    ledger = next((store.manifests_dir / "landed" / DAY).glob("*.json"))
    ledger.unlink()
    report = landing.land_day(store, DAY)
    assert len(report.segments) == 1
    assert_exactly_once(store, total)
