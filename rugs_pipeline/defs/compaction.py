"""Compaction of closed days: each day's landed ws_event files become <= 4 large files."""

from datetime import datetime, timezone

import dagster as dg

from rugs_pipeline.defs.assets import ws_event
from rugs_pipeline.defs.partitions import daily, eager_days, today
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.store import compaction

# Whenever a closed day's ws_event changes (the last segments land after midnight, a late
# recovery or an import lands more), compact it again; the live day is left to landing.
compaction_automation = (eager_days() & ~today).with_label("eager, closed days only")


@dg.asset(
    deps=[ws_event],
    partitions_def=daily,
    group_name="capture",
    kinds={"parquet", "python"},
    owners=["team:rugs-pipeline"],
    automation_condition=compaction_automation,
    description="Merges a closed day's landed ws_event files (one per 30 s spool segment) into at most "
    f"{compaction.MAX_FILES} files clustered by event_name, swapped in atomically: readers never see a row "
    "twice or miss one. Late segments land beside them and the next run folds them in.",
)
def ws_event_compaction(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    day = context.partition_key
    if day >= datetime.now(timezone.utc).date().isoformat():
        # not a failure: `ws_event*` on today must succeed; the day is compacted once it closes
        # (automation asks again when its last segments land after midnight)
        reason = f"{day} is not closed yet: left as landed, compacted after its UTC midnight"
        context.log.info(reason)
        return dg.MaterializeResult(metadata={"compacted": False, "reason": reason,
                                              "files": len(store.store().partition_files("ws_event", day))})
    report = compaction.compact_day(store.store(), day)
    context.log.info(f"{day}: merged {report.merged} file(s) into version {report.version}; files now {report.files}")
    return dg.MaterializeResult(metadata={
        "compacted": True,
        "version": report.version if report.version is not None else "unchanged",
        "files_merged": report.merged,
        "files": len(report.files),
        "files_carried_unmerged": dg.MetadataValue.json(report.carried),
        "rows_merged": report.rows,
    })
