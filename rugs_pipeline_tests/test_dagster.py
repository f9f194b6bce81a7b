"""The Dagster wiring on a real instance: sensor, landing exactly once, checks that block, schedule."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rugs_pipeline.definitions import defs
from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.checks import schema_checks
from rugs_pipeline.defs.games import game_assets, game_checks
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.defs.schedules import REDERIVE_DAYS, nightly_rederive
from rugs_pipeline.defs.sensors import spool_sensor
from rugs_pipeline.store import landing, schema
from rugs_pipeline.store.layout import Store
from rugs_pipeline.store.validation import validate_partition
from rugs_pipeline.testing import DAY, T0, game_frames, sealed_segment

from .conftest import REPO_ROOT

EVERYTHING = [ws_event, *derived_assets, *game_assets, *schema_checks, *game_checks]


def _materialize(selection, day: str = DAY, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(selection, partition_key=day, instance=instance or dg.DagsterInstance.ephemeral(),
                          resources={"store": StoreResource()}, raise_on_error=False)


def test_definitions_validate() -> None:
    out = subprocess.run([str(REPO_ROOT / ".venv" / "bin" / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_sensor_requests_each_segment_set_once_and_landing_is_exactly_once(data_dir: Path) -> None:
    store = Store(data_dir)
    sealed_segment(store, "s1", game_frames("20251207-aaaaaaaaaaaaaaaa", 5))
    ctx = dg.build_sensor_context(resources={"store": StoreResource()})
    first = spool_sensor(ctx)
    again = spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()}))
    assert [r.partition_key for r in first] == [DAY]
    assert [r.run_key for r in first] == [r.run_key for r in again], "same segments, same run key"

    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("land_ws_event")
    assert job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False).success
    landed = store.partition_files("ws_event", DAY)
    before = pq.read_table(landed[0])
    # a crash between writing the file and the ledger entry, then a retried run
    for entry in (store.manifests_dir / "landed" / DAY).glob("*.json"):
        entry.unlink()
    assert job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False).success
    assert store.partition_files("ws_event", DAY) == landed
    assert pq.read_table(landed[0]).equals(before)
    assert isinstance(spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()})), dg.SkipReason)

    # a new segment gives a new run key; landing it leaves the first file untouched
    sealed_segment(store, "s2", game_frames("20251207-bbbbbbbbbbbbbbbb", 3), start_ns=T0 + 3600 * 10**9)
    third = spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()}))
    assert third[0].run_key != first[0].run_key
    assert job.execute_in_process(partition_key=DAY, instance=instance, raise_on_error=False).success
    assert len(store.partition_files("ws_event", DAY)) == 2
    assert store.read_partition("ws_event", DAY).num_rows == before.num_rows + len(game_frames("x", 3))


def test_materialize_all_with_passing_checks_and_idempotent_rebuild(data_dir: Path) -> None:
    store = Store(data_dir)
    sealed_segment(store, "s1", game_frames("20251207-aaaaaaaaaaaaaaaa", 5) + game_frames("20251207-cccccccccccccccc", 2))
    instance = dg.DagsterInstance.ephemeral()
    result = _materialize(EVERYTHING, instance=instance)
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.passed) for e in result.get_asset_check_evaluations()}
    assert checks == {(name, True) for name in schema.DOC_TYPES}
    ticks = store.read_partition("game_tick", DAY)
    assert sorted(zip(ticks["game_id"].to_pylist(), ticks["tick"].to_pylist())) == sorted(
        [("20251207-aaaaaaaaaaaaaaaa", t) for t in range(6)] + [("20251207-cccccccccccccccc", t) for t in range(3)]
    )
    first = {d: store.read_partition(d, DAY) for d in schema.DOC_TYPES}
    assert _materialize(EVERYTHING, instance=instance).success
    for doc_type, table in first.items():
        assert store.read_partition(doc_type, DAY).equals(table), doc_type
        assert len(store.partition_files(doc_type, DAY)) == 1
    manifest = json.loads(store.manifest_path.read_text())
    assert manifest["version"] == schema.SCHEMA_VERSION and [f["name"] for f in manifest["fields"]] == list(schema.COLUMNS)


def test_wrong_schema_version_fails_check_and_blocks_downstream(data_dir: Path) -> None:
    store = Store(data_dir)
    sealed_segment(store, "s1", game_frames("20251207-aaaaaaaaaaaaaaaa", 5))
    landing.land_day(store, DAY)
    # a file written by some other version of the pipeline
    stray = store.read_partition("ws_event", DAY).replace_schema_metadata({schema.SCHEMA_VERSION_KEY: b"0.9.0"})
    pq.write_table(stray, store.partition_dir("ws_event", DAY) / "20251207_000001_deadbeef.parquet")
    result = _materialize(EVERYTHING)
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert evaluations["ws_event", "schema_valid"].passed is False
    assert "0.9.0" in evaluations["ws_event", "schema_valid"].description
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"ws_event"}, "a failing blocking check must stop the derived assets"
    assert store.partition_files("game_tick", DAY) == []


def test_store_at_another_version_is_refused_with_a_clear_error(data_dir: Path) -> None:
    store = Store(data_dir)
    sealed_segment(store, "s1", game_frames("20251207-aaaaaaaaaaaaaaaa", 3))
    assert _materialize(EVERYTHING).success
    manifest = json.loads(store.manifest_path.read_text())
    store.manifest_path.write_text(json.dumps({**manifest, "version": "1.9.0"}))
    assert "1.9.0" in " ".join(validate_partition(store, "game_tick", DAY).failures)
    result = _materialize(EVERYTHING)
    assert not result.success
    errors = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]
    assert any("1.9.0" in m for m in errors), errors
    assert json.loads(store.manifest_path.read_text())["version"] == "1.9.0", "never overwritten by an older writer"


def test_nightly_schedule_rederives_recent_days() -> None:
    ctx = dg.build_schedule_context(scheduled_execution_time=pa.scalar(1_765_152_000, pa.timestamp("s", tz="UTC")).as_py())
    requests = list(nightly_rederive(ctx))
    assert [r.partition_key for r in requests] == ["2025-12-07", "2025-12-06", "2025-12-05"][:REDERIVE_DAYS]
    assert len({r.run_key for r in requests}) == REDERIVE_DAYS


@pytest.mark.parametrize("doc_type", schema.DOC_TYPES)
def test_every_doc_type_has_a_blocking_check(doc_type: str) -> None:
    specs = [s for c in (*schema_checks, *game_checks) for s in c.check_specs
             if s.asset_key.to_user_string() == doc_type and s.name == "schema_valid"]
    assert len(specs) == 1 and specs[0].blocking


def test_automation_derives_closed_days_at_once_and_the_live_day_on_the_cron(data_dir: Path) -> None:
    store = Store(data_dir)
    # evaluate 10 s after a 5-minute cron boundary, so that no tick falls before "soon"
    wall = datetime.now(timezone.utc)
    now = wall.replace(second=10, microsecond=0) + timedelta(minutes=5 - wall.minute % 5)
    today = wall.strftime("%Y-%m-%d")
    sealed_segment(store, "old", game_frames("20251207-aaaaaaaaaaaaaaaa", 3))
    sealed_segment(store, "live", game_frames("20261124-bbbbbbbbbbbbbbbb", 3), start_ns=time.time_ns())
    instance = dg.DagsterInstance.ephemeral()
    first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
    assert first.total_requested == 0, "nothing landed yet"
    land = defs.resolve_job_def("land_ws_event")
    derived = {a.key.to_user_string() for a in derived_assets}
    for day in (DAY, today):
        assert land.execute_in_process(partition_key=day, instance=instance).success

    def requested(result) -> set[tuple[str, str]]:  # derived assets only: compaction is test_compaction's
        return {(ap.asset_key.to_user_string(), ap.partition_key) for r in result.results
                for ap in r.true_subset.expensively_compute_asset_partitions() if r.key.to_user_string() in derived}

    soon = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=first.cursor,
                                             evaluation_time=now + timedelta(seconds=5))
    assert requested(soon) == {(name, DAY) for name in derived}, "a closed day re-derives at once"
    later = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=soon.cursor,
                                              evaluation_time=now + timedelta(minutes=6))
    assert requested(later) == {(name, today) for name in derived}, "the live day waits for the cron tick"
