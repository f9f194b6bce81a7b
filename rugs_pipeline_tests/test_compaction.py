"""Compaction: a closed day's landed files become a few large ones, atomically, and landing stays exactly-once."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq

from rugs_pipeline.formats import spool
from rugs_pipeline.definitions import defs
from rugs_pipeline.defs.assets import ws_event
from rugs_pipeline.defs.compaction import ws_event_compaction
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.formats.protocol import PING, encode_event
from rugs_pipeline.store import compaction, landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.store.validation import validate_partition

T0 = 1_765_065_600 * 10**9  # 2025-12-07 00:00 UTC
DAY = "2025-12-07"
NAMES = ("gameStateUpdate", "standard/newTrade", "newChatMessage", "gameStatePlayerUpdate")


def _frames(n: int, salt: int) -> list[str]:
    out = []
    for i in range(n):
        name = NAMES[(i * 7 + salt) % len(NAMES)]
        payload = {"gameId": f"20251207-{salt:016x}", "i": i}
        if name == "gameStateUpdate" and i % 3 == 0:  # a state frame that carries more than its tick
            payload["gameHistory"] = [{"id": f"20251207-{salt - 1:016x}", "prices": [1.0, 0.5]}]
        out.append(PING if i % 11 == 0 else encode_event(name, payload))
    return out


def _segments(store: Store, count: int, frames: int = 20, first: int = 0) -> None:
    """``count`` sealed 30 s segments of one session, from segment number ``first`` on."""
    for k in range(first, first + count):
        start = T0 + k * 30 * 10**9
        records = [spool.SpoolRecord(k * frames + i + 1, start + i * 10**6, spool.KIND_FRAME, f)
                   for i, f in enumerate(_frames(frames, k))]
        spool.write_sealed_segment(store.spool_dir, spool.SegmentHeader("s1", "public_ws"), records)


def _rows(store: Store) -> list[tuple]:
    table = store.read_partition("ws_event", DAY)
    return sorted(zip(table["session_id"].to_pylist(), table["seq"].to_pylist(), table["raw_json"].to_pylist()))


def test_a_day_becomes_few_files_clustered_by_event_with_the_same_rows(data_dir: Path) -> None:
    store = Store(data_dir)
    _segments(store, 40)
    landing.land_day(store, DAY)
    before = _rows(store)
    assert len(store.partition_files("ws_event", DAY)) == 40

    report = compaction.compact_day(store, DAY)
    files = store.partition_files("ws_event", DAY)
    assert report.version == 1 and report.merged == 40 and not report.carried
    assert 1 <= len(files) <= compaction.MAX_FILES
    assert all(compaction.merged_version(f) == 1 for f in files)
    assert _rows(store) == before
    assert validate_partition(store, "ws_event", DAY).passed
    clusters = []
    for f in files:  # each row group holds one event, in event order; state frames with a history apart
        meta = pq.read_metadata(f)
        column, history = meta.schema.names.index("event_name"), meta.schema.names.index("history_games")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            assert not stats.has_min_max or stats.min == stats.max
            name = stats.min if stats.has_min_max else None
            with_history = meta.row_group(g).column(history).statistics.null_count < meta.row_group(g).num_rows
            assert not with_history or meta.row_group(g).column(history).statistics.null_count == 0
            clusters.append((name is None, name or "", with_history))
    assert clusters == sorted(clusters)
    assert (False, "gameStateUpdate", True) in clusters and (False, "gameStateUpdate", False) in clusters
    assert compaction.compact_day(store, DAY).version is None, "nothing new: nothing to do"
    assert [f.name for f in store.partition_files("ws_event", DAY)] == [f.name for f in files]


def test_late_segments_after_compaction_land_exactly_once(data_dir: Path) -> None:
    store = Store(data_dir)
    _segments(store, 10)
    landing.land_day(store, DAY)
    compaction.compact_day(store, DAY)
    _segments(store, 2, first=10)  # the recorder's last segments, sealed after midnight
    assert len(landing.land_day(store, DAY).segments) == 2
    assert not landing.land_day(store, DAY).segments, "the ledger still knows the merged segments"
    assert len(_rows(store)) == 12 * 20 == len(set(_rows(store)))

    report = compaction.compact_day(store, DAY)
    assert report.version == 2 and report.merged == 3
    assert len(_rows(store)) == 12 * 20 == len(set(_rows(store)))
    assert all(compaction.merged_version(f) == 2 for f in store.partition_files("ws_event", DAY))


def test_a_landing_that_crashed_before_its_ledger_entry_is_carried_over_not_merged(data_dir: Path) -> None:
    store = Store(data_dir)
    _segments(store, 5)
    landing.land_day(store, DAY)
    unrecorded = spool.sealed_segments(store.spool_dir, DAY)[-1]
    landing.ledger_path(store, unrecorded).unlink()  # file written, ledger entry lost

    report = compaction.compact_day(store, DAY)
    assert report.carried == [landing.landed_file_name(unrecorded.name)] and report.merged == 4
    assert len(landing.land_day(store, DAY).segments) == 1, "landed again, under the same name"
    assert len(_rows(store)) == 5 * 20 == len(set(_rows(store)))
    assert compaction.compact_day(store, DAY).merged == 2
    assert len(_rows(store)) == 5 * 20 == len(set(_rows(store)))


def test_readers_during_compaction_never_see_a_row_twice_or_miss_one(data_dir: Path) -> None:
    """DuckDB's ** glob and the Store's own listing, read over and over while compaction swaps the day."""
    store = Store(data_dir)
    _segments(store, 150, frames=30)
    landing.land_day(store, DAY)
    expected = 150 * 30
    glob = str(store.events_dir / "**" / "*.parquet")
    results: list[tuple[str, tuple]] = []
    done = threading.Event()

    def read(kind: str) -> None:
        con = duckdb.connect()
        while not done.is_set():
            try:
                if kind == "duckdb":
                    got = con.execute("SELECT count(*), count(DISTINCT (session_id, seq)) FROM read_parquet(?)",
                                      [glob]).fetchone()
                else:
                    table = store.read_partition("ws_event", DAY)
                    got = (table.num_rows, len(set(zip(table["session_id"].to_pylist(), table["seq"].to_pylist()))))
            except (duckdb.IOException, FileNotFoundError) as exc:  # listed before the swap, opened after
                results.append(("gone", (type(exc).__name__,)))
            else:
                results.append(("read", got))

    readers = [threading.Thread(target=read, args=(kind,)) for kind in ("duckdb", "duckdb", "store")]
    for r in readers:
        r.start()
    time.sleep(0.5)
    started = len(results)
    report = compaction.compact_day(store, DAY)
    during = len(results) - started
    time.sleep(0.5)
    done.set()
    for r in readers:
        r.join()
    reads = [got for kind, got in results if kind == "read"]
    assert report.version == 1 and during > 0, "readers ran while compaction did"
    assert reads and all(got == (expected, expected) for got in reads), {g for g in reads if g != (expected, expected)}
    assert len(store.partition_files("ws_event", DAY)) <= compaction.MAX_FILES


def test_landing_waits_while_compaction_holds_the_day(data_dir: Path) -> None:
    store = Store(data_dir)
    _segments(store, 2)
    finished = threading.Event()
    with store.partition_lock("ws_event", DAY):
        lander = threading.Thread(target=lambda: (landing.land_day(store, DAY), finished.set()))
        lander.start()
        assert not finished.wait(0.3), "landing must not add files while compaction swaps the day"
    lander.join(10)
    assert finished.is_set() and len(store.partition_files("ws_event", DAY)) == 2


def test_asset_compacts_closed_days_and_automation_follows_landing(data_dir: Path) -> None:
    store = Store(data_dir)
    _segments(store, 6)
    instance = dg.DagsterInstance.ephemeral()
    resources = {"store": StoreResource()}
    assert dg.materialize([ws_event, ws_event_compaction], partition_key=DAY, instance=instance,
                          resources=resources).success
    assert len(store.partition_files("ws_event", DAY)) == 1

    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    live = dg.materialize([ws_event_compaction], partition_key=today, instance=instance, resources=resources)
    assert live.success, "compacting the open day is not a failure"
    [event] = live.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert metadata["compacted"].value is False
    assert metadata["reason"].value == f"{today} is not closed yet: left as landed, compacted after its UTC midnight"

    # a late segment lands: automation asks for the closed day's compaction again, never for today's
    _segments(store, 1, first=6)
    cursor = dg.evaluate_automation_conditions(defs=defs, instance=instance).cursor
    assert defs.resolve_job_def("land_ws_event").execute_in_process(partition_key=DAY, instance=instance).success
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor,
                                               evaluation_time=datetime.now(timezone.utc) + timedelta(seconds=5))
    asked = {ap.partition_key for r in result.results if r.key == ws_event_compaction.key
             for ap in r.true_subset.expensively_compute_asset_partitions()}
    assert asked == {DAY}


def test_no_staging_left_behind_even_after_a_crash(data_dir: Path) -> None:
    store = Store(data_dir)
    _segments(store, 3)
    landing.land_day(store, DAY)
    crashed = store.root / "compaction" / "ws_event" / f"date={DAY}.v7"  # a swapped-out day never deleted
    crashed.mkdir(parents=True)
    (crashed / "20251207_000000_0badf00d.parquet").write_bytes(b"old")
    compaction.compact_day(store, DAY)
    assert not any((store.root / "compaction" / "ws_event").iterdir())


def test_validation_checks_each_file_once_and_still_finds_duplicates(data_dir: Path) -> None:
    """A landing run's check must not re-read the whole day: verdicts are kept per file, not per day."""
    store = Store(data_dir)
    _segments(store, 4)
    landing.land_day(store, DAY)
    assert validate_partition(store, "ws_event", DAY).passed
    verdicts = store.manifests_dir / "validated" / "ws_event" / f"{DAY}.json"
    first = verdicts.stat().st_mtime_ns
    _segments(store, 1, first=4)
    landing.land_day(store, DAY)
    result = validate_partition(store, "ws_event", DAY)
    assert result.passed and result.rows == 5 * 20 and result.files == 5 and verdicts.stat().st_mtime_ns > first
    # a copy of a landed file under another name: found now, and again next time
    twin = store.partition_files("ws_event", DAY)[0]
    (twin.parent / "20251207_235959_00000000.parquet").write_bytes(twin.read_bytes())
    for _ in range(2):
        assert any("uniqueness" in f for f in validate_partition(store, "ws_event", DAY).failures)
