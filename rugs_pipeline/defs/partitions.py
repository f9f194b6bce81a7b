"""Daily UTC partitions: from the first day the feed has data (``$RUGS_FIRST_DAY``) up to today (live data),
and the automation conditions over them."""
from datetime import timedelta

import dagster as dg

from rugs_pipeline import config

FIRST_DAY = config.Settings.from_env().first_day

daily = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)

# eager() acts on the latest day only: a late or re-landed day (an import of last month's recording) must propagate
LOOKBACK = timedelta(days=800)
today = dg.AutomationCondition.in_latest_time_window()


def eager_days(*, wait_for_running_deps: bool = True, wait_for_missing_deps: bool = True) -> dg.AutomationCondition:
    """eager() on every day of LOOKBACK. Landing runs every few seconds on a live day: waiting for no dep in
    progress starves what follows it (landing is atomic per file, reading alongside is safe)."""
    condition = dg.AutomationCondition.eager().replace(
        "in_latest_time_window", dg.AutomationCondition.in_latest_time_window(lookback_delta=LOOKBACK))
    if not wait_for_running_deps:
        condition = condition.without(~dg.AutomationCondition.any_deps_in_progress())
    if not wait_for_missing_deps:
        condition = condition.without(~dg.AutomationCondition.any_deps_missing())
    return condition


def at_most_every(cron: str) -> dg.AutomationCondition:  # a tick of cron (UTC) since last requested
    return dg.AutomationCondition.cron_tick_passed(cron, "UTC").since(dg.AutomationCondition.newly_requested())
