"""Sensors: land sealed spool segments; let automation re-derive what changed."""

import hashlib
from collections import defaultdict

import dagster as dg

from rugs_pipeline.defs.jobs import land_job
from rugs_pipeline.defs.partitions import daily
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.store import landing


@dg.sensor(job=land_job, minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING)
def spool_sensor(context: dg.SensorEvaluationContext, store: StoreResource):
    """One run per day that has sealed, unlanded segments.

    A directory listing only. The run key names the exact set of segments, so the
    same set is never launched twice (a run still in progress is not repeated);
    landing itself is idempotent, so overlapping runs are harmless.
    """
    by_day: dict[str, list[str]] = defaultdict(list)
    for segment in landing.pending_segments(store.store()):
        by_day[segment.day].append(segment.name)
    if not by_day:
        return dg.SkipReason("no sealed segments waiting")
    valid_days = set(daily.get_partition_keys(dynamic_partitions_store=None))
    requests, outside = [], []
    for day, names in sorted(by_day.items()):
        if day not in valid_days:
            context.log.warning(f"{len(names)} segment(s) of {day} are outside the partitions ({daily.start:%Y-%m-%d}..today): "
                                "set RUGS_FIRST_DAY to that day or earlier and restart Dagster")
            outside.append(day)
            continue
        digest = hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()[:16]
        requests.append(
            dg.RunRequest(partition_key=day, run_key=f"land-{day}-{digest}", tags={"rugs/segments": str(len(names))})
        )
    return requests or dg.SkipReason(f"pending segments of {', '.join(outside)} are outside the partitions "
                                     f"({daily.start:%Y-%m-%d}..today): set RUGS_FIRST_DAY to the first of them or "
                                     "earlier and restart Dagster")


derive_automation_sensor = dg.AutomationConditionSensorDefinition(
    "derive_automation",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
