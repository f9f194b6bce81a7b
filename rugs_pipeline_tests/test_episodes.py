"""Training episodes (``consumers.episodes``) and the reference sidebet environment (``rugs_pipeline.rl``).

Expectations are computed here from what the feed said, read with plain ``json`` (``recorded_games``),
and the sidebet rule from RUGS_FEED.md written out per case, never from the code's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from gymnasium.utils.env_checker import check_env

from rugs_pipeline.tools.bench import derivation, synth
from rugs_pipeline.consumers import episodes
from rugs_pipeline.rl import OBSERVATION, SIDEBET, WAIT, SidebetEnv, split_by_date
from rugs_pipeline.store.layout import SchemaVersionError, Store
from rugs_pipeline.testing import recorded_games

from .conftest import REPO_ROOT

SIM_FRAMES = 20_000  # ~45 simulated games


# --- what the feed said, per game ------------------------------------------------------------


def expected_episodes(events: list[dict]) -> dict[str, dict]:
    """game_id -> the episode row it must give: every game whose ticks 0..R the frames all tell."""
    out = {}
    for gid, g in recorded_games(events).items():
        ticks, r = g.expected_ticks(), g.rug_tick
        if r is None or set(ticks) != set(range(r + 1)):
            continue
        prices = [ticks[t]["price"] for t in range(r + 1)]
        seed = (g.history or {}).get("provablyFair", {})
        announced = g.announced[0] if g.announced else seed.get("serverSeedHash")
        verified = hashlib.sha256(seed["serverSeed"].encode()).hexdigest() == announced if g.history else None
        tick0 = [c for c in g.candidates[0] if c[0] == 0]  # observed tick 0 frames
        out[gid] = {"rug_tick": r, "prices": prices, "peak": max(prices), "final_price": prices[-1],
                    "server_seed_verified": verified, "start_ts": min(c[3]["ts"] for c in tick0) if tick0 else None}
    return out


def check_episodes(table: pa.Table, expected: dict[str, dict]) -> None:
    rows = {r["game_id"]: r for r in table.to_pylist()}
    assert len(rows) == table.num_rows, "one row per game"
    assert set(rows) == set(expected)
    for gid, want in expected.items():
        assert {k: rows[gid][k] for k in want} == want, gid


def _events_of(store: Store, day: str) -> list[dict]:
    """The stored frames as test_derive.read_events gives a recording's events, in the store's order."""
    frames = store.read_partition("ws_event", day).sort_by([("ts", "ascending"), ("session_id", "ascending"),
                                                             ("seq", "ascending")])
    events = []
    for row in frames.select(["ts", "direction", "raw_json", "frame_kind"]).to_pylist():
        if row["frame_kind"] != "event":
            continue
        args = json.loads(row["raw_json"][row["raw_json"].index("["):])
        events.append({"name": args[0], "ts": row["ts"], "direction": row["direction"], "args": tuple(args[1:]),
                       "payload": args[-1]})
    return events


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A simulator day (the bench's synthetic day, virtual clock) landed and derived by the Dagster assets."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUGS_BENCH_CACHE", str(tmp_path_factory.mktemp("bench_cache")))
        day = synth.synthetic_day(SIM_FRAMES, seed=5)
    root = tmp_path_factory.mktemp("sim") / "rugs_data"
    derivation.pipeline_derive(day.files(), root)
    return root, _events_of(Store(root), synth.DAY)


def test_episodes_of_a_simulator_day_are_its_complete_games(sim) -> None:
    root, events = sim
    table = episodes(synth.DAY, synth.DAY, data_dir=root)
    expected = expected_episodes(events)
    assert len(expected) >= 20
    check_episodes(table, expected)
    assert set(table["date"].to_pylist()) == {date.fromisoformat(synth.DAY)}
    versions = {e["payload"]["gameId"]: e["payload"]["gameVersion"] for e in events
                if e["name"] == "gameStateUpdate" and "gameVersion" in e["payload"]}
    assert all(r["game_version"] == versions[r["game_id"]] for r in table.to_pylist() if r["game_id"] in versions)
    # the store's own dedup: the unfinished last game is in games but not an episode
    assert episodes(date.fromisoformat(synth.DAY), data_dir=root).equals(table)


def test_episodes_of_the_real_recordings(real, tmp_path) -> None:
    run = real("raw")
    store = Store(tmp_path / "rugs_data")
    store.ensure_manifest()
    for day in run.days:
        for doc_type in ("game_tick", "games"):
            store.replace_partition(doc_type, day, run.derived[day][doc_type])
    table = episodes(run.days[0], run.days[-1], data_dir=store.root)
    expected = expected_episodes(run.events)
    assert len(expected) >= 5
    check_episodes(table, expected)


def test_episodes_refuse_bad_ranges_and_stores(sim, tmp_path) -> None:
    root, _ = sim
    with pytest.raises(ValueError, match=r"no games derived in .* for 2025-05-01 to 2025-05-02: it holds games of "
                                         rf"{synth.DAY} to {synth.DAY} \(1 days\)"):
        episodes("2025-05-01", "2025-05-02", data_dir=root)
    with pytest.raises(ValueError, match="end 2025-05-31 is before start 2025-06-01"):
        episodes("2025-06-01", "2025-05-31", data_dir=root)
    with pytest.raises(ValueError, match=r"start='06/01/2025' is not a day like"):
        episodes("06/01/2025", data_dir=root)
    with pytest.raises(SchemaVersionError, match="not a rugs_pipeline store"):
        episodes("2025-06-01", data_dir=tmp_path)
    store = Store(tmp_path)
    store.ensure_manifest()
    with pytest.raises(ValueError, match="no games derived in .*backfill --from 2025-06-01 --to 2025-06-01 --land"):
        episodes("2025-06-01", data_dir=tmp_path)
    # games there, but none with every tick known (the simulator day's unfinished last game only)
    games = Store(root).read_partition("games", synth.DAY)
    unfinished = games.filter(pc.not_equal(games["message"], "complete"))
    assert unfinished.num_rows >= 1
    store.replace_partition("games", synth.DAY, unfinished)
    with pytest.raises(ValueError, match=f"no complete games in .* for {synth.DAY} .every game there lacks some tick"):
        episodes(synth.DAY, data_dir=tmp_path)
    manifest = json.loads(store.manifest_path.read_text())
    store.manifest_path.write_text(json.dumps({**manifest, "version": "2.0.0"}))
    with pytest.raises(SchemaVersionError, match="'2.0.0' is not readable"):
        episodes("2025-06-01", data_dir=tmp_path)


# --- the environment -------------------------------------------------------------------------


def _game(gid: str, rug: int, day: str = "2025-12-01", seed: int = 0) -> dict:
    """A hand-built episode: a random walk from 1.0, the crash price at its rug tick."""
    walk = np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.03, rug)))
    return {"game_id": gid, "date": date.fromisoformat(day), "prices": [1.0, *walk[:-1].tolist(), 0.01]}


def play(env: SidebetEnv, game_id: str, bets: set[int], seed: int | None = None) -> list[tuple]:
    """(tick shown, observation, reward, info) per step, placing a sidebet at each tick in ``bets``."""
    obs, info = env.reset(seed=seed, options={"game_id": game_id})
    steps, terminated = [(0, obs, 0.0, info)], False
    while not terminated:
        obs, reward, terminated, truncated, info = env.step(SIDEBET if steps[-1][0] in bets else WAIT)
        assert not truncated and env.observation_space.contains(obs)
        steps.append((info["tick"], obs, reward, info))
    return steps


def test_the_env_passes_gymnasiums_checker(sim) -> None:
    root, _ = sim
    for env in (SidebetEnv(episodes(synth.DAY, data_dir=root)), SidebetEnv([_game("a", 3), _game("b", 90, seed=1)])):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            check_env(env, skip_render_check=True)
        # an unbounded Box is the truth (log prices, returns): the checker's two advisories about it, nothing else
        assert all("infinity" in str(w.message) for w in caught), [str(w.message) for w in caught]


# The rule (RUGS_FEED.md): a sidebet placed at tick s covers s..s+40 and wins 5x its stake when R <= s+40.
# Each case: rug tick, ticks a sidebet is asked for, and the (tick shown, reward) of each resolution.
RULE_CASES = {
    "win at the window's last tick": (40, {0}, [(40, 4.0)]),
    "lost one tick past the window": (41, {0}, [(40, -1.0)]),
    "placed on the tick before the rug": (10, {9}, [(10, 4.0)]),
    "one at a time, then the next": (100, {0, 10, 40, 80}, [(40, -1.0), (80, -1.0), (100, 4.0)]),
    "a wait only": (30, set(), []),
    "placed late, rug far away": (500, {300}, [(340, -1.0)]),
}


@pytest.mark.parametrize("case", list(RULE_CASES))
def test_the_sidebet_rule_on_hand_built_games(case) -> None:
    rug, bets, outcomes = RULE_CASES[case]
    env = SidebetEnv([_game("g", rug)])
    steps = play(env, "g", bets)
    assert [t for t, *_ in steps] == list(range(rug + 1)), "one step per tick, ending at the rug"
    assert [(t, r) for t, _, r, _ in steps if r] == outcomes
    assert [(t, i["sidebet"]) for t, _, _, i in steps if "sidebet" in i] == [
        (t, "won" if r > 0 else "lost") for t, r in outcomes]
    ignored = [t - 1 for t, _, _, i in steps if i.get("ignored")]
    assert ignored == ([10] if case == "one at a time, then the next" else [])
    assert steps[-1][3]["rug_tick"] == rug
    # the observation tells a running sidebet and the share of its window left
    active, left = OBSERVATION.index("sidebet_active"), OBSERVATION.index("sidebet_left")
    running = {t: obs[left] for t, obs, _, _ in steps if obs[active]}
    if case == "placed late, rug far away":
        assert running == {t: np.float32((340 - t) / 40) for t in range(301, 340)}


def test_the_sidebet_rule_agrees_with_the_servers_payouts(real) -> None:
    """Each sidebet the server settled in a recorded game, placed at its start tick in the env, gets the
    server's profit per stake as its reward (5x back on a win, the stake lost otherwise)."""
    run = real("raw")
    table = pa.concat_tables([run.derived[d]["game_tick"] for d in run.days])
    games = {}
    for row in table.select(["game_id", "tick", "price"]).to_pylist():
        games.setdefault(row["game_id"], {})[row["tick"]] = row["price"]
    env = SidebetEnv([{"game_id": g, "prices": [t[i] for i in range(len(t))]} for g, t in games.items()
                      if set(t) == set(range(len(t))) and len(t) > 1])
    payouts = {s["id"]: s for g in recorded_games(run.events).values() if g.history and g.game_id in env.game_ids
               for s in g.history.get("globalSidebets") or [] if s.get("type") == "payout"}
    assert len(payouts) >= 20 and {s["endTick"] - s["startTick"] for s in payouts.values()} == {40}
    won = 0
    for s in payouts.values():
        steps = play(env, s["gameId"], {s["startTick"]})
        ((tick, reward),) = [(t, r) for t, _, r, i in steps if "sidebet" in i]
        assert reward == pytest.approx(s["profit"] / s["betAmount"]), s
        assert tick == (len(steps) - 1 if reward > 0 else s["endTick"]), s
        won += reward > 0
    assert 0 < won < len(payouts), "the recording holds both outcomes"


