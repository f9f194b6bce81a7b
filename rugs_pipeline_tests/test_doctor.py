"""`rugs-pipeline doctor [--repair]` on a store with a corrupt file, a stale temp, a dead session, a broken ledger."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pyarrow.compute as pc
from click.testing import CliRunner

from rugs_pipeline.formats import spool
from rugs_pipeline.cli import main
from rugs_pipeline.derive.datasets import Frames, derive
from rugs_pipeline.store import compaction, landing, schema
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import DAY, garble_footer, landed_store, start_writer, truncate


ROWS = 12  # landed_store's 3 segments of 4 frames


def doctor(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["doctor", "--json", *args], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def kinds(report: dict) -> list[str]:
    return sorted(p["kind"] for p in report["problems"])


def assert_day_whole(store: Store) -> None:
    table = store.read_partition("ws_event", DAY)
    frames = table.filter(pc.equal(table["frame_kind"], "event"))
    assert sorted(frames["seq"].to_pylist()) == list(range(1, ROWS + 1))


def test_finds_each_problem_and_repairs_it(data_dir: Path, tmp_path: Path) -> None:
    store = landed_store(data_dir)
    bad = store.partition_files("ws_event", DAY)[1]
    truncate(bad)
    store.replace_partition("game_tick", DAY, schema.empty_table())
    derived = store.partition_files("game_tick", DAY)[0]
    garble_footer(derived)
    writer, live_temp = start_writer(store, "ws_event", tmp_path)  # a landing mid-write: none of doctor's business
    try:
        dead, dead_temp = start_writer(store, "player_action", tmp_path)
        os.kill(dead.pid, signal.SIGKILL)
        dead.wait(timeout=30)
        (store.spool_dir / "20251207T000000Z-deadbeef.lock").touch()  # a recorder killed before it sealed

        code, report = doctor()
    finally:  # the repair below takes the day's lock alone: it would wait for this landing
        writer.kill()
        writer.wait(timeout=30)
    assert code == 1
    assert kinds(report) == ["corrupt file", "corrupt file", "dead session", "stale temp"]
    by_path = {p["path"]: p for p in report["problems"]}
    assert "magic bytes" in by_path[str(bad)]["detail"]
    assert by_path[str(bad)]["fix"] == "--repair quarantines it and re-lands 1 segment(s) from the spool"
    assert "rugs-pipeline backfill --from 2025-12-07 --to 2025-12-07" in by_path[str(derived)]["fix"]
    assert str(dead_temp) in by_path and str(live_temp) not in by_path
    assert report["files_checked"] == 4

    code, report = doctor("--repair")
    assert code == 1  # the dead session is left to the recorder
    assert [p["kind"] for p in report["problems"] if not p["repaired"]] == ["dead session"]
    assert (data_dir / "quarantine" / bad.relative_to(data_dir)).exists()
    assert (data_dir / "quarantine" / derived.relative_to(data_dir)).exists()
    assert not dead_temp.exists() and not live_temp.exists()  # its writer killed meanwhile
    assert_day_whole(store)


def test_rows_no_longer_in_the_spool_are_recorded_lost(data_dir: Path) -> None:
    store = landed_store(data_dir)
    bad = store.partition_files("ws_event", DAY)[0]
    garble_footer(bad)
    segment = next(s for s in spool.sealed_segments(store.spool_dir, DAY) if landing.landed_file_name(s.name) == bad.name)
    segment.path.unlink()  # the operator cleaned the spool
    code, report = doctor()
    assert "1 of its 1 segment(s) are no longer in the spool: their rows are lost" in report["problems"][0]["fix"]

    code, report = doctor("--repair")
    assert code == 0
    assert "lost: recorded as a rows_lost system_event" in report["problems"][0]["repaired"]
    events = derive("system_event", Frames(tuple(store.partition_files("ws_event", DAY))))
    lost = events.filter(pc.equal(events["event_name"], "rows_lost")).to_pylist()
    assert len(lost) == 1
    assert lost[0]["message"].startswith(f"{bad} was unreadable (")
    assert segment.name in lost[0]["message"]
    assert lost[0]["ts"].date().isoformat() == DAY
    assert doctor()[0] == 0


def test_a_corrupt_compacted_file_relands_the_day_from_the_spool(data_dir: Path) -> None:
    store = landed_store(data_dir)
    compaction.compact_day(store, DAY)
    [merged] = store.partition_files("ws_event", DAY)
    truncate(merged)
    code, report = doctor("--repair")
    assert code == 0
    assert report["problems"][0]["fix"] == \
        "--repair quarantines the day's merged files and re-lands its 3 segment(s) from the spool"
    assert_day_whole(store)
    assert len(store.partition_files("ws_event", DAY)) == 3


def test_a_ledger_entry_whose_file_is_gone_is_relanded(data_dir: Path) -> None:
    store = landed_store(data_dir)
    gone = store.partition_files("ws_event", DAY)[2]
    gone.unlink()
    code, report = doctor()
    assert code == 1 and kinds(report) == ["ledger"]
    assert report["problems"][0]["detail"] == \
        f"segment landed as {gone.name}, which is missing: its rows are not in ws_event"
    assert doctor("--repair")[0] == 0
    assert_day_whole(store)


def test_table_output_names_the_file_whole(data_dir: Path, monkeypatch) -> None:
    store = landed_store(data_dir)
    bad = store.partition_files("ws_event", DAY)[1]
    truncate(bad)
    result = CliRunner().invoke(main, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 1
    assert bad.name in result.stdout.replace("│", "").replace(" ", "").replace("\n", "")
    assert "3 Parquet file(s) checked, 1 problem(s)" in result.stdout
    healthy = landed_store(data_dir.parent / "other")
    monkeypatch.setenv("RUGS_DATA_DIR", str(healthy.root))
    result = CliRunner().invoke(main, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 0 and "3 Parquet file(s) checked, 0 problem(s): OK" in result.stdout


def test_compaction_leftovers_are_found_and_removed(data_dir: Path) -> None:
    store = landed_store(data_dir)
    spill = store.root / "compaction" / "ws_event" / f".date={DAY}.v1.buckets"  # a compaction killed mid-merge
    spill.mkdir(parents=True)
    code, report = doctor()
    assert code == 1 and [(p["kind"], p["path"]) for p in report["problems"]] == [("compaction leftover", str(spill))]
    assert doctor("--repair")[0] == 0
    assert not spill.exists()
