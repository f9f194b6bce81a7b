"""Settings, in one place: ``Settings.from_env()`` reads every ``RUGS_*`` variable and ``DAGSTER_HOME``.

Nothing else reads the environment for a setting. A value that cannot work raises ``ConfigError``
naming the variable and the fix, when the settings are read (the CLI prints it as one line).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path
from typing import Mapping

from rugs_pipeline.errors import RugsError

DEFAULT_FEED_URL = "wss://backend.rugs.fun/socket.io/?EIO=4&transport=websocket&frontend-version=1.0"
FEED_ORIGIN = "https://rugs.fun"
# The first day the feed is known to have data: the oldest recordings of it (the REPLAYER games of
# ../shared/fixtures/real, game ids 20251029-...; the public recordings follow in December 2025).
# A replay of those games lands them on their own days, so partitions must reach back to it.
DEFAULT_FIRST_DAY = "2025-10-29"
DEFAULT_DUCKDB_MEMORY = "1GiB"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


class ConfigError(RugsError, ValueError):
    """A setting that cannot work, named in one line."""


def _env(name: str, default: str | bool | None = None):
    return field(default=default, metadata={"env": name})


@dataclass(frozen=True)
class Settings:
    """Every setting, its environment variable in its field's metadata (``env``). What each means: the README's
    Configuration table (a test keeps the two in step). None: a default computed where it is used."""

    data_dir: str = _env("RUGS_DATA_DIR", "~/rugs_data")  # store.lake.parse_root reads it
    spool_dir: str | None = _env("RUGS_SPOOL_DIR")
    first_day: str = _env("RUGS_FIRST_DAY", DEFAULT_FIRST_DAY)
    feed_url: str = _env("RUGS_FEED_URL", DEFAULT_FEED_URL)
    legacy_recorders: bool = _env("RUGS_LEGACY_RECORDERS", True)
    duckdb_memory: str = _env("RUGS_DUCKDB_MEMORY", DEFAULT_DUCKDB_MEMORY)
    derive_cron: str = _env("RUGS_DERIVE_CRON", "*/5 * * * *")
    # in_process by default: a day's run is ~22 small steps, and under multiprocess each is a new Python
    # process importing Dagster, DuckDB and pandera (~3 CPU-s) before milliseconds of work; that made
    # `dagster asset materialize --select 'ws_event*'` of a small day take minutes where `backfill`
    # (execute_in_process) took seconds. Measured in docs/SCALING.md (in_process 3-13x cheaper).
    executor: str = _env("RUGS_EXECUTOR", "in_process")  # defs/execution.py checks the name
    celery_broker: str | None = _env("RUGS_CELERY_BROKER")
    celery_backend: str | None = _env("RUGS_CELERY_BACKEND")
    dagster_home: str | None = _env("DAGSTER_HOME")
    bench_cache: str | None = _env("RUGS_BENCH_CACHE")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings of ``environ`` (default ``os.environ``); unset or empty variables take the default."""
        env = os.environ if environ is None else environ
        given = {f.name: env[f.metadata["env"]].strip() for f in fields(cls) if env.get(f.metadata["env"], "").strip()}
        day = given.get("first_day", DEFAULT_FIRST_DAY)
        if not _is_day(day):
            raise ConfigError(f"RUGS_FIRST_DAY={day!r} is not a day: give YYYY-MM-DD, e.g. {DEFAULT_FIRST_DAY}")
        legacy = given.get("legacy_recorders", "true").lower()
        if legacy not in _TRUE + _FALSE:
            raise ConfigError(f"RUGS_LEGACY_RECORDERS must be true or false, not {legacy!r}")
        given["legacy_recorders"] = legacy in _TRUE
        if "executor" in given:
            given["executor"] = given["executor"].lower()
        return cls(**given)

    @property
    def spool_path(self) -> Path | None:
        return Path(self.spool_dir).expanduser() if self.spool_dir else None


def _is_day(value: str) -> bool:
    try:
        return date.fromisoformat(value).isoformat() == value  # fromisoformat also takes 20251029
    except ValueError:
        return False

