"""The lake on object storage: the pipeline and the seed queries against a real S3 server on 127.0.0.1.

moto's server mode speaks the S3 REST API over HTTP; the pipeline reaches it through the standard
AWS_* environment, exactly as it would reach AWS or MinIO. The same spool is landed and derived into
a local lake too, and the two are compared file by file and query by query.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rugs_pipeline import consumers
from rugs_pipeline.config import ConfigError
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.defs.sensors import spool_sensor
from rugs_pipeline.store import compaction, landing, schema
from rugs_pipeline.store.lake import parse_root
from rugs_pipeline.store.layout import SchemaVersionError, Store, file_schema_version
from rugs_pipeline.testing import (
    DAY, SEED_QUERY_TICKS, SEED_QUERY_WS, T0, downgrade, game_frames, land_and_derive_days, run_job, sealed_segment,
)


BUCKET = "rugs-lake"
NEXT_DAY = "2025-12-08"


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict[str, str]]:
    """moto's S3 server on a free port of 127.0.0.1, with one bucket; yields the AWS_* environment."""
    try:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
    except Exception as exc:  # noqa: BLE001 - any reason the server cannot start is a reason to skip
        pytest.skip(f"moto's S3 server could not start on 127.0.0.1: {exc}")
    host, port = server.get_host_and_port()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield env
    server.stop()


@pytest.fixture()
def s3(s3_server: dict[str, str], monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> str:
    """A fresh prefix of the bucket for this test, as the lake root URL; AWS_* set."""
    for key, value in s3_server.items():
        monkeypatch.setenv(key, value)
    return f"s3://{BUCKET}/{re.sub(r'[^a-z0-9_]', '-', request.node.name)}"


def _spool_two_days(store: Store) -> None:
    # two games on DAY, one whose end arrives on the next day (the next day's head is read too), one more after
    sealed_segment(store, "s1", game_frames("20251207-aaaaaaaaaaaaaaaa", 5) + game_frames("20251207-cccccccccccccccc", 2))
    sealed_segment(store, "s2", game_frames("20251207-dddddddddddddddd", 4), start_ns=T0 + 86_399 * 10**9)
    sealed_segment(store, "s3", game_frames("20251208-eeeeeeeeeeeeeeee", 3), start_ns=T0 + 90_000 * 10**9)


def _run_pipeline(root: str, spool_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the daemon does: the sensor's requests, then land, derive and check each day (all checks pass)."""
    monkeypatch.setenv("RUGS_DATA_DIR", root)
    monkeypatch.setenv("RUGS_SPOOL_DIR", str(spool_dir))
    requests = spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()}))
    days = sorted({r.partition_key for r in requests})
    land_and_derive_days(days)
    assert isinstance(spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()})), dg.SkipReason)
    return days


def _objects(store: Store) -> set[str]:
    return {key.removeprefix(f"{store.root.key}/") for key in store.filesystem.find(store.root.key)}


def _seed(root: str, sql: str) -> list[tuple]:
    """A README seed query with ``root`` in place of ``~/rugs_data``, in a DuckDB that reads the lake's files."""
    con = consumers.connect(root)
    return sorted(con.execute(sql.replace("~/rugs_data", root)).fetchall(), key=repr)


