"""Schema checks of every asset's day.

``schema_valid`` (every asset) blocks: a partition that breaks its schema version stops everything
downstream of it. ``schema_current`` (on ``ws_event``, for every doc_type of the day: a derived
partition is rewritten whole, so only landing leaves a day mixed) only reports: files still at an
older minor version are valid (a store part-way through a migration), and the migration fixes them.
"""

import dagster as dg

from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.partitions import daily
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.store import migration, schema
from rugs_pipeline.store.validation import validate_partition

MIGRATION_FIX = ("run the migrate_schema job for the day (UI: Jobs -> migrate_schema -> Materialize, or a backfill "
                 "over its days) or `rugs-pipeline migrate` for the whole store")


def schema_check(asset: dg.AssetKey) -> dg.AssetChecksDefinition:
    doc_type = asset.to_user_string()

    @dg.asset_check(
        asset=asset,
        name="schema_valid",
        blocking=True,
        partitions_def=daily,
        description="pandera: each file against the schema version it was written at (manifest and file "
        f"metadata, a version of the registry up to {schema.SCHEMA_VERSION}), column types and nullability, "
        "and this doc_type's invariants.",
    )
    def _check(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
        result = validate_partition(store.store(), doc_type, context.partition_key)
        return dg.AssetCheckResult(
            passed=result.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(result.failures[:20]) or None,
            metadata={"rows": result.rows, "files": result.files, "failures": len(result.failures)},
        )

    return _check


def current_check(asset: dg.AssetKey) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="schema_current",
        blocking=False,
        partitions_def=daily,
        description=f"Every file of the day, of every doc_type, is at schema {schema.SCHEMA_VERSION}. Files at an "
        f"older version are read correctly but lack the newer columns: {MIGRATION_FIX}.",
    )
    def _check(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
        st, day = store.store(), context.partition_key
        old = {}
        for doc_type in schema.DOC_TYPES:
            with st.partition_lock(doc_type, day, shared=True):
                old[doc_type] = migration.old_files(st, doc_type, day)
        found = {doc_type: files for doc_type, files in old.items() if files}
        manifest = (st.read_manifest() or {}).get("version")
        problems = []
        if found:
            listed = ", ".join(f"{doc_type} {len(files)} at {'/'.join(sorted({str(v) for _, v in files}))}"
                               for doc_type, files in found.items())
            problems.append(f"file(s) not at {schema.SCHEMA_VERSION}: {listed}: {MIGRATION_FIX}")
        if manifest != schema.SCHEMA_VERSION:
            problems.append(f"the store's manifest is at {manifest}: partly migrated until every day is")
        return dg.AssetCheckResult(
            passed=not found,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(problems) or None,
            metadata={"old_files": sum(len(f) for f in found.values()), "manifest_version": str(manifest)},
        )

    return _check


schema_checks = [*(schema_check(a.key) for a in (ws_event, *derived_assets)), current_check(ws_event.key)]
