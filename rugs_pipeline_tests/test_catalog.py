"""The feed catalog against a row-at-a-time oracle, on simulator data and the real recordings; bad input;
the consumers' view; the Dagster asset."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from datetime import datetime

import dagster as dg
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rugs_pipeline import consumers
from rugs_pipeline.tools.bench import synth
from rugs_pipeline.formats import spool
from rugs_pipeline.defs.catalog import event_catalog, protocol_drift
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive import catalog, drift
from rugs_pipeline.store import compaction, landing
from rugs_pipeline.store.layout import Store

SIM_FRAMES = 3_000
NEXT_DAY = "2025-11-02"  # the day after synth.DAY


# --- the oracle: every frame of the day, one at a time, straight from the definitions -------------------

def _segment(key: str) -> str:
    if key and all("0" <= c <= "9" for c in key):
        return "*"
    if key and (key[0].isascii() and (key[0].isalpha() or key[0] in "_$")) \
            and all(c.isascii() and (c.isalnum() or c in "_$") for c in key):
        return key
    return "[" + json.dumps(key, ensure_ascii=False) + "]"


def _join(path: str, key: str) -> str:
    seg = _segment(key)
    if seg.startswith("["):
        return path + seg
    return f"{path}.{seg}" if path else seg


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def _nodes(value, path: str = "", depth: int = 0):
    """(path, value) of every node, pre-order, as a person would list them."""
    yield path, value
    if depth >= catalog.MAX_DEPTH:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _nodes(child, _join(path, key), depth + 1)
    elif isinstance(value, list):
        for child in value:
            yield from _nodes(child, path + "[]", depth + 1)


def oracle(store: Store, day: str) -> dict[tuple[str, str], dict]:
    rows = []
    for f in store.partition_files("ws_event", day):
        rows += pq.read_table(f, columns=["ts", "session_id", "seq", "raw_json", "frame_kind", "event_name"]).to_pylist()
    stats: dict[tuple[str, str], dict] = {}
    seen_values: dict[tuple[str, str], list] = defaultdict(list)
    for row in rows:
        if row["frame_kind"] != "event":
            continue
        raw = row["raw_json"]
        args = orjson.loads(raw[raw.index("["):])
        payload = args[-1] if len(args) > 1 else None
        frame = (row["ts"], row["session_id"], row["seq"])
        in_frame = set()
        for pos, (path, value) in enumerate(_nodes(payload)):
            key = (row["event_name"], path)
            s = stats.setdefault(key, {"types": defaultdict(int), "frames": 0, "first": frame, "last": frame})
            s["types"][_json_type(value)] += 1
            if _json_type(value) in ("string", "number", "boolean"):
                text = orjson.dumps(value).decode()
                if len(text) > catalog.EXAMPLE_CHARS:
                    text = text[:catalog.EXAMPLE_CHARS - 3] + "..."
                seen_values[key].append(((frame, pos), text))
            if key not in in_frame:
                in_frame.add(key)
                s["frames"] += 1
                s["first"], s["last"] = min(s["first"], frame), max(s["last"], frame)
    out = {}
    for key, s in stats.items():
        examples = []
        for _, text in sorted(seen_values[key]):
            if text not in examples:
                examples.append(text)
        out[key] = {
            "kind": "event" if key[1] == "" else "field",
            "types": dict(s["types"]),
            "occurrences": sum(s["types"].values()),
            "nulls": s["types"].get("null", 0),
            "frames": s["frames"],
            "examples": examples[:catalog.EXAMPLES],
            "first_ts": s["first"][0], "last_ts": s["last"][0],
            "sample_session_id": s["first"][1], "sample_seq": s["first"][2],
        }
    return out


def as_dict(table) -> dict[tuple[str, str], dict]:
    out = {}
    for row in table.to_pylist():
        key = (row.pop("event_name"), row.pop("path"))
        row["types"] = dict(row["types"])
        out[key] = row
    return out


def assert_matches_oracle(store: Store, day: str) -> dict:
    built = catalog.build_day(store, day)
    ours, theirs = as_dict(built.table), oracle(store, day)
    assert ours.keys() == theirs.keys()
    for key in theirs:
        assert ours[key] == theirs[key], key
    return ours


# --- simulator data -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim_day(tmp_path_factory) -> synth.SyntheticDay:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUGS_BENCH_CACHE", str(tmp_path_factory.mktemp("bench_cache")))
        return synth.synthetic_day(SIM_FRAMES, seed=5)


def test_simulator_day_matches_the_oracle_and_cached_parts_give_the_same(sim_day, tmp_path) -> None:
    store = sim_day.landed_copy(tmp_path / "store")
    ours = assert_matches_oracle(store, synth.DAY)
    assert len(sim_day.files()) > 3  # several files: parts are merged across them
    pu = {path for (event, path) in ours if event == "gameStateUpdate"}
    assert {"", "price", "tickCount", "leaderboard", "leaderboard[]", "leaderboard[].pnl",
            "partialPrices.values.*"} <= pu
    assert ours[("gameStateUpdate", "leaderboard[].pnl")]["occurrences"] > ours[("gameStateUpdate", "")]["frames"]
    # a trace header is not the payload: traced trades are catalogued by their last argument
    assert ("standard/newTrade", "__trace") not in ours and ("standard/newTrade", "tickIndex") in ours
    again = catalog.build_day(store, synth.DAY)
    assert again.walked == 0 and again.files == len(sim_day.files())
    assert as_dict(again.table) == ours


def test_a_field_seen_once_is_in_the_catalog(sim_day, tmp_path) -> None:
    store = sim_day.landed_copy(tmp_path / "store")
    catalog.build_day(store, synth.DAY)
    _land(store, synth.DAY, ['42["gameStateUpdate",{"gameId":"x","onceOnly":{"deep":[{"v":"rare"}]}}]'])
    assert catalog.build_day(store, synth.DAY).walked == 1  # the live day's next run walks the new file only
    ours = assert_matches_oracle(store, synth.DAY)
    row = ours[("gameStateUpdate", "onceOnly.deep[].v")]
    assert (row["occurrences"], row["frames"], row["examples"], row["types"]) == (1, 1, ['"rare"'], {"string": 1})


def test_compaction_keeps_the_state_a_rewritten_file_does_not(sim_day, tmp_path) -> None:
    store = sim_day.landed_copy(tmp_path / "store")
    before = catalog.build_day(store, synth.DAY)
    compaction.compact_day(store, synth.DAY)
    after = catalog.build_day(store, synth.DAY)  # the merged files hold the covered files' rows: nothing to walk
    assert after.walked == 0 and after.files == len(store.partition_files("ws_event", synth.DAY)) < before.files
    assert after.table.equals(before.table) and after.other_frames == before.other_frames
    assert after.frames == before.frames
    rewritten = store.partition_files("ws_event", synth.DAY)[0]  # as a migration rewrites a file in place
    table = pq.read_table(rewritten)
    last_event = max(i for i, kind in enumerate(table["frame_kind"].to_pylist()) if kind == "event")
    pq.write_table(pa.concat_tables([table.slice(0, last_event), table.slice(last_event + 1)]), rewritten)
    again = catalog.build_day(store, synth.DAY)
    assert again.walked == again.files and again.frames < before.frames
    assert as_dict(again.table) == oracle(store, synth.DAY)


# --- the real recordings --------------------------------------------------------------------------------

def test_real_recordings_match_the_oracle(real_store) -> None:
    store, days = real_store
    assert len(days) >= 4
    everything = {}
    for day in days:
        everything.update(assert_matches_oracle(store, day))
    events = {event for event, _ in everything}
    assert {"gameStateUpdate", "standard/newTrade", "playerUpdate", "gameStatePlayerUpdate"} <= events
    assert ("gameStateUpdate", "gameHistory[].globalSidebets[].betAmount") in everything or \
        ("gameStateUpdate", "gameHistory[].globalSidebets[]") in everything


# --- bad input ------------------------------------------------------------------------------------------

def _land(store: Store, day: str, frames: list[str | bytes]) -> None:
    writer = spool.SpoolWriter(store.spool_dir, f"{day.replace('-', '')}T120000Z-catalog{len(frames)}", "public_ws",
                               seal_interval_s=3600, fsync_interval_s=3600)
    for i, text in enumerate(frames):
        writer.append(spool.KIND_FRAME, text, _ns(day) + i * 1000, "received")
    writer.close()
    landing.land_day(store, day)


def _ns(day: str) -> int:
    return int(datetime.fromisoformat(f"{day}T12:00:00+00:00").timestamp() * 1e9)


def test_bad_input_gives_a_catalog(tmp_path) -> None:
    store = Store(tmp_path / "rugs_data")
    store.ensure_manifest()
    empty = catalog.build_day(store, "2026-01-01")  # no file at all
    assert (empty.table.num_rows, empty.frames, empty.files) == (0, 0, 0)
    assert catalog.read_catalog(store, "2026-01-01").num_rows == 0

    _land(store, "2026-01-02", ["not json", '42["x", {', b"\x00\x01binary", "", "9zz"])
    junk = catalog.build_day(store, "2026-01-02")
    assert junk.table.num_rows == 0 and junk.frames == 0
    assert junk.other_frames == {"malformed": 5}

    big = "x" * (15 * 2**20)
    _land(store, "2026-01-03", [f'42["hugeEvent",{{"blob":"{big}","n":[1,null,2]}}]', '42["small",1]'])
    huge = as_dict(catalog.build_day(store, "2026-01-03").table)
    assert huge[("hugeEvent", "blob")]["examples"] == ['"' + "x" * (catalog.EXAMPLE_CHARS - 4) + "..."]
    assert huge[("hugeEvent", "n[]")]["types"] == {"number": 2, "null": 1}
    assert huge[("hugeEvent", "n[]")]["nulls"] == 1
    assert huge[("small", "")]["examples"] == ["1"]


def test_deep_nesting_stops_at_max_depth(tmp_path) -> None:
    store = Store(tmp_path / "rugs_data")
    deep = "[" * 200 + "]" * 200
    _land(store, "2026-01-04", [f'42["deep",{deep}]'])
    ours = assert_matches_oracle(store, "2026-01-04")
    assert max(len(path) for _, path in ours) == 2 * catalog.MAX_DEPTH


def test_frames_out_of_order_and_values_equal_in_python_but_not_in_json(tmp_path, monkeypatch) -> None:
    """The walk goes in frame order (ts, session_id, seq), whatever the file's; examples tell 1, 1.0 and true
    apart, and 0.0 from -0.0; long texts cut to the same example are one example; a file's batches merge."""
    store = Store(tmp_path / "rugs_data")
    day = "2026-01-05"
    long = "a" * (2 * catalog.EXAMPLE_CHARS)
    by_ts = [("0.0", "1", f'"{long}"'), ("-0.0", "1.0", f'"{long}b"'), ("0.0", "true", '"x"'), ("-0.0", "1", '"y"')]
    writer = spool.SpoolWriter(store.spool_dir, "20260105T120000Z-order", "public_ws", seal_interval_s=3600,
                               fsync_interval_s=3600)
    # seq goes up while ts goes down (a clock stepped back): the file's order is not the frames' order
    for i, (z, n, text) in enumerate(reversed(by_ts)):
        writer.append(spool.KIND_FRAME, f'42["mix",{{"z":{z},"n":{n},"s":{text},"a":[{n},{z}]}}]',
                      _ns(day) - i * 1000, "received")
    writer.close()
    landing.land_day(store, day)
    (landed,) = store.partition_files("ws_event", day)
    ts = pq.read_table(landed, columns=["ts"])["ts"].to_pylist()
    assert ts == sorted(ts, reverse=True)
    monkeypatch.setattr(catalog, "READ_BATCH_ROWS", 3)  # two batches: their parts are merged
    ours = assert_matches_oracle(store, day)
    assert ours[("mix", "z")]["examples"] == ["0.0", "-0.0"]
    assert ours[("mix", "n")]["examples"] == ["1", "1.0", "true"]
    assert ours[("mix", "s")]["examples"] == ['"' + "a" * (catalog.EXAMPLE_CHARS - 4) + "...", '"x"', '"y"']
    assert ours[("mix", "a[]")]["examples"] == ["1", "0.0", "1.0"]