def test_no_look_ahead() -> None:
    """Two games equal up to tick k and different after: the same observations and rewards up to k."""
    rng = np.random.default_rng(7)
    for k in rng.integers(1, 260, size=40):
        a, b = _game("a", 300, seed=int(k)), _game("b", int(k) + int(rng.integers(1, 80)), seed=int(k))
        b["prices"] = a["prices"][:k + 1] + [p * 1.7 for p in b["prices"][k + 1:]]
        env = SidebetEnv([a, b])
        bets = set(rng.integers(0, k + 1, size=3).tolist())
        sa, sb = play(env, "a", bets), play(env, "b", bets)
        for (ta, oa, ra, _), (tb, ob, rb, _) in zip(sa[:k + 1], sb[:k + 1]):
            assert ta == tb and ra == rb and oa.tobytes() == ob.tobytes(), (k, ta)
        assert sa[k + 1][1].tobytes() != sb[k + 1][1].tobytes(), "tick k+1 differs (the test can fail)"


def test_reset_is_deterministic(sim) -> None:
    root, _ = sim
    table = episodes(synth.DAY, data_dir=root)
    rng = np.random.default_rng(3)
    bets = set(rng.integers(0, 60, size=5).tolist())

    def trajectory(env: SidebetEnv, seed: int, game_id: str | None = None) -> list:
        obs, info = env.reset(seed=seed, options={"game_id": game_id} if game_id else None)
        steps = play(env, info["game_id"], bets)
        return [info["game_id"], obs.tobytes()] + [(t, o.tobytes(), r) for t, o, r, _ in steps]

    one, two = SidebetEnv(table), SidebetEnv(pl.from_arrow(table))  # polars works as well
    assert trajectory(one, 11) == trajectory(two, 11)
    assert len({trajectory(one, s)[0] for s in range(20)}) > 5, "seeds draw different games"
    gid = table["game_id"][7].as_py()
    assert {trajectory(one, s, gid)[0] for s in range(3)} == {gid}
    with pytest.raises(ValueError, match="game_id 'nope' is not among this env's"):
        one.reset(options={"game_id": "nope"})


