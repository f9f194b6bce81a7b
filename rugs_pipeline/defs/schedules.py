"""Nightly re-derivation of the recent days (late frames, logic changes)."""

from datetime import timedelta

import dagster as dg

from rugs_pipeline.defs.jobs import rederive_job

REDERIVE_DAYS = 3


@dg.schedule(job=rederive_job, cron_schedule="30 0 * * *", execution_timezone="UTC",
             default_status=dg.DefaultScheduleStatus.RUNNING)
def nightly_rederive(context: dg.ScheduleEvaluationContext):
    """Re-derive the last REDERIVE_DAYS closed days from their landed ws_event."""
    today = context.scheduled_execution_time.date()
    for back in range(1, REDERIVE_DAYS + 1):
        day = (today - timedelta(days=back)).isoformat()
        yield dg.RunRequest(partition_key=day, run_key=f"rederive-{day}-{today.isoformat()}")
