"""Re-derive a range of days on the persistent Dagster instance (runs show in the UI).

A day is run only when it has data: landed ``ws_event`` files, or (when landing) sealed spool
segments. Any other day is skipped with one line naming the nearest days that have data, so a
backfill of the wrong day writes no empty files. Progress is reported per step of each day's
run, read from the instance's event log while the run executes in this process.
"""

from __future__ import annotations

import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterator

import dagster as dg
from rich.console import Console
from rich.table import Table

from rugs_pipeline import config
from rugs_pipeline.formats.spool import SEALED_SUFFIX
from rugs_pipeline.store.lake import S3Path, parse_root
from rugs_pipeline.store.layout import Store


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
    first_day = config.Settings.from_env().first_day
    if first.isoformat() < first_day:
        raise ValueError(f"--from {first} is before the first daily partition, {first_day} (RUGS_FIRST_DAY): "
                         f"set RUGS_FIRST_DAY={first} to derive earlier days (and restart Dagster for the UI)")
    return [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def day_ranges(days: list[str]) -> list[tuple[str, str]]:
    """Runs of consecutive days as (first, last)."""
    ranges: list[tuple[str, str]] = []
    for day in sorted(set(days)):
        if ranges and date.fromisoformat(ranges[-1][1]) + timedelta(days=1) == date.fromisoformat(day):
            ranges[-1] = (ranges[-1][0], day)
        else:
            ranges.append((day, day))
    return ranges


def backfill_commands(days: list[str]) -> list[str]:
    """The commands that land and derive exactly ``days`` (one per run of consecutive days)."""
    return [f"rugs-pipeline backfill --from {first} --to {last} --land" for first, last in day_ranges(days)]


def spool_days(spool_dir: Path) -> list[str]:
    """Days whose spool folder holds a sealed segment (landed or not)."""
    if not spool_dir.is_dir():
        return []
    return sorted(p.name for p in spool_dir.iterdir() if p.is_dir() and next(p.glob(f"*{SEALED_SUFFIX}"), None))


def _nearest(day: str, candidates: list[str]) -> str:
    before = [d for d in candidates if d < day]
    after = [d for d in candidates if d > day]
    if not before and not after:
        return "the spool and the store hold no day yet: record or import first"
    named = ([f"{before[-1]} (before)"] if before else []) + ([f"{after[0]} (after)"] if after else [])
    return "nearest days with data: " + ", ".join(named)


def plan(days: list[str], store: Store, land: bool) -> tuple[list[str], list[str]]:
    """(the days to run, one line for each day skipped for lack of data)."""
    landed, spooled = set(store.partition_days("ws_event")), set(spool_days(store.spool_dir))
    usable = landed | spooled if land else landed
    run, skipped = [], []
    for day in days:
        if day in usable:
            run.append(day)
        elif day in spooled:
            skipped.append(f"no landed data for {day}: its spool segments are not landed yet; add --land")
        else:
            skipped.append(f"no data for {day} in the spool ({store.spool_dir}) or the store (ws_event), skipped; "
                           + _nearest(day, sorted(landed | spooled)))
    return run, skipped


# The full event log is on the instance (the UI shows it); the terminal gets warnings only.
QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
REPO_INSTANCE_CONFIG = Path(__file__).resolve().parents[2] / "dagster.yaml"


def dagster_home() -> Path:
    """``$DAGSTER_HOME``, default ``$RUGS_DATA_DIR/dagster_home`` like ``make run``, ready for an instance."""
    settings = config.Settings.from_env()
    root = parse_root(settings.data_dir)
    if isinstance(root, S3Path) and not settings.dagster_home:
        raise config.ConfigError(f"DAGSTER_HOME must be set when RUGS_DATA_DIR is {root}: the instance is local")
    home = Path(settings.dagster_home or str(root / "dagster_home"))
    os.environ["DAGSTER_HOME"] = str(home)  # where dg.DagsterInstance.get() finds the instance
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # the same instance settings as `make run` (telemetry off, run queue, retries)
        shutil.copyfile(REPO_INSTANCE_CONFIG, home / "dagster.yaml")
    return home


def instance() -> dg.DagsterInstance:
    """The instance of ``dagster_home()``."""
    dagster_home()
    return dg.DagsterInstance.get()


# on_step(day, step key, steps finished, steps in the run): at each step's start and end.
OnStep = Callable[[str, str, int, int], None]
_STEP_EVENTS = {dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE}


class _StepFollower(threading.Thread):
    """Follows a run's step events in the instance's event log while the run executes in this process."""

    def __init__(self, inst: dg.DagsterInstance, run_id: str, day: str, total: int, on_step: OnStep,
                 interval_s: float = 0.25) -> None:
        super().__init__(name=f"follow-{run_id[:8]}", daemon=True)
        self.inst, self.run_id, self.day, self.total, self.on_step = inst, run_id, day, total, on_step
        self.interval_s, self.cursor, self.finished = interval_s, None, 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            self.poll()
        self.poll()  # the run's last events

    def poll(self) -> None:
        while True:
            page = self.inst.get_records_for_run(self.run_id, cursor=self.cursor, of_type=_STEP_EVENTS)
            for record in page.records:
                entry = record.event_log_entry
                self.finished += entry.dagster_event.event_type != dg.DagsterEventType.STEP_START
                self.on_step(self.day, entry.step_key, self.finished, self.total)
            self.cursor = page.cursor
            if not page.has_more:
                return


def rederive(days: list[str], job_name: str = "rederive", on_step: OnStep | None = None) -> Iterator[DayResult]:
    """One run per day of ``job_name`` (derived assets and their checks), in order."""
    from rugs_pipeline.definitions import defs  # the code location imports this module's callers

    job = defs.resolve_job_def(job_name)
    steps = len(job.graph.nodes)  # one step per op: each asset, and each check of its own
    with instance() as inst:
        for day in days:
            run_id = str(uuid.uuid4())  # known before the run starts, to follow its events
            follower = _StepFollower(inst, run_id, day, steps, on_step) if on_step else None
            if follower:
                follower.start()
            try:
                result = job.execute_in_process(partition_key=day, instance=inst, raise_on_error=False,
                                                run_config=QUIET_CONSOLE, run_id=run_id)
            finally:
                if follower:
                    follower.stopped.set()
                    follower.join()
            rows = {}
            for event in result.get_asset_materialization_events():
                metadata = event.event_specific_data.materialization.metadata
                if "rows" in metadata:
                    rows[event.asset_key.to_user_string()] = metadata["rows"].value
            failed = [c.asset_key.to_user_string() for c in result.get_asset_check_evaluations() if not c.passed]
            yield DayResult(day, result.success, result.run_id, rows, failed)


@contextmanager
def progress_console(console: Console) -> Iterator[Console]:
    """A console that keeps drawing on ``console``'s terminal while a step runs.

    Dagster captures each step's output by pointing the process's stdout descriptor at its
    compute log; a copy of the descriptor taken before still reaches the terminal.
    """
    if not console.is_terminal:
        yield console
        return
    with os.fdopen(os.dup(console.file.fileno()), "w") as terminal:
        yield Console(file=terminal, width=console.width)


def result_table(results: list[DayResult]) -> Table:
    """One row a day; rows per dataset as ``name=count`` words, so 80 columns wrap between them, never cut one."""
    table = Table("day", "run", "rows written", "checks", title="backfill")
    for column in table.columns:
        column.overflow = "fold"
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for r in results:
        checks = "passed" if r.success and not r.checks_failed else f"FAILED {' '.join(r.checks_failed)}".strip()
        rows = " ".join(f"{name}={count}" for name, count in sorted(r.rows.items())) or "-"
        table.add_row(r.day, r.run_id[:8], rows, checks)
    return table