def test_pipeline_and_seed_queries_on_s3_match_a_local_lake(s3: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    local_root, local_spool, s3_spool = tmp_path / "lake", tmp_path / "spool_local", tmp_path / "spool_s3"
    _spool_two_days(Store(local_root, local_spool))
    _spool_two_days(Store.at(s3, s3_spool))

    assert _run_pipeline(str(local_root), local_spool, monkeypatch) == [DAY, NEXT_DAY]
    assert _run_pipeline(s3, s3_spool, monkeypatch) == [DAY, NEXT_DAY]

    remote = Store.at(s3, s3_spool)
    fs = remote.filesystem
    # the same objects as the local lake's files (its partition locks live beside the spool instead)
    keys = _objects(remote)
    files = {str(p.relative_to(local_root)) for p in local_root.rglob("*") if p.is_file()}
    assert keys == {f for f in files if not f.startswith("manifests/locks/")}
    assert {p.name for p in (s3_spool / "lake_locks").iterdir()} >= {f"ws_event_{DAY}.lock", f"ws_event_{NEXT_DAY}.lock"}
    for key in sorted(k for k in keys if k.endswith(".parquet")):
        theirs = pq.read_table(f"{remote.root.key}/{key}", filesystem=fs)
        assert theirs.equals(pq.read_table(local_root / key)), key
        assert theirs.schema.metadata[schema.SCHEMA_VERSION_KEY] == schema.SCHEMA_VERSION.encode()
    assert remote.read_manifest()["version"] == schema.SCHEMA_VERSION

    ticks = remote.read_partition("game_tick", DAY)
    assert sorted(set(ticks["game_id"].to_pylist())) == ["20251207-aaaaaaaaaaaaaaaa", "20251207-cccccccccccccccc",
                                                          "20251207-dddddddddddddddd"]
    assert ticks.num_rows == 6 + 3 + 5
    # every gameStateUpdate of the four games (each 1 + rug + 2 frames); their ticks 0..rug, on both days
    for sql, rows in ((SEED_QUERY_WS, 8 + 5 + 7 + 6), (SEED_QUERY_TICKS, 6 + 3 + 5 + 4)):
        on_s3 = _seed(s3, sql)
        assert on_s3 == _seed(str(local_root), sql)
        assert len(on_s3) == rows
    # the consumer views: one per doc_type, the same answers
    query = "SELECT doc_type, date, count(*) FROM {} GROUP BY ALL ORDER BY ALL"
    for doc_type in schema.DOC_TYPES:
        sql = query.format(doc_type)
        assert consumers.connect(s3).execute(sql).fetchall() == consumers.connect(str(local_root)).execute(sql).fetchall()

    out = subprocess.run([sys.executable, "-m", "rugs_pipeline.cli", "query", "SELECT count(*) AS n FROM game_tick"],
                         env={**os.environ, "RUGS_DATA_DIR": s3}, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and " 18 " in out.stdout, out.stdout + out.stderr

    # re-running lands nothing new and rewrites the derived objects under the same keys
    land_and_derive_days([DAY, NEXT_DAY])
    assert _objects(remote) == keys
    assert remote.read_partition("game_tick", DAY).equals(ticks)


@pytest.mark.parametrize("on_s3", [False, True], ids=["local", "s3"])
def test_migration_rewrites_a_10_lake_into_what_11_code_writes(on_s3: bool, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               request: pytest.FixtureRequest) -> None:
    """Day by day, oldest first: each day's games also read the next day, still at 1.0.0 while the day migrates."""
    reference, spool_dir = tmp_path / "reference", tmp_path / "spool"
    _spool_two_days(Store(reference, spool_dir))
    _run_pipeline(str(reference), spool_dir, monkeypatch)
    old = tmp_path / "old"
    shutil.copytree(reference, old, ignore=shutil.ignore_patterns("locks"))
    downgrade(old)  # every file and the manifest as 1.0.0 code wrote them
    root = request.getfixturevalue("s3") if on_s3 else str(old)
    store = Store.at(root, spool_dir)
    if on_s3:
        store.filesystem.put(f"{old}/", store.root.key, recursive=True)
    assert store.read_manifest()["version"] == "1.0.0"
    with pytest.raises(SchemaVersionError, match="rugs-pipeline migrate"):
        consumers.connect(root, require=schema.SCHEMA_VERSION)

    monkeypatch.setenv("RUGS_DATA_DIR", root)
    for day in (DAY, NEXT_DAY):
        assert store.read_manifest()["version"] == "1.0.0", "the manifest moves only once every day is migrated"
        assert run_job("migrate_schema", root, day).success
    assert store.read_manifest()["version"] == schema.SCHEMA_VERSION
    files = [f for d in schema.DOC_TYPES for day in store.partition_days(d) for f in store.partition_files(d, day)]
    assert sorted(f.relative_to(store.root) for f in files) == sorted(p.relative_to(reference)
                                                                      for p in reference.rglob("*.parquet"))
    for path in files:
        assert file_schema_version(path, store.filesystem) == schema.SCHEMA_VERSION, path
        want = pq.read_table(reference / path.relative_to(store.root))
        assert pq.read_table(str(path), filesystem=store.filesystem).equals(want), path
    for sql in (SEED_QUERY_WS, SEED_QUERY_TICKS):
        assert _seed(root, sql) == _seed(str(reference), sql)
    consumers.connect(root, require=schema.SCHEMA_VERSION)


def test_a_failed_write_leaves_no_object_and_keeps_the_old_one(s3: str, tmp_path: Path) -> None:
    store = Store.at(s3, tmp_path / "spool")
    rows = schema.conform(pa.table({"ts": pa.array([T0 // 1000], pa.int64()).cast(pa.timestamp("us", tz="UTC")),
                                    "source": ["public_ws"], "doc_type": ["game_tick"], "session_id": ["s"],
                                    "seq": pa.array([1], pa.int64())}))

    def failing():
        yield rows
        raise RuntimeError("the derivation failed half-way")

    with pytest.raises(RuntimeError):
        store.write_partition_file("game_tick", DAY, failing(), "new.parquet")
    assert store.partition_files("game_tick", DAY) == [] and store.partition_days("game_tick") == []

    path = store.write_partition_file("game_tick", DAY, rows, "kept.parquet")
    with pytest.raises(RuntimeError):
        store.write_partition_file("game_tick", DAY, failing(), "kept.parquet")
    assert store.partition_files("game_tick", DAY) == [path]
    assert store.read_partition("game_tick", DAY).equals(rows)
    # why the file is finished before it is uploaded: fsspec's own writer publishes what it holds on an error
    with pytest.raises(RuntimeError), store.filesystem.open(f"{store.root.key}/naive.bin", "wb") as fh:
        fh.write(b"half a file")
        raise RuntimeError("failed mid-write")
    assert store.filesystem.cat_file(f"{store.root.key}/naive.bin") == b"half a file"


def test_object_storage_refuses_what_it_cannot_do_in_one_line(s3: str, tmp_path: Path) -> None:
    store = Store.at(s3)
    with pytest.raises(ConfigError, match="RUGS_SPOOL_DIR must be set"):
        store.spool_dir
    with pytest.raises(ConfigError, match="compaction needs a local lake"):
        compaction.compact_day(Store.at(s3, tmp_path / "spool"), DAY)
    with pytest.raises(ConfigError, match="a folder, file:///folder or s3://bucket/prefix only"):
        parse_root("gs://bucket/prefix")
    with pytest.raises(ConfigError, match="use a prefix without them"):
        parse_root("s3://bucket/run[1]")
    assert parse_root("file:///var/lib/rugs_data") == Path("/var/lib/rugs_data")
    # the code location of an s3 lake has no compaction asset for automation to fail every day
    code = ("from rugs_pipeline.definitions import defs; "
            "print(sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()))")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "RUGS_DATA_DIR": s3}, capture_output=True,
                         text=True, check=True)
    assert "ws_event" in out.stdout and "ws_event_compaction" not in out.stdout
    env = {**{k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}, "RUGS_DATA_DIR": s3,
           "RUGS_SPOOL_DIR": str(tmp_path / "spool")}
    for command, error in ((["record"], "error: the legacy JSONL capture"),
                           (["backfill", "--from", DAY, "--to", DAY], "error: DAGSTER_HOME must be set")):
        out = subprocess.run([sys.executable, "-m", "rugs_pipeline.cli", *command], capture_output=True, text=True,
                             env=env, timeout=120)
        assert out.returncode == 1 and out.stderr.strip().splitlines()[-1].startswith(error), out.stderr


def test_replay_reads_an_s3_lake_as_it_reads_a_local_one(s3: str, tmp_path: Path) -> None:
    stores = [Store(tmp_path / "lake", tmp_path / "spool_local"), Store.at(s3, tmp_path / "spool_s3")]
    for store in stores:
        _spool_two_days(store)
        for day in (DAY, NEXT_DAY):
            landing.land_day(store, day)
    for day in (DAY, NEXT_DAY):
        local, remote = ([frame.raw for frame in consumers.replay(day, data_dir=str(store.root))] for store in stores)
        assert local and remote == local
