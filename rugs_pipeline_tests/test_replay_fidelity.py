"""Real recordings and REPLAYER games served live by the simulator, recorded, landed and rebuilt:
what comes back is what the files say. And the simulator's own games look like the real ones.

Real processes: ``rugs-pipeline simulate --replay FILE...`` (it serves from the first client's
connect and exits after the last file) -> ``rugs-pipeline record`` -> landing -> the games'
derivation as the assets run it (``game_frames`` of each day, then ``rebuild_games``).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
from pathlib import Path

import numpy as np

from rugs_pipeline.defs.games import game_frames
from rugs_pipeline.derive.datasets import derive
from rugs_pipeline.derive.games import rebuild_games
from rugs_pipeline.simulator import games as generator
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import (
    CLI, FIXTURES, check_ended_games_match_the_recording, read_events, received, recorded_games, rows_by_game,
    start_recorder, stop,
)


SERVE_TIMEOUT_S = 240


def serve_and_record(files: list[Path], data: Path, speed: float, tmp_path: Path) -> tuple[Store, list[str], str]:
    """Replay ``files`` through the simulator into a recorder; returns the store, the landed days and
    the simulator's log."""
    log = tmp_path / "simulator.log"
    with open(log, "w") as err:
        sim = subprocess.Popen([CLI, "simulate", "--port", "0", "--speed", str(speed), "--replay", *map(str, files)],
                               stdout=subprocess.PIPE, stderr=err, text=True)
    url = re.search(r"(ws://\S+)", sim.stdout.readline()).group(1)
    recorder = start_recorder(url, {**os.environ, "RUGS_DATA_DIR": str(data)})
    assert sim.wait(timeout=SERVE_TIMEOUT_S) == 0, log.read_text()[-2000:]  # served the last file, then exited
    assert stop(recorder) == 0
    store = Store(data)
    days = sorted({seg.parent.name for seg in store.spool_dir.rglob("*.seg")})
    for day in days:
        landing.land_day(store, day)
    return store, days, log.read_text()


def game_rows(store: Store, days: list[str]) -> tuple[list[dict], list[dict]]:
    """game_tick and complete_game rows of the days, derived the way the assets derive them."""
    ticks, records = [], []
    for day in days:
        tables = rebuild_games(game_frames(store, day), day)
        ticks += tables["game_tick"].to_pylist()
        records += tables["complete_game"].to_pylist()
    return ticks, records


def test_every_recording_replayed_live_comes_back_as_recorded(real_dir, tmp_path):
    fixtures = {name: (sorted(real_dir.glob(pattern)), tz) for name, (pattern, tz) in FIXTURES.items()}
    files = [f for paths, _ in fixtures.values() for f in paths]
    store, days, _ = serve_and_record(files, tmp_path / "data", 25, tmp_path)
    ticks, records = game_rows(store, days)
    assert len({(r["game_id"], r["tick"]) for r in ticks}) == len(ticks)
    assert len({r["game_id"] for r in records}) == len(records)
    recorded_trades = set()
    for name, (paths, tz) in fixtures.items():
        events = [e for path in paths for e in read_events(path, tz)]
        assert check_ended_games_match_the_recording(ticks, recorded_games(events)) > 0, name
        recorded_trades |= {e["payload"]["id"] for e in received(events, "standard/newTrade") if "id" in e["payload"]}
    trades = {r["trade_id"] for day in days for r in derive("player_action", store.read_partition("ws_event", day)).to_pylist()
              if r["event_name"] == "standard/newTrade"}
    assert trades == recorded_trades and trades


def replayer_path(path: Path) -> tuple[str | None, dict[int, float], int | None, int]:
    """(game id, tick -> price up to the rug, rug tick, unreadable lines) as the file says, read with json."""
    gid, prices, rug, bad = None, {}, None, 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if record.get("type") != "tick":
            continue
        gid = record["game_id"]
        if rug is None and (record["active"] or record["rugged"]):
            prices.setdefault(record["tick"], record["price"])
            if record["rugged"]:
                rug = record["tick"]
    return gid, prices, rug, bad


