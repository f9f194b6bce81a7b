"""The feed catalog's wiring: ``event_catalog`` (what each event's payload holds, per day), its
``protocol_drift`` check, and ``events_index`` (the LanceDB search index built from every day's catalog)."""

import dagster as dg

from rugs_pipeline.defs.assets import derive_automation, ws_event
from rugs_pipeline.defs.partitions import daily
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive import catalog, drift, search

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
                     f"({result.walked} of {result.files} files walked)")
    return dg.MaterializeResult(metadata={
        "events": len(events),
        "paths": paths,
        "event_frames": result.frames,
        "frames_not_catalogued": dg.MetadataValue.json(result.other_frames),
        "files": result.files,
        "files_walked": result.walked,
        "event_names": dg.MetadataValue.json(events),
        "path": dg.MetadataValue.path(str(result.path)),
        "dagster/row_count": table.num_rows,
    })


@dg.asset_check(
    asset=event_catalog,
    name="protocol_drift",
    blocking=False,
    partitions_def=daily,
    description=f"Compares the day's catalog with the {drift.WINDOW_DAYS} most recent catalogued days before it: "
    "new event names, events not seen, new field paths, paths not seen any more, and JSON types a path never "
    "had (e.g. price: number -> string). WARNs with the table in its metadata; a store's first day is the "
    "baseline.",
)
def protocol_drift(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
    st, day = store.store(), context.partition_key
    today = catalog.read_catalog(st, day)
    if today is None:
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.WARN,
                                   description=f"no catalog for {day}: materialise event_catalog first")
    window_days = [d for d in catalog.catalog_days(st) if d < day][-drift.WINDOW_DAYS:]
    if not window_days:
        return dg.AssetCheckResult(passed=True, description="the store's first catalogued day: the baseline",
                                   metadata={"window": dg.MetadataValue.json([])})
    window = [t for t in (catalog.read_catalog(st, d) for d in window_days) if t is not None]
    changes = drift.compare(today, window)
    counts = {kind: sum(c.kind == kind for c in changes) for kind in drift.KINDS}
    return dg.AssetCheckResult(
        passed=not changes,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"against {window_days[0]}..{window_days[-1]}: {drift.summary(changes)}",
        metadata={"window": dg.MetadataValue.json(window_days), "changes": len(changes),
                  **{kind.replace(" ", "_"): n for kind, n in counts.items()},
                  "drift": dg.MetadataValue.md(drift.markdown(changes))},
    )


@dg.asset(
    deps=[event_catalog],
    group_name="catalog",
    kinds={"lancedb", "python"},
    owners=["team:rugs-pipeline"],
    description="The catalog's search index for agents: vectors/events.lance, table events, one document per event "
    "and per field path over every catalogued day, LanceDB full-text index on text and a wordllama vector. Rebuilt "
    "whole from the catalog Parquet, swapped in atomically. rugs-pipeline search \"QUESTION\".",
    automation_condition=dg.AutomationCondition.eager(),
)
def events_index(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    report = search.build_index(store.store())
    context.log.info(f"indexed {report.events} events, {report.paths} paths of {len(report.days)} day(s)")
    return dg.MaterializeResult(metadata={
        "events": report.events, "paths": report.paths, "days": len(report.days),
        "path": dg.MetadataValue.path(str(report.path)), "dagster/row_count": report.events + report.paths,
    })


catalog_assets = [event_catalog, events_index]
catalog_checks = [protocol_drift]
