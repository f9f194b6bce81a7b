"""Do the derivations of one day agree with each other? Pure checks over Arrow tables.

Each check returns a ``Verdict``: the problems found (empty when it passes) and counts for
the record. A game's rug tick R comes from ``game_tick`` (its ``is_rug_tick`` row), so games
seen only live are checked too. What a check cannot decide (a trade on a tick nobody sent,
a payout without its stake) is counted as unverified, never guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import polars as pl
import pyarrow as pa

SIDEBET_X = 5  # a winning sidebet pays 5x its stake (RUGS_FEED.md)
MAX_LISTED = 20


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problems


def _frame(table: pa.Table) -> pl.DataFrame:
    return pl.from_arrow(table)


def _verdict(counts: dict[str, int], *findings: tuple[pl.DataFrame, Callable[[dict], str]]) -> Verdict:
    """A verdict listing each finding's rows (the first MAX_LISTED of each), described."""
    problems = []
    for rows, describe in findings:
        problems += [describe(r) for r in rows.head(MAX_LISTED).iter_rows(named=True)]
        if rows.height > MAX_LISTED:
            problems.append(f"... and {rows.height - MAX_LISTED} more")
    return Verdict(problems, counts)


def _rug_ticks(game_tick: pl.DataFrame) -> pl.DataFrame:
    return game_tick.filter(pl.col("is_rug_tick")).select("game_id", pl.col("tick").alias("rug_tick"))


def trades_reference_ticks(game_tick: pa.Table, player_action: pa.Table) -> Verdict:
    """Each trade of a game in ``game_tick`` names a tick of that game (0..R once the game has ended)
    and, where that tick is known, trades at its price."""
    ticks = _frame(game_tick)
    trades = (
        _frame(player_action)
        .filter(pl.col("event_name") == "standard/newTrade")
        .unique("trade_id", keep="first", maintain_order=True)
        .join(ticks.select("game_id").unique(), on="game_id", how="semi")
        .join(_rug_ticks(ticks), on="game_id", how="left")
        .join(ticks.select("game_id", "tick", pl.col("price").alias("tick_price")), on=["game_id", "tick"], how="left")
    )
    impossible = trades.filter(
        pl.col("tick").is_null() | (pl.col("tick") < 0) | (pl.col("tick") > pl.col("rug_tick")).fill_null(False)
    )
    mispriced = trades.filter(pl.col("tick_price").is_not_null() & (pl.col("price") != pl.col("tick_price")))
    unknown = trades.filter(pl.col("tick_price").is_null()).join(impossible, on="trade_id", how="anti")
    return _verdict(
        {"trades": trades.height, "on_unknown_ticks": unknown.height},
        (impossible, lambda r: f"trade {r['trade_id']} of {r['game_id']}: tick {r['tick']} is not a tick of the game "
                               f"(rug tick {r['rug_tick']})"),
        (mispriced, lambda r: f"trade {r['trade_id']} of {r['game_id']} at tick {r['tick']}: price {r['price']!r} but "
                              f"the tick's is {r['tick_price']!r}"),
    )


def sidebets_follow_the_window_rule(game_tick: pa.Table, player_action: pa.Table) -> Verdict:
    """A sidebet wins exactly when the rug tick <= its window's end (inclusive), and then pays 5x its stake."""
    payouts = (
        _frame(player_action)
        .filter(pl.col("action_type") == "sidebet_payout")
        .unique("trade_id", keep="first", maintain_order=True)
        .join(_rug_ticks(_frame(game_tick)), on="game_id", how="inner")
    )
    decidable = payouts.filter(pl.col("end_tick").is_not_null() & pl.col("amount").is_not_null()
                               & pl.col("payout").is_not_null())
    checked = decidable.with_columns(
        won=pl.col("rug_tick") <= pl.col("end_tick"),
        due=pl.when(pl.col("rug_tick") <= pl.col("end_tick")).then(pl.col("amount") * SIDEBET_X).otherwise(0.0),
    )
    # stakes and payouts are decimal amounts in binary floating point: equal within a part in 1e9
    wrong = checked.filter((pl.col("payout") - pl.col("due")).abs() > 1e-9 * pl.col("due").abs().clip(1e-9))
    return _verdict(
        {"payouts": decidable.height, "won": int(checked["won"].sum()), "unverified": payouts.height - decidable.height},
        (wrong, lambda r: f"sidebet {r['trade_id']} of {r['game_id']} (window to tick {r['end_tick']}, rug tick "
                          f"{r['rug_tick']}, stake {r['amount']}): paid {r['payout']}, due {r['due']}"),
    )


def history_matches_ticks(complete_game: pa.Table, game_tick: pa.Table) -> Verdict:
    """A game's gameHistory record agrees with its ticks: the same rug tick, and ``peakMultiplier``
    equal to the highest tick price (for a game whose every tick is known)."""
    ticks = _frame(game_tick).group_by("game_id").agg(
        pl.len().alias("ticks"), pl.col("price").max().alias("max_price"),
        pl.col("tick").filter(pl.col("is_rug_tick")).first().alias("rug_tick"),
    )
    games = _frame(complete_game).join(ticks, on="game_id", how="inner")
    whole = games.filter(pl.col("ticks") == pl.col("rug_tick") + 1)
    other_rug = games.filter(pl.col("tick").is_not_null() & (pl.col("tick") != pl.col("rug_tick")).fill_null(True))
    other_peak = whole.filter(pl.col("peak_multiplier").is_not_null() & (pl.col("peak_multiplier") != pl.col("max_price")))
    return _verdict(
        {"games": games.height, "whole_games": whole.height},
        (other_rug, lambda r: f"{r['game_id']}: gameHistory ends at tick {r['tick']}, the ticks at {r['rug_tick']}"),
        (other_peak, lambda r: f"{r['game_id']}: peakMultiplier {r['peak_multiplier']!r} but the highest tick is "
                               f"{r['max_price']!r}"),
    )


def seeds_verified(complete_game: pa.Table) -> Verdict:
    """Every revealed serverSeed hashes to the serverSeedHash announced for its game."""
    games = _frame(complete_game)
    failed = games.filter(pl.col("seed_verified") == False)  # noqa: E712 (null means "no seed": not a failure)
    return _verdict(
        {"games": games.height, "verified": int((games["seed_verified"] == True).sum()),  # noqa: E712
         "without_seed": games["seed_verified"].null_count()},
        (failed, lambda r: f"{r['game_id']}: sha256(serverSeed) != serverSeedHash {r['server_seed_hash']} "
                           f"({r['message'] or 'announced live'})"),
    )


def price_conflicts(game_tick: pa.Table) -> Verdict:
    """Ticks for which the feed's sources gave different prices (the row keeps the preferred one)."""
    ticks = _frame(game_tick)
    conflicting = ticks.filter(pl.col("price_conflicts") > 0).sort("game_id", "tick")
    return _verdict(
        {"ticks": ticks.height, "conflicting_ticks": conflicting.height,
         "games_with_conflicts": conflicting["game_id"].n_unique()},
        (conflicting, lambda r: f"{r['game_id']} tick {r['tick']}: {r['price_conflicts'] + 1} different prices, kept "
                                f"{r['price']!r} ({r['tick_source']})"),
    )