def test_split_by_date_puts_no_game_on_both_sides() -> None:
    days = [f"2025-12-{d:02d}" for d in range(1, 7)]
    table = pa.Table.from_pylist([_game(f"{day}-{i}", 20 + i, day, seed=i) for day in days for i in range(3)])
    train, test = split_by_date(table, train=("2025-12-01", "2025-12-04"), test=(date(2025, 12, 5), "2025-12-06"))
    train_ids, test_ids = set(train["game_id"].to_pylist()), set(test["game_id"].to_pylist())
    assert not train_ids & test_ids and train_ids | test_ids == set(table["game_id"].to_pylist())
    assert {g[:10] for g in train_ids} == set(days[:4]) and {g[:10] for g in test_ids} == set(days[4:])
    SidebetEnv(train), SidebetEnv(test)
    with pytest.raises(ValueError, match="overlap: a game would be in both"):
        split_by_date(table, train=("2025-12-01", "2025-12-04"), test=("2025-12-04", "2025-12-06"))
    with pytest.raises(ValueError, match="no episodes in the test range 2026-01-01..2026-01-02"):
        split_by_date(table, train=("2025-12-01", "2025-12-04"), test=("2026-01-01", "2026-01-02"))
    twice = pa.concat_tables([table, pa.Table.from_pylist([_game("2025-12-01-0", 20, "2025-12-06")])])
    with pytest.raises(ValueError, match="1 game.s. are under both a train and a test day, e.g. 2025-12-01-0"):
        split_by_date(twice, train=("2025-12-01", "2025-12-04"), test=("2025-12-05", "2025-12-06"))


