"""The catalog's cost: ``event_catalog`` of the day as landed, beside the day's derivation.

- ``from_scratch``: every file walked (a day catalogued for the first time, or after a migration).
- ``live_run``: what a scheduled run on the live day costs: the day catalogued before its last
  ``LIVE_FILES`` (5 minutes of 30 s segments, one ``RUGS_DERIVE_CRON`` interval), then the merge.

Each runs in a fresh process (``measure.isolated``) with the store prepared untimed beforehand. Each also
reports the CPU seconds it used (all its threads): on a shared machine wall times vary 2x with the load,
CPU times much less, so the ratio of CPU times is the steadier comparison.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from rugs_pipeline.tools.bench import derivation
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


def build(root: Path) -> tuple[int, int, int, float]:
    """(files walked, event frames, catalog rows, CPU seconds) of the day's catalog built in the store at ``root``."""
    start = _cpu_seconds()
    result = catalog.build_day(Store(root), DAY)
    return result.walked, result.frames, result.table.num_rows, _cpu_seconds() - start


def derive(files: list[Path], root: Path) -> float:
    """The CPU seconds of ``derivation.pipeline_derive`` (every derived asset of the day)."""
    start = _cpu_seconds()
    derivation.pipeline_derive(files, root)
    return _cpu_seconds() - start


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
