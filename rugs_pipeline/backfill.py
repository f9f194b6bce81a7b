"""Re-derive a range of days on the persistent Dagster instance (runs show in the UI)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator

import dagster as dg

from rugs_pipeline import config
from rugs_pipeline.store.lake import S3Path, parse_root


@dataclass
class DayResult:
    day: str
    success: bool
    run_id: str
    rows: dict[str, int] = field(default_factory=dict)
    checks_failed: list[str] = field(default_factory=list)


def days_between(first: date, last: date) -> list[str]:
    if last < first:
        raise ValueError(f"--to {last} is before --from {first}")
    if first.isoformat() < config.first_day():
        raise ValueError(f"--from {first} is before the first daily partition, {config.first_day()} (RUGS_FIRST_DAY): "
                         f"set RUGS_FIRST_DAY={first} to derive earlier days (and restart Dagster for the UI)")
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


# The full event log is on the instance (the UI shows it); the terminal gets warnings only.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
REPO_INSTANCE_CONFIG = Path(__file__).resolve().parent.parent / "dagster.yaml"


def instance() -> dg.DagsterInstance:
    """The instance of ``$DAGSTER_HOME``, default ``$RUGS_DATA_DIR/dagster_home`` like ``make run``."""
    root = parse_root(config.data_root())
    if isinstance(root, S3Path) and not os.environ.get("DAGSTER_HOME"):
        raise config.ConfigError(f"DAGSTER_HOME must be set when RUGS_DATA_DIR is {root}: the instance is local")
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(root / "dagster_home")))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # the same instance settings as `make run` (telemetry off, run queue, retries)
        shutil.copyfile(REPO_INSTANCE_CONFIG, home / "dagster.yaml")
    return dg.DagsterInstance.get()


def rederive(days: list[str], job_name: str = "rederive") -> Iterator[DayResult]:
    """One run per day of ``job_name`` (derived assets and their checks), in order."""
    from rugs_pipeline.definitions import defs  # the code location imports this module's callers

    job = defs.resolve_job_def(job_name)
    with instance() as inst:
        for day in days:
            result = job.execute_in_process(partition_key=day, instance=inst, raise_on_error=False,
                                            run_config=QUIET_CONSOLE)
            rows = {}
            for event in result.get_asset_materialization_events():
                metadata = event.event_specific_data.materialization.metadata
                if "rows" in metadata:
                    rows[event.asset_key.to_user_string()] = metadata["rows"].value
            failed = [c.asset_key.to_user_string() for c in result.get_asset_check_evaluations() if not c.passed]
            yield DayResult(day, result.success, result.run_id, rows, failed)