def test_the_env_refuses_episodes_it_cannot_play() -> None:
    with pytest.raises(ValueError, match="game a has 1 tick.s.: a game needs ticks 0..R with R >= 1"):
        SidebetEnv([{"game_id": "a", "prices": [1.0]}])
    with pytest.raises(ValueError, match="game b has a price that is not a positive finite number"):
        SidebetEnv([_game("a", 5), {"game_id": "b", "prices": [1.0, 0.0]}])
    with pytest.raises(ValueError, match="game_id twice"):
        SidebetEnv([_game("a", 5), _game("a", 6)])
    with pytest.raises(ValueError, match=r"lack column\(s\) \['prices'\]"):
        SidebetEnv([{"game_id": "a"}])
    env = SidebetEnv([_game("a", 2)])
    env.reset(options={"game_id": "a"})
    with pytest.raises(ValueError, match="action 2 is not 0"):
        env.step(2)
    env.step(WAIT), env.step(WAIT)
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(WAIT)


def _readme_example() -> str:
    text = (REPO_ROOT / "README.md").read_text()
    section = re.split(r"\n##+ ", text.split("\n### Episodes for training\n", 1)[1], maxsplit=1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def test_the_readme_example_runs_as_written(real, tmp_path) -> None:
    """On the two public recordings' days (2025-12-06 trains, 2025-12-12 tests), derived into a store."""
    store = Store(tmp_path / "rugs_data")
    store.ensure_manifest()
    counts = []
    for name in ("sandbox", "raw"):
        run = real(name)
        for day in run.days:
            for doc_type in ("game_tick", "games"):
                store.replace_partition(doc_type, day, run.derived[day][doc_type])
        counts.append(len(expected_episodes(run.events)))
    env = {**os.environ, "RUGS_DATA_DIR": str(store.root)}
    out = subprocess.run([sys.executable, "-c", _readme_example()], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == f"{counts[0]} training games, {counts[1]} test games"
    assert re.fullmatch(rf"[+-]\d+ stakes over {counts[1]} test games", lines[1])
