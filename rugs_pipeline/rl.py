"""A reference Gymnasium environment for sidebets over the store's games (``pip install -e '.[rl]'``).

``SidebetEnv(episodes)`` replays one game per episode, tick by tick, from ``consumers.episodes``
rows held in memory as numpy arrays (nothing is read from Parquet after construction).

The sidebet rule (shared/reference/RUGS_FEED.md): a sidebet placed at tick s covers ticks
s..s+40 and pays 5x its stake when the rug tick R is at or before s+40.

The timeline, exactly:

- ``reset`` shows tick 0. Each ``step(action)`` acts at the tick shown, t (always < R), then shows t+1.
- Action 0 waits. Action 1 places a sidebet starting at s = t; while one is running (one at a time, as
  in the game) it does nothing and the step's info says ``ignored``.
- Reward, in stakes, paid at the step that resolves the sidebet, 0 at every other step:
  ``payout - 1`` (+4) at the step showing R when R <= s+40 (a win: 5x back, less the stake);
  -1 at the step showing tick s+40 when it is not the rug (then R > s+40: a loss).
  An episode's return is thus the net profit of its sidebets, in stakes.
- ``terminated`` at the step showing R; never truncated. A game needs R >= 1 (one decision at least).

Observation: a float32 vector, named by ``OBSERVATION``. Each value at tick t is computed from
prices 0..t and the running sidebet only (cumulative and trailing operations over the game's price
array, computed once per reset), so two games equal up to tick t give equal observations up to t:
no look-ahead. Returns are differences of natural logs; a trailing window shorter than its length
at the game's start uses tick 0.

``reset(seed=..., options={"game_id": ...})`` plays that game; without a game_id the game is drawn
with the env's seeded generator, so the same seed gives the same game. ``split_by_date`` splits
episodes into train and test by their partition day: a game has one day, so none is in both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

try:
    import gymnasium as gym
except ImportError as exc:  # an optional extra: say how to get it
    raise ImportError("rugs_pipeline.rl needs gymnasium: pip install -e '.[rl]'") from exc

from rugs_pipeline.consumers.episodes import parse_day

WINDOW = 40  # ticks a sidebet covers after its start tick
PAYOUT = 5.0  # stakes paid back on a win
WAIT, SIDEBET = 0, 1

OBSERVATION = (
    "tick_100",            # t / 100
    "log_price",           # ln price[t]
    "log_peak",            # ln max(price[0..t])
    "drawdown",            # ln price[t] - ln max(price[0..t])  (<= 0)
    "ticks_since_peak_100",  # (t - last tick at the peak so far) / 100
    "return_1",            # ln price[t] - ln price[t-1]
    "return_5",
    "return_10",
    "return_20",
    "volatility_10",       # std of the last 10 one-tick log returns (tick 0's return counted as 0)
    "sidebet_active",      # 1 while a sidebet runs, else 0
    "sidebet_left",        # ticks its window still covers after t, / 40 (0 without one)
)
_RETURNS = (1, 5, 10, 20)
_VOLATILITY = 10
_ACTIVE, _LEFT = len(OBSERVATION) - 2, len(OBSERVATION) - 1


def price_features(prices: np.ndarray) -> np.ndarray:
    """The (ticks, len(OBSERVATION)) observations of a game without a sidebet; row t uses prices[0..t] only."""
    n = len(prices)
    lp = np.log(prices)
    idx = np.arange(n)
    out = np.zeros((n, len(OBSERVATION)), dtype=np.float64)
    peak = np.maximum.accumulate(lp)
    out[:, 0] = idx / 100
    out[:, 1] = lp
    out[:, 2] = peak
    out[:, 3] = lp - peak
    out[:, 4] = (idx - np.maximum.accumulate(np.where(lp == peak, idx, 0))) / 100
    for col, k in enumerate(_RETURNS, start=5):
        out[:, col] = lp - lp[np.maximum(idx - k, 0)]
    r = out[:, 5]  # the one-tick returns (0 at tick 0)
    # trailing sums over [t-9, t] from running sums: sequential, so equal prefixes give equal values
    s1 = np.cumsum(r)
    s2 = np.cumsum(r * r)
    before = idx - _VOLATILITY
    s1 = s1 - np.where(before >= 0, s1[np.maximum(before, 0)], 0)
    s2 = s2 - np.where(before >= 0, s2[np.maximum(before, 0)], 0)
    m = np.minimum(idx + 1, _VOLATILITY)
    out[:, 9] = np.sqrt(np.maximum(s2 / m - (s1 / m) ** 2, 0))
    return out.astype(np.float32)


def _as_table(episodes: Any) -> pa.Table:
    """A pyarrow Table (as ``consumers.episodes`` returns), a polars DataFrame, or a list of row mappings."""
    if isinstance(episodes, pa.Table):
        return episodes
    if hasattr(episodes, "to_arrow"):  # polars
        return episodes.to_arrow()
    if isinstance(episodes, Sequence) and all(isinstance(row, Mapping) for row in episodes):
        return pa.Table.from_pylist(list(episodes))
    raise TypeError(f"episodes must be a pyarrow Table (consumers.episodes), a polars DataFrame or a list of "
                    f"rows, not {type(episodes).__name__}")


class SidebetEnv(gym.Env):
    """One game per episode; wait (0) or place a sidebet (1) at each tick (see the module's docstring)."""

    metadata = {"render_modes": []}

    def __init__(self, episodes: Any, *, window: int = WINDOW, payout: float = PAYOUT) -> None:
        table = _as_table(episodes)
        missing = {"game_id", "prices"} - set(table.column_names)
        if missing:
            raise ValueError(f"episodes lack column(s) {sorted(missing)}: pass rugs_pipeline.consumers.episodes(...)")
        if table.num_rows == 0:
            raise ValueError("no episodes: SidebetEnv needs at least one game")
        prices = table["prices"]
        if prices.null_count or pc.list_flatten(prices).null_count:
            raise ValueError("episodes hold a null price list or price")
        self.game_ids: tuple[str, ...] = tuple(table["game_id"].to_pylist())
        self._index = {gid: i for i, gid in enumerate(self.game_ids)}
        if len(self._index) != len(self.game_ids):
            raise ValueError("episodes hold a game_id twice: one row per game (consumers.episodes gives that)")
        lengths = pc.list_value_length(prices).to_numpy(zero_copy_only=False).astype(np.int64)
        self._prices = pc.list_flatten(prices).to_numpy(zero_copy_only=False).astype(np.float64)
        self._offsets = np.concatenate([[0], np.cumsum(lengths)])
        short = np.flatnonzero(lengths < 2)
        if len(short):
            raise ValueError(f"game {self.game_ids[short[0]]} has {lengths[short[0]]} tick(s): "
                             "a game needs ticks 0..R with R >= 1")
        bad = ~(np.isfinite(self._prices) & (self._prices > 0))
        if bad.any():
            game = self.game_ids[int(np.searchsorted(self._offsets, np.flatnonzero(bad)[0], side="right")) - 1]
            raise ValueError(f"game {game} has a price that is not a positive finite number")
        self.window, self.payout = window, float(payout)
        self.action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(len(OBSERVATION),), dtype=np.float32)
        self._features = np.zeros((0, len(OBSERVATION)), dtype=np.float32)
        self._game, self._rug, self._t, self._bet = "", 0, 0, -1

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        game_id = (options or {}).get("game_id")
        if game_id is None:
            i = int(self.np_random.integers(len(self.game_ids)))
        elif game_id in self._index:
            i = self._index[game_id]
        else:
            raise ValueError(f"game_id {game_id!r} is not among this env's {len(self.game_ids)} episodes")
        lo, hi = self._offsets[i], self._offsets[i + 1]
        self._features = price_features(self._prices[lo:hi])
        self._game, self._rug, self._t, self._bet = self.game_ids[i], int(hi - lo - 1), 0, -1
        return self._features[0].copy(), {"game_id": self._game, "tick": 0}

    def step(self, action) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._t >= self._rug:
            raise RuntimeError("the game has rugged: call reset() first")
        info: dict[str, Any] = {}
        if action == SIDEBET:
            if self._bet < 0:
                self._bet = self._t
            else:
                info["ignored"] = True
        elif action != WAIT:
            raise ValueError(f"action {action!r} is not 0 (wait) or 1 (place a sidebet)")
        t = self._t = self._t + 1
        terminated = t == self._rug
        reward = 0.0
        if self._bet >= 0:
            if terminated:  # the rug within the window: the running sidebet wins
                reward, info["sidebet"] = self.payout - 1, "won"
                self._bet = -1
            elif t == self._bet + self.window:  # its last tick, and no rug: lost
                reward, info["sidebet"] = -1.0, "lost"
                self._bet = -1
        obs = self._features[t].copy()
        if self._bet >= 0:
            obs[_ACTIVE] = 1
            obs[_LEFT] = (self._bet + self.window - t) / self.window
        info["tick"] = t
        if terminated:
            info["game_id"], info["rug_tick"] = self._game, self._rug
        return obs, reward, terminated, False, info