# --- the view and the asset -----------------------------------------------------------------------------

def test_view_in_connect_and_the_seed_glob_still_works(real_store) -> None:
    store, days = real_store
    for day in days:
        catalog.build_day(store, day)
    con = consumers.connect(store.root)
    n = con.execute("SELECT count(*) FROM event_catalog WHERE event_name = 'playerUpdate' AND kind = 'field'").fetchone()[0]
    assert n > 5
    assert con.execute("SELECT count(DISTINCT date) FROM event_catalog").fetchone()[0] == len(days)
    glob = str(store.root / "events_parquet" / "**" / "*.parquet")
    rows = con.execute(f"SELECT count(*) FROM '{glob}' WHERE doc_type = 'ws_event' AND event_name = 'gameStateUpdate'"
                       ).fetchone()[0]
    assert rows > 0


def test_empty_store_has_an_empty_view(tmp_path) -> None:
    store = Store(tmp_path / "rugs_data")
    store.ensure_manifest()
    assert consumers.connect(store.root).execute("SELECT count(*) FROM event_catalog").fetchone()[0] == 0


def test_asset_materialises_with_counts(sim_day, tmp_path) -> None:
    store = sim_day.landed_copy(tmp_path / "store")
    result = dg.materialize([event_catalog], partition_key=synth.DAY, instance=dg.DagsterInstance.ephemeral(),
                            resources={"store": StoreResource(data_dir=str(store.root))})
    assert result.success
    meta = result.asset_materializations_for_node("event_catalog")[0].metadata
    table = catalog.read_catalog(store, synth.DAY)
    assert meta["events"].value == len(set(table["event_name"].to_pylist())) > 5
    assert meta["paths"].value == table.num_rows - meta["events"].value > 50
    assert meta["event_frames"].value > 0.9 * SIM_FRAMES


