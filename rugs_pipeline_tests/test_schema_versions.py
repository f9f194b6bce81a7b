"""Schema evolution: the registry's bumps, 1.1.0's typed columns, the 1.0.0 -> 1.1.0 migration, mixed stores.

A 1.0.0 store is made from a 1.1.0 one by writing each file with 1.0.0's columns and metadata
(exactly what 1.0.0 code wrote: 1.1.0 only appended columns), so a migrated store can be
compared file by file with the store 1.1.0 code writes from the same frames.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rugs_pipeline import consumers
from rugs_pipeline.tools.bench import golden
from rugs_pipeline.formats import spool
from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.store import landing, migration, schema, versions
from rugs_pipeline.store.layout import SchemaVersionError, Store, file_schema_version
from rugs_pipeline.testing import downgrade, parquet_files, run_job, unpacked_golden

from .conftest import REPO_ROOT

V1_0 = versions.BY_VERSION["1.0.0"]
SEED_QUERIES = (
    "SELECT * FROM '{root}/events_parquet/**/*.parquet' WHERE doc_type = 'ws_event' AND event_name = 'gameStateUpdate' "
    "LIMIT 100",
    "SELECT game_id, tick, price, ts FROM '{root}/events_parquet/doc_type=game_tick/**/*.parquet' ORDER BY session_id, seq",
)


# --- the registry ----------------------------------------------------------------------------

def test_registry_declares_the_bumps_the_classifier_finds() -> None:
    assert versions.CURRENT.version == schema.SCHEMA_VERSION and versions.CURRENT.schema.equals(schema.SCHEMA)
    assert versions.VERSIONS[0].bump == "initial" and versions.VERSIONS[0].upgrade_ws_event is None
    for before, after in zip(versions.VERSIONS, versions.VERSIONS[1:]):
        assert versions.classify_change(before.schema, after.schema) == after.bump, after.version
        assert after.upgrade_ws_event is not None, f"{after.version} says how to migrate to it"
        major, minor, _ = map(int, after.version.split("."))
        prev_major, prev_minor, _ = map(int, before.version.split("."))
        assert (major, minor) == ((prev_major + 1, 0) if after.bump == "major" else (prev_major, prev_minor + 1))


def test_classifier_calls_every_non_additive_change_major() -> None:
    base = V1_0.schema
    i = base.get_field_index("price")
    nullable = pa.field("extra", pa.int64(), nullable=True)
    changes = {
        "removed": base.remove(i),
        "renamed": base.set(i, base.field(i).with_name("price_x")),
        "retyped": base.set(i, base.field(i).with_type(pa.float32())),
        "made non-nullable": base.set(i, base.field(i).with_nullable(False)),
        "inserted, not appended": base.insert(i, nullable),
        "reordered": pa.schema([base.field(i), *base.remove(i)]),
        "non-nullable appended": base.append(nullable.with_nullable(False)),
    }
    assert {name: versions.classify_change(base, s) for name, s in changes.items()} == dict.fromkeys(changes, "major")
    assert versions.classify_change(base, base.append(nullable)) == "minor"
    assert versions.classify_change(base, base) == "none"
    # a nullability loosened elsewhere still changes an existing column
    j = base.get_field_index("ts")
    assert versions.classify_change(base, base.set(j, base.field(j).with_nullable(True))) == "major"


# --- the typed columns (1.1.0, 1.2.0): a pure Arrow -> Arrow function ---------------------------

def _payload(raw: str):
    """A frame's payload (its last argument), parsed by Python."""
    return json.loads(raw[raw.index("["):])[-1]


def _expected_typed(raw: str, name: str) -> dict:
    """Every typed column of a frame, computed by Python from its text: the expectation."""
    frame, p = json.loads(raw[raw.index("["):]), _payload(raw)

    def length(value):
        return len(value) if isinstance(value, list) else None

    expected = dict.fromkeys((t.column for t in versions.TYPED), None) | {"event_args": len(frame) - 1}
    if name == "standard/newTrade":
        expected |= {"bonus_portion": p.get("bonusPortion"), "real_portion": p.get("realPortion"), "level": p.get("level")}
    if name == "gameStateUpdate":
        phase = ("rugged" if p.get("rugged") is True else "active" if p.get("active") is True
                 else "presale" if p.get("allowPreRoundBuys") is True
                 else "cooldown" if p.get("active") is not None or p.get("cooldownTimer") is not None else None)
        expected |= {
            "connected_players": p.get("connectedPlayers"), "game_version": p.get("gameVersion"),
            "tick": p.get("tickCount"), "price": p.get("price"), "phase": phase, "cooldown_timer": p.get("cooldownTimer"),
            "server_seed_hash": (p.get("provablyFair") or {}).get("serverSeedHash"),
            "partial_prices": p.get("partialPrices"), "history_games": length(p.get("gameHistory")),
            "snapshot_ticks": length(p.get("prices")),
        }
    return expected


