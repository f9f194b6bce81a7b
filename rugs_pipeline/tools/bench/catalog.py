"""The catalog's cost: ``event_catalog`` of the day as landed, beside the day's derivation.

- ``from_scratch``: every file walked (a day catalogued for the first time, or after a migration).
- ``live_run``: what a scheduled run on the live day costs: the day catalogued before its last
  ``LIVE_FILES`` (5 minutes of 30 s segments, one ``RUGS_DERIVE_CRON`` interval), then the merge.

Each runs in a fresh process (``measure.isolated``) with the store prepared untimed beforehand.
"""

from __future__ import annotations

import os
from pathlib import Path

from rugs_pipeline.tools.bench.synth import DAY, store_holding
from rugs_pipeline.derive import catalog
from rugs_pipeline.store.layout import Store

LIVE_FILES = 10


def prepare(files: list[Path], root: Path, cached: bool) -> None:
    """A store holding ``files``; with ``cached``, the day's catalog built before its last LIVE_FILES landed."""
    store = store_holding(files[:-LIVE_FILES] if cached else files, root)
    if cached:
        catalog.build_day(store, DAY)
        for f in files[-LIVE_FILES:]:  # landed since
            os.link(f, store.partition_dir("ws_event", DAY) / f.name)


def build(root: Path) -> tuple[int, int, int]:
    """(files walked, event frames, catalog rows) of the day's catalog built in the store at ``root``."""
    result = catalog.build_day(Store(root), DAY)
    return result.walked, result.frames, result.table.num_rows