# --- protocol drift --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def drift_day(tmp_path_factory) -> synth.SyntheticDay:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUGS_BENCH_CACHE", str(tmp_path_factory.mktemp("bench_cache_drift")))
        return synth.synthetic_day(SIM_FRAMES, seed=5, drift=True)


def test_simulated_protocol_change_is_named(sim_day, drift_day, tmp_path) -> None:
    base = catalog.build_day(sim_day.landed_copy(tmp_path / "a"), synth.DAY).table
    changed = catalog.build_day(drift_day.landed_copy(tmp_path / "b"), synth.DAY).table
    assert drift.compare(base, [base]) == []
    found = {(c.kind, c.event, c.path, c.before, c.now) for c in drift.compare(changed, [base])}
    assert ("new event", "marketPulse", "", "", "object") in found
    assert ("new path", "gameStateUpdate", "serverRegion", "", "string") in found
    assert ("type changed", "gameStateUpdate", "price", "number", "string") in found
    assert ("path not seen", "gameStateUpdate", "connectedPlayers", "number", "") in found
    assert len(found) == 4, found


def test_drift_check_in_dagster_baseline_then_warns(sim_day, drift_day, tmp_path) -> None:
    store = sim_day.landed_copy(tmp_path / "store")
    later = store.partition_dir("ws_event", NEXT_DAY)
    later.mkdir(parents=True)
    for f in drift_day.files():
        os.link(f, later / f.name)
    instance = dg.DagsterInstance.ephemeral()
    results = {}
    for day in (synth.DAY, NEXT_DAY):
        run = dg.materialize([event_catalog, protocol_drift], partition_key=day, instance=instance,
                             resources={"store": StoreResource(data_dir=str(store.root))})
        assert run.success
        (results[day],) = run.get_asset_check_evaluations()
    assert results[synth.DAY].passed and "baseline" in results[synth.DAY].description
    warned = results[NEXT_DAY]
    assert not warned.passed and warned.severity == dg.AssetCheckSeverity.WARN
    table = warned.metadata["drift"].value
    for expected in ("| new event | `marketPulse` |", "| new path | `gameStateUpdate` | `serverRegion` |",
                     "| type changed | `gameStateUpdate` | `price` | number | string |",
                     "| path not seen | `gameStateUpdate` | `connectedPlayers` | number |"):
        assert expected in table
