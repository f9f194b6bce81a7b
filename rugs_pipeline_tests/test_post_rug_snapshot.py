"""A recorder that (re)connects just after a rug gets the on-connect snapshot of the rugged game:
tickCount already counts on past R, and the whole price history 0..R comes in ``prices``."""

from __future__ import annotations

import pyarrow.compute as pc

from rugs_pipeline.formats import spool
from rugs_pipeline.derive.games import rebuild_games
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.store import landing

T0 = 1_765_065_600 * 10**9  # 2025-12-07 00:00 UTC


def test_rug_tick_of_a_post_rug_snapshot_is_the_last_price_of_its_history() -> None:
    prices = [1.0, 1.05, 1.2, 1.1, 0.004]  # R = 4: the crash price is the last
    snapshot = {"gameId": "20251207-aaaaaaaaaaaaaaaa", "active": False, "rugged": True, "tickCount": len(prices) + 1,
                "price": prices[-1], "cooldownTimer": 0, "prices": prices}
    records = [spool.SpoolRecord(1, T0, spool.KIND_FRAME, encode_event("gameStateUpdate", snapshot))]
    table = landing.records_to_table(spool.SegmentHeader("s1", "public_ws"), records)
    ticks = rebuild_games(table)["game_tick"]
    assert sorted(ticks["tick"].to_pylist()) == list(range(len(prices)))
    rug = ticks.filter(pc.equal(ticks["is_rug_tick"], True))
    assert rug["tick"].to_pylist() == [len(prices) - 1] and rug["price"].to_pylist() == [prices[-1]]
