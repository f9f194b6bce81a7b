"""The feed catalog's assets: ``event_catalog`` (what each event's payload holds, per day) and its checks."""

import dagster as dg

from rugs_pipeline.defs.assets import derive_automation, ws_event
from rugs_pipeline.defs.partitions import daily
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive import catalog

CATALOG_COLUMNS = dg.TableSchema(columns=[
    dg.TableColumn(f.name, str(f.type), description=catalog.DESCRIPTIONS[f.name]) for f in catalog.CATALOG_SCHEMA
])


@dg.asset(
    deps=[ws_event],
    partitions_def=daily,
    group_name="catalog",
    kinds={"parquet", "python"},
    owners=["team:rugs-pipeline"],
    description="What the feed says: one row per (event_name, JSON path of its payload) and one per event, from "
    "every event frame of the day: JSON types with counts, occurrences, nulls, examples, first/last seen and a "
    "sample frame. Stored in catalog/date=<day>/event_catalog.parquet (outside events_parquet); view "
    "event_catalog in rugs-pipeline query.",
    automation_condition=derive_automation,
    metadata={"dagster/column_schema": CATALOG_COLUMNS},
)
def event_catalog(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    day = context.partition_key
    result = catalog.build_day(store.store(), day)
    table = result.table
    events = sorted(set(table["event_name"].to_pylist()))
    paths = sum(1 for k in table["kind"].to_pylist() if k == "field")
    context.log.info(f"{day}: {len(events)} events, {paths} paths from {result.frames} event frames "
                     f"({result.parts_walked} of {result.files} files walked)")
    return dg.MaterializeResult(metadata={
        "events": len(events),
        "paths": paths,
        "event_frames": result.frames,
        "frames_not_catalogued": dg.MetadataValue.json(result.other_frames),
        "files": result.files,
        "files_walked": result.parts_walked,
        "event_names": dg.MetadataValue.json(events),
        "path": dg.MetadataValue.path(str(result.path)),
        "dagster/row_count": table.num_rows,
    })


catalog_assets = [event_catalog]
catalog_checks: list = []
