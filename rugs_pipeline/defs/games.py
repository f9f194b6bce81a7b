"""Games: ``game_tick`` and ``complete_game`` rebuilt from the frames, ``games`` summarised from them,
and the checks that the day's derivations agree with each other.

A game's rows live in the partition of the UTC day in its id, and its end and history can arrive
after midnight, so a day reads the next day's data too (``NEXT_DAY``): the first
``NEXT_DAY_HEAD`` of its frames, and its trades.
"""

from datetime import date, datetime, time, timedelta, timezone

import dagster as dg
import pyarrow as pa

from rugs_pipeline.defs.assets import (
    DERIVE_CRON, METADATA_COLUMNS, derived_metadata, derived_spec, ws_event,
)
from rugs_pipeline.defs.checks import schema_check
from rugs_pipeline.defs.partitions import at_most_every, daily, eager_days, today
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive import consistency
from rugs_pipeline.derive.datasets import Frames
from rugs_pipeline.derive.games import NEXT_DAY_HEAD, games_rebuilt, summarize_games
from rugs_pipeline.store import doctypes, schema
from rugs_pipeline.store.layout import Store

# allow_nonexistent_upstream_partitions: without it today's partition would map to a missing tomorrow
NEXT_DAY = dg.TimeWindowPartitionMapping(start_offset=0, end_offset=1, allow_nonexistent_upstream_partitions=True)
# Yesterday's games change while today's first NEXT_DAY_HEAD lands: every 5 min of today's first hour covers it.
HEAD_CRON = "*/5 0 * * *"

def _automation() -> dg.AutomationCondition:
    """Like the frame-partitioned assets, plus: a day also follows the next day's data, and may lack its own.

    Closed days derive at once; today at most every DERIVE_CRON; yesterday (whose next day is
    today, landing all day) at most every 5 min during today's first hour.
    """
    # the lookback counts back from the end of the latest window (tomorrow 00:00): 2 days reach yesterday
    yesterday = dg.AutomationCondition.in_latest_time_window(lookback_delta=timedelta(days=2)) & ~today
    # the next day may never be captured, and a day may hold only what the next day's head says
    eager = eager_days(wait_for_running_deps=False, wait_for_missing_deps=False)
    return (eager & (
        ~(today | yesterday)
        | today & at_most_every(DERIVE_CRON)
        | yesterday & at_most_every(HEAD_CRON)
    )).with_label(f"eager on this day and the next; today at most every '{DERIVE_CRON}', yesterday every 5 min "
                  "in today's first hour")


automation = _automation()


def _next_day(day: str) -> str:
    return (date.fromisoformat(day) + timedelta(days=1)).isoformat()


def game_frames(store: Store, day: str) -> Frames:
    """The ``ws_event`` rows a day's games are rebuilt from: the day's and the next day's first NEXT_DAY_HEAD.

    Read in place (a day of frames need not fit in memory); row-group statistics let the scan
    skip the rest of the next day without reading it.
    """
    next_day = _next_day(day)
    cutoff = datetime.combine(date.fromisoformat(next_day), time(), timezone.utc) + NEXT_DAY_HEAD
    return Frames(tuple(store.partition_files("ws_event", day)), tuple(store.partition_files("ws_event", next_day)),
                  cutoff, store.filesystem)


# The summary and the checks never read raw_json, which is most of a partition's bytes (a tick's whole payload).
_SUMMARY_COLUMNS = [name for name in schema.COLUMNS if name != "raw_json"]


def _read(store: Store, doc_type: str, day: str) -> pa.Table:
    """What a day's games see of ``doc_type``: trades come from the next day too (games run past midnight)."""
    days = (day, _next_day(day)) if doc_type == "player_action" else (day,)
    return pa.concat_tables([store.read_partition(doc_type, d, _SUMMARY_COLUMNS) for d in days])


@dg.multi_asset(
    name="rebuild_games",
    specs=[dg.AssetSpec(name, deps=[dg.AssetDep(ws_event, partition_mapping=NEXT_DAY)], **derived_spec(name, automation))
           for name in ("game_tick", "complete_game")],
    partitions_def=daily,
)
def rebuild(context: dg.AssetExecutionContext, store: StoreResource):
    day = context.partition_key
    st = store.store()
    st.ensure_manifest()
    # the rows go to the files as they come: a day's ticks with their payloads need not fit in memory
    with st.partition_lock("ws_event", day, shared=True), st.partition_lock("ws_event", _next_day(day), shared=True), \
            games_rebuilt(game_frames(st, day), day) as results:
        for name, rows in results:
            st.replace_partition(name, day, rows)
    for name in ("game_tick", "complete_game"):
        table = st.read_partition(name, day, columns=METADATA_COLUMNS)
        yield dg.MaterializeResult(asset_key=name, metadata=derived_metadata(st, name, day, table))


@dg.asset(
    name="games",
    deps=["game_tick", "complete_game", dg.AssetDep("player_action", partition_mapping=NEXT_DAY)],
    partitions_def=daily, **derived_spec("games", automation),
)
def games(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    day = context.partition_key
    st = store.store()
    st.ensure_manifest()
    table = summarize_games(*(_read(st, name, day) for name in ("game_tick", "complete_game", "player_action")))
    st.replace_partition("games", day, table)
    return dg.MaterializeResult(metadata=derived_metadata(st, "games", day, table))


# --- checks --------------------------------------------------------------------------------

def _consistency_check(asset: str, verdict, inputs: tuple[str, ...], *, blocking: bool,
                       severity: dg.AssetCheckSeverity) -> dg.AssetChecksDefinition:
    """An asset check running ``consistency.<verdict>`` over the day's stored ``inputs`` (doc_types)."""
    @dg.asset_check(
        asset=asset, name=verdict.__name__, blocking=blocking, partitions_def=daily,
        description=" ".join(verdict.__doc__.split()),
        additional_deps=[name for name in inputs if name != asset],
    )
    def _check(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
        st, day = store.store(), context.partition_key
        result = verdict(*(_read(st, name, day) for name in inputs))
        return dg.AssetCheckResult(passed=result.passed, severity=severity,
                                   description="; ".join(result.problems) or None, metadata=result.counts)

    return _check


ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN
game_checks = [
    *(schema_check(dg.AssetKey(name)) for name in doctypes.GAME_DERIVED),
    # inconsistent ticks would make a wrong summary: these stop `games`
    _consistency_check("game_tick", consistency.trades_reference_ticks, ("game_tick", "player_action"),
                       blocking=True, severity=ERROR),
    _consistency_check("game_tick", consistency.sidebets_follow_the_window_rule, ("game_tick", "player_action"),
                       blocking=True, severity=ERROR),
    _consistency_check("complete_game", consistency.history_matches_ticks, ("complete_game", "game_tick"),
                       blocking=True, severity=ERROR),
    # facts about the feed, kept in the data: reported, not blocking
    _consistency_check("complete_game", consistency.seeds_verified, ("complete_game",), blocking=False, severity=ERROR),
    _consistency_check("game_tick", consistency.price_conflicts, ("game_tick",), blocking=False, severity=WARN),
]
game_assets = [rebuild, games]