def split_by_date(episodes: Any, train: tuple[date | str, date | str],
                  test: tuple[date | str, date | str]) -> tuple[pa.Table, pa.Table]:
    """(train, test): the episodes whose ``date`` is within each (first, last) range, both inclusive.

    The ranges must not overlap; each must hold a game. A game has one partition day, so no game
    is on both sides (checked on game_id too).
    """
    table = _as_table(episodes)
    if "date" not in table.column_names:
        raise ValueError("episodes lack the date column: pass rugs_pipeline.consumers.episodes(...)")
    ranges = {name: (parse_day(days[0], f"{name}[0]"), parse_day(days[1], f"{name}[1]"))
              for name, days in (("train", train), ("test", test))}
    for name, (first, last) in ranges.items():
        if last < first:
            raise ValueError(f"{name} range ends ({last}) before it starts ({first})")
    (a, b), (c, d) = ranges["train"], ranges["test"]
    if a <= d and c <= b:
        raise ValueError(f"train {a}..{b} and test {c}..{d} overlap: a game would be in both")
    day = table["date"].cast(pa.date32())
    parts = []
    for name, (first, last) in ranges.items():
        part = table.filter(pc.and_(pc.greater_equal(day, pa.scalar(first)), pc.less_equal(day, pa.scalar(last))))
        if part.num_rows == 0:
            raise ValueError(f"no episodes in the {name} range {first}..{last}")
        parts.append(part)
    shared = set(parts[0]["game_id"].to_pylist()) & set(parts[1]["game_id"].to_pylist())
    if shared:
        raise ValueError(f"{len(shared)} game(s) are under both a train and a test day, e.g. {min(shared)}")
    return parts[0], parts[1]
