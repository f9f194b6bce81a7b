"""The schema migration as a job: one run per day re-derives the day, then rewrites its ws_event files.

``schema_migration`` comes after the derived assets (and their blocking checks) in the run, so a
day is only reported migrated once all of it is; the run that migrates the last old day also
moves the manifest (``migration.finish``). Launch it from the UI (Jobs -> migrate_schema, a
backfill over the days) or with ``rugs-pipeline migrate``.
"""

import dagster as dg

from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.games import game_assets
from rugs_pipeline.defs.jobs import DERIVED
from rugs_pipeline.defs.partitions import daily
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.store import migration, schema

_DERIVED_KEYS = [key for a in (*derived_assets, *game_assets) for key in a.keys]


@dg.asset(
    deps=[ws_event, *_DERIVED_KEYS],
    partitions_def=daily,
    group_name="maintenance",
    kinds={"parquet", "python"},
    owners=["team:rugs-pipeline"],
    description=f"Migrates the day to schema {schema.SCHEMA_VERSION}: rewrites its ws_event files at older versions "
    "(new typed columns computed from raw_json; atomic, same file names, so a re-run is idempotent) after the job "
    "re-derived its derived datasets; then sets manifests/schema_version.json to the new version once no day of "
    "the store is left at an older one.",
)
def schema_migration(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    st, day = store.store(), context.partition_key
    st.ensure_manifest()  # a store at a newer or another major version is refused here
    rewritten = migration.migrate_ws_event(st, day)
    migrated = migration.finish(st)
    context.log.info(f"{day}: rewrote {rewritten} ws_event file(s); store {'migrated' if migrated else 'partly migrated'}")
    return dg.MaterializeResult(metadata={
        "ws_event_files_rewritten": rewritten,
        "store_migrated": migrated,
        "manifest_version": st.read_manifest()["version"],
    })


migrate_job = dg.define_asset_job(
    "migrate_schema", selection=DERIVED | dg.AssetSelection.assets(schema_migration),
    description=f"Migrate a day to schema {schema.SCHEMA_VERSION}: re-derive it, then rewrite its ws_event files.",
)