def test_fill_typed_columns_reads_each_frames_payload(tmp_path: Path) -> None:
    frames, names = [], []
    for line in unpacked_golden(tmp_path).read_text().splitlines():
        obj = json.loads(line)
        if obj["event"] in ("gameStateUpdate", "standard/newTrade", "playerUpdate"):
            args = obj["data"] if isinstance(obj["data"], list) else [obj["data"]]  # a traced event: [header, payload]
            frames.append("42" + json.dumps([obj["event"], *args]))
            names.append(obj["event"])
    # a trace header before the payload, a state frame with a snapshot, and a frame the feed cut short
    frames += ['42["standard/newTrade",{"trace":1},{"level":7,"bonusPortion":0.5,"realPortion":0.25}]',
               '42["gameStateUpdate",{"active":true,"tickCount":2,"price":1.5,"prices":[1,1.2,1.5]}]',
               '42["gameStateUpdate",{"connectedPlayers":3']
    names += ["standard/newTrade", "gameStateUpdate", "gameStateUpdate"]
    n = len(frames)
    rows = pa.table({"raw_json": frames, "event_name": names, "frame_kind": ["event"] * n,
                     "ts": pa.array([0] * n, pa.timestamp("us", tz="UTC")), "seq": list(range(n))})
    out = versions.fill_typed_columns(rows)
    assert out.schema.equals(schema.SCHEMA) and out["raw_json"].to_pylist() == frames, "rows kept, in order"
    expected = [_expected_typed(raw, name) for raw, name in zip(frames[:-1], names[:-1])]
    expected.append(dict.fromkeys(expected[0]))  # the cut frame: nothing, and no error
    for t in versions.TYPED:
        got = out[t.column].to_pylist()
        if t.column == "partial_prices":
            got = [None if v is None else json.loads(v) for v in got]
        assert got == [e[t.column] for e in expected], t.column
    for column in ("connected_players", "level", "tick", "partial_prices", "history_games", "snapshot_ticks"):
        assert any(e[column] is not None for e in expected), f"the frames hold no {column}"
    assert {"active", "rugged", "cooldown", "presale"} <= {e["phase"] for e in expected}
    assert {e["event_args"] for e in expected[:-1]} == {1, 2}


def test_each_version_fills_only_its_own_columns() -> None:
    """A migration step computes its version's typed columns; landing computes them all."""
    rows = pa.table({"raw_json": ['42["gameStateUpdate",{"connectedPlayers":3,"tickCount":4}]'],
                     "event_name": ["gameStateUpdate"], "frame_kind": ["event"]})
    v1_1, v1_2 = versions.BY_VERSION["1.1.0"], versions.BY_VERSION["1.2.0"]
    assert v1_1.upgrade_ws_event(rows).select(["connected_players", "tick"]).to_pylist() == [
        {"connected_players": 3, "tick": None}]
    assert v1_2.upgrade_ws_event(rows).select(["connected_players", "tick"]).to_pylist() == [
        {"connected_players": None, "tick": 4}]


# --- a real store at 1.1.0, and the same store at 1.0.0 ----------------------------------------


