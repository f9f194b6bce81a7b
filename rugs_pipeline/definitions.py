"""The Dagster code location: ``dagster dev -m rugs_pipeline.definitions``."""

import dagster as dg

from rugs_pipeline import config
from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.catalog import catalog_assets, catalog_checks, events_index
from rugs_pipeline.defs.checks import schema_checks
from rugs_pipeline.defs.compaction import ws_event_compaction
from rugs_pipeline.defs.execution import executor_from_env
from rugs_pipeline.defs.games import game_assets, game_checks
from rugs_pipeline.defs.migration import migrate_job, schema_migration
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.defs.jobs import land_and_derive_job, land_job, rederive_job
from rugs_pipeline.defs.schedules import nightly_rederive
from rugs_pipeline.defs.sensors import derive_automation_sensor, spool_sensor
from rugs_pipeline.store.lake import S3Path, parse_root

# An s3 lake is not compacted (store/compaction.py): without the asset, automation does not fail it every day.
s3_lake = isinstance(parse_root(config.Settings.from_env().data_dir), S3Path)
compaction = [] if s3_lake else [ws_event_compaction]
# Nor the catalog's search index, which needs a local folder (derive/search.py).
catalog = [a for a in catalog_assets if a is not events_index] if s3_lake else catalog_assets

defs = dg.Definitions(
    assets=[ws_event, *compaction, *derived_assets, *game_assets, schema_migration, *catalog],
    asset_checks=[*schema_checks, *game_checks, *catalog_checks],
    jobs=[land_job, rederive_job, land_and_derive_job, migrate_job],
    sensors=[spool_sensor, derive_automation_sensor],
    schedules=[nightly_rederive],
    resources={"store": StoreResource()},
    executor=executor_from_env(),  # $RUGS_EXECUTOR, default in_process
)
