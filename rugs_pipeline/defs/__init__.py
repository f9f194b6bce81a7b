"""Dagster wiring only: the assets, checks, jobs and automation of ``definitions.py``.

Partitioned asset checks ("preview" in Dagster 1.13) and a partition mapping to a day that may not exist
yet (its "beta" ``allow_nonexistent_upstream_partitions``) are what daily data needs: their warnings are
filtered once, here, before any definition is built (the code location, the bench and the tests import
the definitions through this package).
"""

import warnings

import dagster as dg

warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.BetaWarning)