def _golden_and_the_next_day(folder: Path) -> list[Path]:
    """The golden day, and the same feed a day later (its times and game ids a day on): two days of data."""
    plain = unpacked_golden(folder)
    day, next_day = golden.START.strftime("%Y%m%d"), (golden.START + timedelta(days=1)).strftime("%Y%m%d")
    later = []
    for line in plain.read_text().splitlines():
        obj = json.loads(line.replace(f'"{day}-', f'"{next_day}-'))
        obj["ts"] = (datetime.fromisoformat(obj["ts"]) + timedelta(days=1)).isoformat()
        later.append(json.dumps(obj) + "\n")
    (folder / "next_day.jsonl").write_text("".join(later))
    return [plain, folder / "next_day.jsonl"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """Two days of recordings (the golden day and a copy of it a day later) imported, landed and derived by
    this (1.1.0) code."""
    root = tmp_path_factory.mktemp("reference") / "rugs_data"
    reports = import_recordings(_golden_and_the_next_day(root.parent), Store(root).spool_dir)
    days = sorted({seg.day for r in reports for seg in r.segments})
    assert len(days) >= 2
    for day in days:  # every day lands before any derives: a day's games read the next day
        assert run_job("land_ws_event", root, day).success
    for day in days:
        assert run_job("rederive", root, day).success
    return root


@pytest.fixture()
def old_store(reference: Path, tmp_path: Path) -> Path:
    root = tmp_path / "rugs_data"
    shutil.copytree(reference, root)
    downgrade(root)
    return root


def _manifest_version(root: Path) -> str:
    return json.loads((root / "manifests" / "schema_version.json").read_text())["version"]


def _same_files(root: Path, reference: Path) -> None:
    assert parquet_files(root) == parquet_files(reference)
    for rel in parquet_files(root):
        got, want = pq.read_table(root / rel), pq.read_table(reference / rel)
        assert file_schema_version(root / rel) == schema.SCHEMA_VERSION, rel
        assert got.equals(want), rel


def _days(root: Path) -> list[str]:
    return migration.days_to_migrate(Store(root))


def test_derived_datasets_fill_the_new_columns_from_their_frames(reference: Path) -> None:
    con = consumers.connect(reference, require="1.1.0")
    ticks = con.execute("SELECT raw_json, connected_players, game_version FROM game_tick "
                        "WHERE tick_source = 'observed'").fetchall()
    assert ticks and [(c, v) for _, c, v in ticks] == [
        (_payload("[" + raw + "]").get("connectedPlayers"), _payload("[" + raw + "]").get("gameVersion"))
        for raw, _, _ in ticks]
    assert any(c is not None for _, c, _ in ticks)
    trades = con.execute("SELECT raw_json, bonus_portion, real_portion, level FROM player_action "
                         "WHERE event_name = 'standard/newTrade'").fetchall()
    assert trades and all((b, r, lv) == (json.loads(raw).get("bonusPortion"), json.loads(raw).get("realPortion"),
                                         json.loads(raw).get("level")) for raw, b, r, lv in trades)
    board = con.execute("SELECT raw_json, level FROM server_state WHERE event_name = 'final_leaderboard'").fetchall()
    assert board and all(lv == json.loads(raw).get("level") for raw, lv in board)
    histories = con.execute("SELECT raw_json, game_version FROM complete_game").fetchall()
    assert histories and all(v == json.loads(raw).get("gameVersion") for raw, v in histories)
    frames = con.execute("SELECT raw_json, connected_players FROM ws_event WHERE event_name = 'gameStateUpdate'").fetchall()
    assert all(c == _payload(raw).get("connectedPlayers") for raw, c in frames)


# --- the migration -------------------------------------------------------------------------------

def test_migration_job_rewrites_a_10_store_into_the_store_11_code_writes(old_store: Path, reference: Path) -> None:
    days = _days(old_store)
    assert days == sorted({rel.parts[2].removeprefix("date=") for rel in parquet_files(reference)})
    with pytest.raises(SchemaVersionError) as refused:
        consumers.connect(old_store, require="1.1.0")
    message = str(refused.value)
    assert "\n" not in message and "schema_version.json" in message and "rugs-pipeline migrate" in message

    for n, day in enumerate(days):
        assert _manifest_version(old_store) == "1.0.0", "the manifest moves only once every day is migrated"
        result = run_job("migrate_schema", old_store, day)
        assert result.success
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert "schema_migration" in materialized and set(schema.DOC_TYPES) - {"ws_event"} <= materialized
        assert _days(old_store) == days[n + 1:]
    assert _manifest_version(old_store) == schema.SCHEMA_VERSION
    assert Store(old_store).read_manifest()["fields"] == schema.manifest_fields()
    _same_files(old_store, reference)
    consumers.connect(old_store, require="1.1.0")

    # a re-run changes nothing
    stamps = {rel: (old_store / rel).stat().st_mtime_ns for rel in parquet_files(old_store) if "ws_event" in str(rel)}
    assert run_job("migrate_schema", old_store, days[0]).success
    assert {rel: (old_store / rel).stat().st_mtime_ns for rel in stamps} == stamps


def _seed(root: Path, n: int) -> list[tuple]:
    return duckdb.connect().execute(SEED_QUERIES[n].format(root=root)).fetchall()


def test_seed_queries_run_unchanged_on_10_11_and_migrated_stores(old_store: Path, reference: Path) -> None:
    before = [_seed(old_store, n) for n in range(2)]
    assert before[0] and before[1]
    v10_columns = len(V1_0.schema) + 1  # + the hive partition column date
    assert len(before[0][0]) == v10_columns
    fresh = [_seed(reference, n) for n in range(2)]
    assert len(fresh[0][0]) == len(schema.SCHEMA) + 1
    assert fresh[1] == before[1]
    for day in _days(old_store):
        assert run_job("migrate_schema", old_store, day).success
    assert [_seed(old_store, n) for n in range(2)] == fresh


def test_a_10_consumer_reads_11_data(old_store: Path, reference: Path) -> None:
    """Code that knows 1.x and reads only 1.0.0's columns gets the same answers from 1.1.0 files."""
    assert _answers(reference) == _answers(old_store)
    for rel in parquet_files(reference):
        assert pq.read_table(reference / rel, columns=V1_0.schema.names).schema.equals(V1_0.schema, check_metadata=False)


def _answers(root: Path) -> dict[str, list[tuple]]:
    """What a consumer asks of every doc_type, on 1.0.0's columns, through consumers.connect()."""
    con = consumers.connect(root)
    cols = ", ".join(V1_0.schema.names)
    return {d: con.execute(f"SELECT {cols} FROM {d} ORDER BY ALL").fetchall() for d in schema.DOC_TYPES}


def _raw_glob_is_right_or_refuses(root: Path, reference: Path) -> None:
    """During a migration a raw glob may fail with DuckDB's schema mismatch, never give a wrong row."""
    want = {row[:len(V1_0.schema)] for row in duckdb.connect().execute(
        SEED_QUERIES[0].replace(" LIMIT 100", "").format(root=reference)).fetchall()}
    try:
        got = duckdb.connect().execute(SEED_QUERIES[0].format(root=root)).fetchall()
    except duckdb.InvalidInputException as exc:
        assert "schema mismatch in glob" in str(exc)
    else:
        assert got and {row[:len(V1_0.schema)] for row in got} <= want
    assert _seed(root, 1) == _seed(reference, 1), "a query of 1.0.0's columns binds in every file"


def test_a_half_migrated_store_never_answers_wrong(old_store: Path, reference: Path) -> None:
    days = _days(old_store)
    want = _answers(reference)
    assert run_job("migrate_schema", old_store, days[0]).success
    assert _manifest_version(old_store) == "1.0.0" and _days(old_store) == days[1:]
    assert _answers(old_store) == want
    con = consumers.connect(old_store)
    mixed = con.execute("SELECT count(*) FILTER (WHERE connected_players IS NOT NULL), count(*) FROM ws_event "
                        "WHERE event_name = 'gameStateUpdate' AND date = ?", [days[0]]).fetchone()
    assert 0 < mixed[0] <= mixed[1], "union_by_name binds the new column: migrated days have it"
    _raw_glob_is_right_or_refuses(old_store, reference)


def test_migrate_cli_killed_mid_run_leaves_10_manifest_and_a_rerun_finishes(old_store: Path, reference: Path,
                                                                            tmp_path: Path) -> None:
    env = {**os.environ, "RUGS_DATA_DIR": str(old_store), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    days = _days(old_store)
    cli = [str(REPO_ROOT / ".venv" / "bin" / "rugs-pipeline"), "migrate"]
    proc = subprocess.Popen(cli, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while len(_days(old_store)) == len(days):  # SIGKILL as soon as the first day is migrated
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()[-3000:]
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    left = _days(old_store)
    assert 0 < len(left) < len(days), "killed part-way"
    assert _manifest_version(old_store) == "1.0.0"
    assert _answers(old_store) == _answers(reference)
    _raw_glob_is_right_or_refuses(old_store, reference)

    out = subprocess.run(cli + ["--dry-run"], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and f"{len(left)} day(s)" in out.stdout and all(d in out.stdout for d in left)
    out = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"store at schema {schema.SCHEMA_VERSION}" in out.stdout
    assert _manifest_version(old_store) == schema.SCHEMA_VERSION
    _same_files(old_store, reference)


def test_manifest_left_behind_by_a_crash_after_the_last_day_is_finished_by_a_rerun(old_store: Path,
                                                                                  reference: Path) -> None:
    for day in _days(old_store):
        assert run_job("migrate_schema", old_store, day).success
    # the crash: every file migrated, the manifest not yet written
    manifest = json.loads((old_store / "manifests" / "schema_version.json").read_text())
    manifest.update(version="1.0.0", fields=schema.manifest_fields(V1_0.schema))
    (old_store / "manifests" / "schema_version.json").write_text(json.dumps(manifest))
    assert _days(old_store) == [] and migration.finish(Store(old_store))
    assert _manifest_version(old_store) == schema.SCHEMA_VERSION


# --- the writer and the checks on a store at 1.0.0 --------------------------------------------

def _segment(root: Path, session: str, payloads: list[dict], start_ns: int) -> None:
    frames = [encode_event("gameStateUpdate", p) for p in payloads]
    records = [spool.SpoolRecord(i + 1, start_ns + i, spool.KIND_FRAME, f) for i, f in enumerate(frames)]
    spool.write_sealed_segment(Store(root).spool_dir, spool.SegmentHeader(session, "public_ws"), records)


def _noon_ns(day: str) -> int:
    return int(datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp()) * 10**9


def test_11_writer_adds_11_files_to_a_10_store_and_the_check_says_how_to_migrate(old_store: Path) -> None:
    day = _days(old_store)[0]
    store = Store(old_store)
    assert store.ensure_manifest()["version"] == "1.0.0", "same major: written to, not refused, not bumped"
    old = {p.name for p in store.partition_files("ws_event", day)}
    _segment(old_store, "late", [{"gameId": day.replace("-", "") + "-feedfeedfeedfeed", "connectedPlayers": 42}],
             _noon_ns(day))
    result = run_job("land_and_derive", old_store, day)
    assert result.success, "old files are valid: the blocking checks pass"
    new = {p.name: file_schema_version(p) for p in store.partition_files("ws_event", day) if p.name not in old}
    assert list(new.values()) == [schema.SCHEMA_VERSION]
    assert store.read_partition("ws_event", day).filter(
        pc.equal(store.read_partition("ws_event", day)["session_id"], "late"))["connected_players"].to_pylist() == [42]
    evaluations = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    assert all(e.passed for (_, name), e in evaluations.items() if name == "schema_valid")
    current = evaluations["ws_event", "schema_current"]
    assert not current.passed and current.metadata["old_files"].value >= len(old)
    assert f"ws_event {len(old)} at 1.0.0" in current.description
    assert "migrate_schema" in current.description and "rugs-pipeline migrate" in current.description
    assert _manifest_version(old_store) == "1.0.0"
    assert "partly migrated" in current.description


@pytest.mark.parametrize("version", ["1.3.0", "2.0.0", "0.9.0", "one"])
def test_writer_refuses_a_newer_minor_or_another_major_in_one_line(tmp_path: Path, version: str) -> None:
    store = Store(tmp_path)
    store.ensure_manifest()
    store.manifest_path.write_text(json.dumps({"version": version}))
    with pytest.raises(SchemaVersionError) as refused:
        store.ensure_manifest()
    assert "\n" not in str(refused.value) and repr(version) in str(refused.value)
    assert json.loads(store.manifest_path.read_text()) == {"version": version}


def test_landing_writes_the_typed_columns(tmp_path: Path) -> None:
    store = Store(tmp_path)
    payloads = [{"gameId": "20251207-aaaaaaaaaaaaaaaa", "connectedPlayers": n, "gameVersion": f"v{n}"} for n in range(3)]
    _segment(tmp_path, "s1", payloads, _noon_ns("2025-12-07"))
    landing.land_day(store, "2025-12-07")
    table = store.read_partition("ws_event", "2025-12-07")
    assert table["connected_players"].to_pylist() == [p["connectedPlayers"] for p in payloads]
    assert table["game_version"].to_pylist() == [p["gameVersion"] for p in payloads]


def test_compaction_of_a_mixed_day_gives_the_old_rows_the_new_columns(old_store: Path, reference: Path) -> None:
    from rugs_pipeline.store.compaction import compact_day

    day = _days(old_store)[0]
    store = Store(old_store)
    _segment(old_store, "late", [{"gameId": day.replace("-", "") + "-feedfeedfeedfeed", "connectedPlayers": 42}],
             _noon_ns(day))
    landing.land_day(store, day)
    assert {file_schema_version(p) for p in store.partition_files("ws_event", day)} == {"1.0.0", schema.SCHEMA_VERSION}
    compact_day(store, day)
    assert {file_schema_version(p) for p in store.partition_files("ws_event", day)} == {schema.SCHEMA_VERSION}
    merged = store.read_partition("ws_event", day)
    key = ["session_id", "seq"]
    old_rows = merged.filter(pc.not_equal(merged["session_id"], "late")).sort_by([(k, "ascending") for k in key])
    assert old_rows.equals(Store(reference).read_partition("ws_event", day).sort_by([(k, "ascending") for k in key]))
    assert migration.old_files(store, "ws_event", day) == []