def test_replayer_games_served_live_come_back_unchanged(real_dir, tmp_path):
    files = sorted((real_dir / "replayer_games").glob("game_*.jsonl"))
    assert len(files) == 200
    store, days, log = serve_and_record(files, tmp_path / "data", 1000, tmp_path)
    ticks, records = game_rows(store, days)
    got = rows_by_game(ticks)
    history = {r["game_id"]: r for r in records}
    paths = [(f, *replayer_path(f)) for f in files]
    for f, gid, prices, rug, bad in paths:
        # the exact path: every tick the file knows, its first price, bit-exact, all seen live
        assert {t: r["price"] for t, r in got.get(gid, {}).items()} == prices, f.name
        assert {r["tick_source"] for r in got.get(gid, {}).values()} <= {"observed"}
        assert [t for t, r in got.get(gid, {}).items() if r["is_rug_tick"]] == ([rug] if rug is not None else [])
        # corrupt lines are reported, one by one, and cost nothing else
        assert len(re.findall(rf"{re.escape(f.name)}:\d+: skipped", log)) == bad, f.name
    assert sum(bad for *_, bad in paths) > 0
    # served in file order
    starts = [min(r["ts"] for r in got[gid].values()) for _, gid, prices, _, _ in paths if prices]
    assert starts == sorted(starts)
    # each ended game's history comes with the next game: its prices when the file knows the whole path
    ended = [(gid, prices, rug) for _, gid, prices, rug, _ in paths if rug is not None]
    assert set(history) == {gid for gid, _, _ in ended[:-1]}
    for gid, prices, rug in ended[:-1]:
        whole = set(prices) == set(range(rug + 1))
        assert history[gid]["tick_count"] == (rug + 1 if whole else None) and history[gid]["seed_verified"], gid


# --- the simulator's own games ---------------------------------------------------------------

ALPHA = 0.01  # the two-sample Kolmogorov-Smirnov test's level
SIMULATED = 2000


def ks_statistic(a, b) -> float:
    """The largest distance between the two samples' empirical distribution functions."""
    a, b = np.sort(a), np.sort(b)
    at = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, at, side="right") / len(a) - np.searchsorted(b, at, side="right") / len(b))))


def ks_bound(n: int, m: int, alpha: float = ALPHA) -> float:
    """The statistic two samples of one distribution exceed with probability ``alpha`` (asymptotic)."""
    return math.sqrt(-math.log(alpha / 2) / 2) * math.sqrt((n + m) / (n * m))


def real_games(real_dir: Path) -> tuple[list[int], list[float]]:
    """Lengths (R + 1) of the REPLAYER games that rug, and peaks of those whose every tick is known."""
    lengths, peaks = [], []
    for f in sorted((real_dir / "replayer_games").glob("game_*.jsonl")):
        _, prices, rug, _ = replayer_path(f)
        if rug is not None:
            lengths.append(rug + 1)
            if set(prices) == set(range(rug + 1)):
                peaks.append(max(prices.values()))
    return lengths, peaks


def simulated_games() -> tuple[np.ndarray, np.ndarray]:
    """Lengths and peaks of the simulator's games: ``price_path``, the process each game is drawn from."""
    paths = [generator.price_path(random.Random(f"ks:{i}"))[0] for i in range(SIMULATED)]
    return np.array([len(p) for p in paths]), np.array([max(p) for p in paths])


def test_simulated_games_are_distributed_like_the_real_ones(real_dir, monkeypatch):
    """Game length and peak of 2,000 simulated games against the 200 REPLAYER games, by a two-sample
    Kolmogorov-Smirnov test at level 0.01: the empirical distribution functions may differ by no more
    than two samples of one distribution would, but for a 1% chance (0.124 for the lengths). The
    generator is seeded, so the verdict is deterministic. The bound has teeth: a rug hazard twice as
    high, or prices without their upward drift, exceed it."""
    lengths, peaks = real_games(real_dir)
    assert len(lengths) > 150 and len(peaks) > 150
    sim_lengths, sim_peaks = simulated_games()
    assert ks_statistic(lengths, sim_lengths) < ks_bound(len(lengths), SIMULATED)
    assert ks_statistic(peaks, sim_peaks) < ks_bound(len(peaks), SIMULATED)

    monkeypatch.setattr(generator, "RUG_HAZARD", 2 * generator.RUG_HAZARD)
    assert ks_statistic(lengths, simulated_games()[0]) > ks_bound(len(lengths), SIMULATED)
    monkeypatch.undo()
    monkeypatch.setattr(generator, "DRIFT_MAX", -generator.DRIFT_MIN)  # symmetric drift: no trend up
    assert ks_statistic(peaks, simulated_games()[1]) > ks_bound(len(peaks), SIMULATED)
