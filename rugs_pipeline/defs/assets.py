"""Assets: wiring from Dagster to the landing and derivation functions."""

import dagster as dg
import pyarrow.compute as pc

from rugs_pipeline import config
from rugs_pipeline.defs.charts import games_png, markdown_image, price_paths_png
from rugs_pipeline.defs.partitions import at_most_every, daily, eager_days, today
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive.datasets import Frames, derived
from rugs_pipeline.store import doctypes, landing, schema
from rugs_pipeline.store.layout import Store

# Derived days follow ws_event; the live day lands continuously: re-derive it at most once per
# RUGS_DERIVE_CRON tick, closed days as soon as they change.
DERIVE_CRON = config.Settings.from_env().derive_cron
derive_automation = (eager_days(wait_for_running_deps=False) & (~today | at_most_every(DERIVE_CRON))
                     ).with_label(f"eager, live day at most every '{DERIVE_CRON}'")

COLUMN_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn(f.name, str(f.type), description=schema.DESCRIPTIONS[f.name],
                       constraints=dg.TableColumnConstraints(nullable=f.nullable))
        for f in schema.SCHEMA
    ]
)


def _partition_metadata(store: Store, doc_type: str, day: str) -> dict:
    files = store.partition_files(doc_type, day)
    return {
        "files": len(files),
        "bytes": sum(store.files.size(f) for f in files),
        "path": dg.MetadataValue.path(str(store.partition_dir(doc_type, day))),
        "schema_version": schema.SCHEMA_VERSION,
    }


@dg.asset(
    partitions_def=daily,
    group_name="capture",
    kinds={"parquet", "python"},
    owners=["team:rugs-pipeline"],
    description=doctypes.DOC_TYPES["ws_event"].description,
    metadata={"dagster/column_schema": COLUMN_SCHEMA},
)
def ws_event(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    day = context.partition_key
    st = store.store()
    report = landing.land_day(st, day)
    context.log.info(f"landed {len(report.segments)} segment(s), {report.rows} rows for {day}")
    day_rows = st.partition_rows("ws_event", day)  # from the footers: landing memory must not grow with the day
    return dg.MaterializeResult(
        metadata={
            "segments_landed": len(report.segments),
            "rows_landed": report.rows,
            "rows": day_rows,
            "malformed_landed": report.malformed,
            "oversized_landed": report.oversized,
            "lifecycle_landed": report.lifecycle,
            "events_by_name_landed": dg.MetadataValue.json(dict(sorted(report.events_by_name.items()))),
            "dagster/row_count": day_rows,
            **_partition_metadata(st, "ws_event", day),
        }
    )


# what the metadata parts read of a derived partition
METADATA_COLUMNS = ["ts", "game_id", "tick", "price", "is_rug_tick", "event_name", "duration_s", "action_type",
                    "tick_source", "price_conflicts"]


def _counts(table, column: str) -> dg.MetadataValue:
    counts = {r["values"]: r["counts"] for r in table[column].value_counts().to_pylist()}
    return dg.MetadataValue.json(dict(sorted(counts.items(), key=lambda kv: str(kv[0]))))


def _outages(table) -> dict:
    outages = table.filter(pc.equal(table["event_name"], "outage"))
    return {"outages": outages.num_rows, "outage_seconds": round(pc.sum(outages["duration_s"]).as_py() or 0.0, 3)}


def _ticks_by_source(table) -> dict:
    return {"ticks_by_source": _counts(table, "tick_source"),  # (tick_source is never null)
            "price_conflicts": int(pc.sum(pc.greater(table["price_conflicts"], 0)).as_py() or 0)}


def games_summary(games) -> dict:
    """The day's games in numbers: how many ended, R and peak, trading; and their chart."""
    def stat(column: str, fn) -> float | None:
        value = fn(games[column]).as_py() if games.num_rows else None
        return round(value, 3) if isinstance(value, float) else value

    messages = games["message"].to_pylist()
    png = games_png(games)
    return {
        "games_complete": sum(1 for m in messages if m == "complete"),
        "games_incomplete": sum(1 for m in messages if m != "complete"),
        "rug_tick_median": stat("tick", lambda c: pc.approximate_median(c)),
        "rug_tick_max": stat("tick", pc.max),
        "peak_multiplier_median": stat("peak_multiplier", lambda c: pc.approximate_median(c)),
        "peak_multiplier_max": stat("peak_multiplier", pc.max),
        "trades": stat("trade_count", pc.sum) or 0,
        "volume": stat("volume", pc.sum) or 0.0,
        "sidebets_placed": stat("sidebets_placed", pc.sum) or 0,
        "sidebets_won": stat("sidebets_won", pc.sum) or 0,
        **({"rug_ticks_and_peaks": dg.MetadataValue.md(markdown_image(png, "rug ticks and peak multipliers"))}
           if png else {}),
    }


# the metadata parts a doc type's registry entry names (store/doctypes.py), each of a non-empty partition
METADATA_PARTS = {
    "rug_ticks": lambda table: {"rug_ticks": pc.sum(table["is_rug_tick"]).as_py() or 0},
    "price_paths": lambda table: {"price_paths": dg.MetadataValue.md(
        markdown_image(price_paths_png(table), "price paths of the day's games"))},
    "ticks_by_source": _ticks_by_source,
    "outages": _outages,
    "rows_by_action_type": lambda table: {"rows_by_action_type": _counts(table, "action_type")},
    "rows_by_event_name": lambda table: {"rows_by_event_name": _counts(table, "event_name")},
    "games_summary": games_summary,
}


def derived_metadata(store: Store, doc_type: str, day: str, table) -> dict:
    """A derived partition's metadata: rows, games, the parts its registry entry names, its files."""
    meta: dict = {"rows": table.num_rows, "dagster/row_count": table.num_rows}
    if table.num_rows:
        meta["games"] = pc.count_distinct(table["game_id"]).as_py()
        for part in doctypes.DOC_TYPES[doc_type].metadata:
            meta.update(METADATA_PARTS[part](table))
    return {**meta, **_partition_metadata(store, doc_type, day)}


def derived_spec(doc_type: str, automation: dg.AutomationCondition) -> dict:
    """What every derived asset of ``doc_type`` says of itself (the registry's description)."""
    return dict(group_name="derive", kinds={"parquet", "duckdb"}, owners=["team:rugs-pipeline"],
                description=doctypes.DOC_TYPES[doc_type].description, automation_condition=automation,
                metadata={"dagster/column_schema": COLUMN_SCHEMA})


def _derived_asset(doc_type: str) -> dg.AssetsDefinition:
    @dg.asset(name=doc_type, deps=[ws_event], partitions_def=daily, **derived_spec(doc_type, derive_automation))
    def _asset(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
        day = context.partition_key
        st = store.store()
        st.ensure_manifest()
        # the day's frames are read in place and the rows written as they come: neither is held in memory
        with st.partition_lock("ws_event", day, shared=True), \
                derived(doc_type, Frames(tuple(st.partition_files("ws_event", day)), filesystem=st.filesystem)) as rows:
            st.replace_partition(doc_type, day, rows)
        table = st.read_partition(doc_type, day, columns=METADATA_COLUMNS)
        return dg.MaterializeResult(metadata=derived_metadata(st, doc_type, day, table))

    return _asset


# Backfill policy: Dagster's default, one day per run. Each day is an independent full
# rebuild with its own checks, retried on its own; two days run side by side under the
# run queue. (A multi-day run would report one materialisation and no per-day checks.)
derived_assets = [_derived_asset(name) for name in doctypes.FRAME_DERIVED]
