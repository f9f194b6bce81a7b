"""Landing: how long until a received frame is a row the seed query returns, and what a landing run costs.

A frame waits three times before its row is visible (README "What runs where"):

1. in the open spool segment until it is sealed: uniform over the seal interval (30 s);
2. for the ``spool_sensor``'s next tick: uniform over its period, which is its 15 s minimum
   interval stretched to the sensor daemon's next 5 s loop;
3. in the run queue (dequeued every ``dequeue_interval_seconds`` of dagster.yaml), then for the
   landing run: process start, Dagster, landing the segment; the file is visible as soon as it
   is written.

Waits 1 and 2 and the queue are Dagster's and the recorder's documented schedules, drawn at
random here; the landing run is measured: ``dagster job execute`` of ``land_ws_event`` (the job
the sensor launches, with its blocking check, under the default executor) landing one new
30 s segment into an empty day and into the full synthetic day (whose files the day's earlier
runs have checked already, as they would have). Its peak memory, for both, is the landing
figure of the memory line.
"""

from __future__ import annotations

import os
import random
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from rugs_pipeline.tools.bench.measure import isolated
from rugs_pipeline.tools.bench.synth import DAY, SEAL_INTERVAL_S, SyntheticDay
from rugs_pipeline.formats import spool
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.store.validation import validate_partition

SENSOR_INTERVAL_S = 15.0  # spool_sensor's minimum_interval_seconds
SENSOR_LOOP_S = 5.0  # dagster's sensor daemon wakes at most this often
DRAWS = 200_000
DAGSTER = Path(sys.executable).with_name("dagster")
INSTANCE_YAML = Path(__file__).resolve().parents[3] / "dagster.yaml"


def dequeue_s() -> float:
    """The run queue's dequeue interval in the project's instance config (Dagster's default: 5 s)."""
    config = yaml.safe_load(INSTANCE_YAML.read_text()) if INSTANCE_YAML.exists() else {}
    return float(((config or {}).get("run_coordinator") or {}).get("config", {}).get("dequeue_interval_seconds", 5))


@dataclass(frozen=True)
class LandingRun:
    seconds: float  # wall time of `dagster job execute`
    peak_rss: int  # bytes, the largest process of the run


@dataclass(frozen=True)
class LatencyResult:
    p50: float
    p99: float
    empty_day: LandingRun
    full_day: LandingRun


def measure_landing(day: SyntheticDay, work: Path) -> LatencyResult:
    empty = _landing_run(day, work / "empty", with_day=False)
    full = _landing_run(day, work / "full", with_day=True)
    p50, p99 = _percentiles(full.seconds)
    return LatencyResult(p50, p99, empty, full)


def _percentiles(run_s: float, seed: int = 5) -> tuple[float, float]:
    rng, queue = random.Random(seed), dequeue_s()
    draws = sorted(
        rng.uniform(0, SEAL_INTERVAL_S)
        + rng.uniform(0, SENSOR_INTERVAL_S + rng.uniform(0, SENSOR_LOOP_S))
        + rng.uniform(0, queue)
        + run_s
        for _ in range(DRAWS)
    )
    return draws[DRAWS // 2], draws[int(DRAWS * 0.99)]


def _landing_run(day: SyntheticDay, root: Path, with_day: bool) -> LandingRun:
    """A store holding (or not) the synthetic day plus one new sealed segment; land it the way the sensor would."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    if with_day:  # hard links: landing only adds files
        shutil.copytree(day.root / "events_parquet", root / "events_parquet", copy_function=os.link)
        # the day's earlier landing runs have checked its files (their verdicts are kept): not timed
        validate_partition(Store(root), landing.DOC_TYPE, DAY)
    header, records, _ = spool.read_segment(spool.sealed_segments(day.store.spool_dir, DAY)[-1].path)
    spool.write_sealed_segment(root / "spool", spool.SegmentHeader("late" + header.session_id, header.source),
                               records)
    env = {**os.environ, "RUGS_DATA_DIR": str(root), "DAGSTER_HOME": str(root / "dagster_home")}
    (root / "dagster_home").mkdir()
    run = isolated(_execute_land_job, env).value
    if landing.pending_segments(Store(root), DAY):
        raise RuntimeError("the landing run did not land the segment")
    return run


def _execute_land_job(env: dict[str, str]) -> LandingRun:
    start = time.perf_counter()
    out = subprocess.run([str(DAGSTER), "job", "execute", "-m", "rugs_pipeline.definitions", "-j", "land_ws_event",
                          "--tags", f'{{"dagster/partition": "{DAY}"}}'], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"land_ws_event failed: {out.stderr[-2000:]}")
    # the largest process of the run (the step's own, under the multiprocess executor)
    return LandingRun(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
