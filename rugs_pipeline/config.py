"""Settings read from the environment, in one place."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

DEFAULT_FEED_URL = "wss://backend.rugs.fun/socket.io/?EIO=4&transport=websocket&frontend-version=1.0"
FEED_ORIGIN = "https://rugs.fun"


class ConfigError(ValueError):
    """A setting that cannot work, named in one line."""


def data_root() -> str:
    """``$RUGS_DATA_DIR`` as given, default ``~/rugs_data``: a folder, ``file:///folder`` or ``s3://bucket/prefix``
    (``store.lake.parse_root`` reads it)."""
    return os.environ.get("RUGS_DATA_DIR") or "~/rugs_data"


def spool_dir() -> Path | None:
    """``$RUGS_SPOOL_DIR``: the spool apart from the store, e.g. shared storage that recorders on other
    machines write; unset, ``<data dir>/spool``."""
    value = os.environ.get("RUGS_SPOOL_DIR")
    return Path(value).expanduser() if value else None


# The first day the feed is known to have data: the oldest recordings of it (the REPLAYER games of
# ../shared/fixtures/real, game ids 20251029-...; the public recordings follow in December 2025).
# A replay of those games lands them on their own days, so partitions must reach back to it.
DEFAULT_FIRST_DAY = "2025-10-29"


def first_day() -> str:
    """``$RUGS_FIRST_DAY`` (YYYY-MM-DD, default 2025-10-29): the first daily partition. Earlier days have no
    partition (the UI counts every day from it as missing until filled): set it earlier before importing
    older recordings."""
    value = (os.environ.get("RUGS_FIRST_DAY") or DEFAULT_FIRST_DAY).strip()
    try:
        if date.fromisoformat(value).isoformat() == value:  # fromisoformat also takes 20251029
            return value
    except ValueError:
        pass
    raise ConfigError(f"RUGS_FIRST_DAY={value!r} is not a day: give YYYY-MM-DD, e.g. {DEFAULT_FIRST_DAY}")


def feed_url() -> str:
    return os.environ.get("RUGS_FEED_URL") or DEFAULT_FEED_URL


def legacy_recorders() -> bool:
    """``$RUGS_LEGACY_RECORDERS`` (default true): the recorder also writes the legacy JSONL capture."""
    value = (os.environ.get("RUGS_LEGACY_RECORDERS") or "true").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"RUGS_LEGACY_RECORDERS must be true or false, not {value!r}")


DEFAULT_DUCKDB_MEMORY = "1GiB"


def duckdb_memory() -> str:
    """``$RUGS_DUCKDB_MEMORY`` (default 1GiB): what one derivation's DuckDB may hold before it spills to
    disk, so that deriving a day takes the same memory whatever the day's size."""
    return os.environ.get("RUGS_DUCKDB_MEMORY") or DEFAULT_DUCKDB_MEMORY
