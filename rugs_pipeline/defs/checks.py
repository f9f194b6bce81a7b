"""Blocking checks: a partition that breaks schema 1.0.0 stops everything downstream of it."""

import warnings

import dagster as dg

from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.partitions import daily
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.store import schema
from rugs_pipeline.store.validation import validate_partition


def schema_check(asset: dg.AssetKey) -> dg.AssetChecksDefinition:
    doc_type = asset.to_user_string()
    # Partitioned checks are "preview" in Dagster 1.13; they are what a daily check needs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return _build_check(asset, doc_type)


def _build_check(asset: dg.AssetKey, doc_type: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=asset,
        name=f"schema_{schema.SCHEMA_VERSION.replace('.', '_')}",
        blocking=True,
        partitions_def=daily,
        description=f"pandera: schema version {schema.SCHEMA_VERSION} (manifest and file metadata), "
        "column types and nullability, and this doc_type's invariants.",
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


schema_checks = [schema_check(a.key) for a in (ws_event, *derived_assets)]
