"""The Dagster instance on a real PostgreSQL server (deploy/dagster.postgres.yaml).

The deployment's shape on one machine: the daemon evaluates spool_sensor, queues the landing
run and launches it in its own process (multiprocess executor); `rugs-pipeline backfill`
then re-derives the day with its checks. Every run, sensor tick, materialisation and check
evaluation must be in Postgres, and nothing in a SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml

from rugs_pipeline.definitions import defs
from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import DAY, PostgresUnavailable, game_frames, postgres_server, sealed_segment

from .conftest import REPO_ROOT

VARIANT = REPO_ROOT / "deploy" / "dagster.postgres.yaml"
BIN = REPO_ROOT / ".venv" / "bin"


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    try:
        with postgres_server() as settings:
            yield settings
    except PostgresUnavailable as err:
        pytest.skip(str(err))


def _query(pg: dict[str, str], sql: str, *args) -> list[tuple]:
    conn = psycopg2.connect(host=pg["RUGS_PG_HOST"], port=pg["RUGS_PG_PORT"], user=pg["RUGS_PG_USER"],
                            password=pg["RUGS_PG_PASSWORD"], dbname=pg["RUGS_PG_DB"])
    try:
        with conn.cursor() as cur:
            cur.execute(sql, args or None)  # no args: '%' in LIKE stays literal
            return cur.fetchall()
    finally:
        conn.close()


def _key(stored: str) -> str:
    return dg.AssetKey(json.loads(stored)).to_user_string()


def test_variant_keeps_the_instance_settings_of_dagster_yaml() -> None:
    variant = yaml.safe_load(VARIANT.read_text())
    assert "postgres" in variant.pop("storage")
    assert variant == yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text()), (
        "deploy/dagster.postgres.yaml must carry dagster.yaml's settings (all but storage): copy the change across")


def test_sensor_landing_and_derivation_on_a_postgres_instance(postgres: dict[str, str], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    home, data = tmp_path / "dagster_home", tmp_path / "rugs_data"
    home.mkdir()
    # automation would derive the day as well, racing the backfill below: this test launches that itself
    settings = {**yaml.safe_load(VARIANT.read_text()), "auto_materialize": {"enabled": False, "use_sensors": False}}
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    # multiprocess (not the default): step processes of their own must write to Postgres too
    env = {**os.environ, **postgres, "DAGSTER_HOME": str(home), "RUGS_DATA_DIR": str(data), "RUGS_EXECUTOR": "multiprocess"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store = Store(data)
    sealed_segment(store, "s1", game_frames("20251207-aaaaaaaaaaaaaaaa", 5) + game_frames("20251207-cccccccccccccccc", 2))

    with dg.DagsterInstance.get() as instance:
        storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
        assert [type(s).__name__ for s in storages] == ["PostgresRunStorage", "PostgresEventLogStorage",
                                                       "PostgresScheduleStorage"]

    # the daemon: sensor tick -> run queue -> run launcher -> run worker -> step processes
    daemon_log = tmp_path / "daemon.log"
    with daemon_log.open("w") as out:
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO_ROOT, env=env,
                                  stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, done = time.monotonic() + 150, []
        while time.monotonic() < deadline and daemon.poll() is None:
            done = _query(postgres, "SELECT status FROM runs WHERE pipeline_name = 'land_ws_event' "
                                    "AND status IN ('SUCCESS', 'FAILURE', 'CANCELED')")
            if done:
                break
            time.sleep(1)
        assert done == [("SUCCESS",)], f"landing run: {done}\n{daemon_log.read_text()[-3000:]}"
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        # the daemon's code server and any run worker it left behind share its process group
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)

    out = subprocess.run([str(BIN / "rugs-pipeline"), "backfill", "--from", DAY, "--to", DAY], env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stdout + out.stderr

    runs = dict(_query(postgres, "SELECT pipeline_name, status FROM runs"))
    assert runs == {"land_ws_event": "SUCCESS", "rederive": "SUCCESS"}
    tags = dict(_query(postgres, "SELECT t.key, t.value FROM run_tags t JOIN runs r USING (run_id) "
                                 "WHERE r.pipeline_name = 'land_ws_event'"))
    assert tags["dagster/sensor_name"] == "spool_sensor" and tags["dagster/run_key"].startswith(f"land-{DAY}-")
    assert tags["dagster/partition"] == DAY
    ticks = _query(postgres, "SELECT status, count(*) FROM job_ticks WHERE selector_id IN "
                             "(SELECT selector_id FROM instigators WHERE instigator_body LIKE '%spool_sensor%') GROUP BY 1")
    assert ("SUCCESS", 1) in ticks, ticks

    # what the two jobs declare, read from Postgres: every asset of the day materialised, every check evaluated
    assets = {k.to_user_string() for job in ("land_ws_event", "rederive")
              for k in defs.resolve_job_def(job).asset_layer.selected_asset_keys}
    checks = {(k.asset_key.to_user_string(), k.name) for k in defs.resolve_asset_graph().asset_check_keys
              if k.asset_key.to_user_string() in assets}
    materialized = _query(postgres, "SELECT asset_key, partition FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'")
    assert sorted((_key(a), p) for a, p in materialized) == sorted((a, DAY) for a in assets)
    assert set(schema.DOC_TYPES) <= assets
    evaluated = {(_key(a), name): (p, status) for a, name, p, status in
                 _query(postgres, "SELECT asset_key, check_name, partition, execution_status FROM asset_check_executions")}
    assert set(evaluated) == checks
    assert all(evaluated[(d, "schema_valid")] == (DAY, "SUCCEEDED") for d in schema.DOC_TYPES), evaluated
    assert evaluated[("ws_event", "schema_current")] == (DAY, "SUCCEEDED")

    assert store.read_partition("ws_event", DAY).num_rows and store.read_partition("game_tick", DAY).num_rows
    sqlite = [p.relative_to(home) for p in home.rglob("*.db")]
    assert sqlite == [], f"instance data went to SQLite: {sqlite}"
