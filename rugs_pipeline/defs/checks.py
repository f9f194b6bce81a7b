"""Schema checks of every asset's day.

``schema_valid`` blocks: a partition that breaks its schema version stops everything downstream
of it. ``schema_current`` only reports: files still at an older minor version are valid (a store
part-way through a migration), and the migration fixes them.
"""

import warnings

import dagster as dg

from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.partitions import daily
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.store import migration, schema
from rugs_pipeline.store.validation import validate_partition

MIGRATION_FIX = ("run the migrate_schema job for the day (UI: Jobs -> migrate_schema -> Materialize, or a backfill "
                 "over its days) or `rugs-pipeline migrate` for the whole store")


def schema_check(asset: dg.AssetKey) -> list[dg.AssetChecksDefinition]:
    """The two schema checks of ``asset``."""
    doc_type = asset.to_user_string()
    # Partitioned checks are "preview" in Dagster 1.13; they are what a daily check needs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [_valid_check(asset, doc_type), _current_check(asset, doc_type)]


def _valid_check(asset: dg.AssetKey, doc_type: str) -> dg.AssetChecksDefinition:
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


def _current_check(asset: dg.AssetKey, doc_type: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name="schema_current",
        blocking=False,
        partitions_def=daily,
        description=f"Every file of the day is at schema {schema.SCHEMA_VERSION}. Files at an older version are "
        f"read correctly but lack the newer columns: {MIGRATION_FIX}.",
    )
    def _check(context: dg.AssetCheckExecutionContext, store: StoreResource) -> dg.AssetCheckResult:
        st, day = store.store(), context.partition_key
        with st.partition_lock(doc_type, day, shared=True):
            old = migration.old_files(st, doc_type, day)
        manifest = (st.read_manifest() or {}).get("version")
        problems = []
        if old:
            found = sorted({str(version) for _, version in old})
            problems.append(f"{len(old)} file(s) at schema {', '.join(found)}, not {schema.SCHEMA_VERSION}: "
                            f"{MIGRATION_FIX}")
        if manifest != schema.SCHEMA_VERSION:
            problems.append(f"the store's manifest is at {manifest}: partly migrated until every day is")
        return dg.AssetCheckResult(
            passed=not old,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(problems) or None,
            metadata={"old_files": len(old), "manifest_version": str(manifest)},
        )

    return _check


schema_checks = [check for a in (ws_event, *derived_assets) for check in schema_check(a.key)]
