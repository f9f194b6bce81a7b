"""Daily UTC partitions: from before the oldest recordings users bring, up to today (live data)."""
import dagster as dg

FIRST_DAY = "2025-01-01"

daily = dg.DailyPartitionsDefinition(start_date=FIRST_DAY, timezone="UTC", end_offset=1)
