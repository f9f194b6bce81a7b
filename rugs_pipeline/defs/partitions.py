"""Daily UTC partitions: from the first day the feed has data (``$RUGS_FIRST_DAY``) up to today (live data)."""
import dagster as dg

from rugs_pipeline import config

FIRST_DAY = config.Settings.from_env().first_day

daily = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)
