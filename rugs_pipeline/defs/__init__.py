"""Dagster wiring only. Partitioned checks ("preview" in Dagster 1.13) and a mapping to a day that may not exist
yet ("beta") are what daily data needs: their warnings are filtered once, here, before any definition is built."""
import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
