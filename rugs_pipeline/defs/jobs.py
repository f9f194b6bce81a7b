"""Jobs: what the sensor, the schedule and `rugs-pipeline backfill` launch, one day per run."""

import dagster as dg

from rugs_pipeline.defs.assets import ws_event

DERIVED = dg.AssetSelection.groups("derive")

land_job = dg.define_asset_job("land_ws_event", selection=[ws_event], description="Land sealed spool segments of a day.")
rederive_job = dg.define_asset_job(
    "rederive", selection=DERIVED, description="Re-derive a day from its landed ws_event (after a logic change)."
)
land_and_derive_job = dg.define_asset_job(
    "land_and_derive", selection=dg.AssetSelection.assets(ws_event) | DERIVED,
    description="Land a day's pending segments, then re-derive it.",
)
