"""The measurements behind docs/SCALING.md, on this machine.

    .venv/bin/python deploy/measure.py [instance] [automation] [daemon] [executor] [queue] [sensor] [landing]

instance    SQLite vs Postgres: a land run's cost, history writes and the queries the UI runs
automation  one automation tick over every daily partition, by partition count and instance
daemon      sensor tick -> queued -> launched -> finished, through the real daemon, both instances
executor    a land run and a derivation run of one day under each local executor: wall and CPU time
queue       the live shape for 6 minutes (simulator, recorder sealing every 10 s as in make demo, daemon):
            land runs queued vs finished, under each local executor
sensor      spool_sensor's tick, by number of retained segments
landing     30-s segments of the simulator's feed: land_day alone, and as a Dagster run

Postgres is a throwaway server (rugs_pipeline.testing.postgres_server, as in test_postgres.py). One line per figure on stdout.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext, suppress
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import yaml

from rugs_pipeline.formats import spool
from rugs_pipeline.store import landing, schema
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import game_frames, postgres_server, sealed_segment

REPO = Path(__file__).resolve().parent.parent
BIN = REPO / ".venv" / "bin"
T0_2025 = 1_735_689_600 * 10**9  # 2025-01-01 00:00 UTC
SEG_FRAMES = 350  # a 30-s segment of the live feed: ~1M frames/day / 2,880 segments
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def say(name: str, value: float, unit: str, note: str = "") -> None:
    print(f"{name:<58} {value:>10.3f} {unit:<8} {note}", flush=True)


def timed(fn, *args, **kwargs) -> float:
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


def day_of(n: int) -> str:
    return (date(2025, 1, 1) + timedelta(days=n)).isoformat()


@contextmanager
def instance_home(kind: str, pg: dict[str, str] | None, automation: bool = True):
    """$DAGSTER_HOME with dagster.yaml (sqlite) or the Postgres variant; yields the environment naming it."""
    home = Path(tempfile.mkdtemp(prefix=f"rugs_{kind}_"))
    source = REPO / ("deploy/dagster.postgres.yaml" if kind == "postgres" else "dagster.yaml")
    settings = yaml.safe_load(source.read_text())
    if not automation:
        settings["auto_materialize"] = {"enabled": False, "use_sensors": False}
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    env = {**os.environ, **(pg or {}), "DAGSTER_HOME": str(home)}
    try:
        yield env
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def environ(env: dict[str, str]):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextmanager
def fresh_database(pg: dict[str, str] | None, bulk: bool = False):
    """Each measurement on an empty Postgres database; ``bulk``: commits without waiting for the WAL flush,
    for setting up history fast (one commit per event is what a run writes, and is measured elsewhere)."""
    if pg is None:
        yield None
        return
    import psycopg2

    name = f"m{time.monotonic_ns()}"
    conn = psycopg2.connect(host=pg["RUGS_PG_HOST"], port=pg["RUGS_PG_PORT"], user=pg["RUGS_PG_USER"],
                            password=pg["RUGS_PG_PASSWORD"], dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
        if bulk:
            cur.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
    try:
        yield {**pg, "RUGS_PG_DB": name}
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE {name} WITH (FORCE)")
        conn.close()


def measure_instance(kind: str, pg: dict[str, str] | None) -> None:
    from rugs_pipeline.definitions import defs

    data = Path(tempfile.mkdtemp(prefix="rugs_data_"))
    with fresh_database(pg) as db, instance_home(kind, db) as env, environ({**env, "RUGS_DATA_DIR": str(data)}):
        store = Store(data)
        runs = 8
        for n in range(runs):
            sealed_segment(store, f"s{n}", game_frames(f"g{n}", 20), start_ns=T0_2025 + n * 86_400 * 10**9)
        land = defs.resolve_job_def("land_ws_event")
        with dg.DagsterInstance.get() as inst:
            land.execute_in_process(partition_key=day_of(runs), instance=inst, run_config=QUIET)  # warm-up: imports, tables
            times = [timed(land.execute_in_process, partition_key=day_of(n), instance=inst, run_config=QUIET)
                     for n in range(runs)]
            say(f"{kind}: land run in process (1 small segment), median", statistics.median(times), "s")
            events = sum(len(inst.all_logs(r.run_id)) for r in inst.get_runs(limit=runs))
            say(f"{kind}: events a land run writes", events / runs, "events")

            days = len(dg.DailyPartitionsDefinition(start_date="2025-01-01", end_offset=1).get_partition_keys())
            start = time.perf_counter()
            for doc_type in schema.DOC_TYPES:
                for n in range(days):
                    inst.report_runless_asset_event(dg.AssetMaterialization(doc_type, partition=day_of(n)))
            elapsed = time.perf_counter() - start
            say(f"{kind}: materialisations written ({len(schema.DOC_TYPES)} assets x {days} days)", len(schema.DOC_TYPES) * days / elapsed, "per s")
            key = dg.AssetKey("game_tick")
            say(f"{kind}: materialised partitions of one asset ({days})",
                statistics.median(timed(inst.get_materialized_partitions, key) for _ in range(5)) * 1000, "ms")
            say(f"{kind}: latest 100 materialisations of one asset",
                statistics.median(timed(inst.fetch_materializations, key, limit=100) for _ in range(5)) * 1000, "ms")
            say(f"{kind}: runs page (50 run records)",
                statistics.median(timed(inst.get_run_records, limit=50) for _ in range(5)) * 1000, "ms")
    shutil.rmtree(data, ignore_errors=True)


def measure_automation(kind: str, first_day: str, pg: dict[str, str] | None) -> None:
    """In a child process: the partitions definition is fixed when the definitions are imported."""
    code = f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
import dagster as dg
import rugs_pipeline.defs.partitions as partitions
partitions.daily = dg.DailyPartitionsDefinition(start_date={first_day!r}, timezone="UTC", end_offset=1)
from rugs_pipeline.definitions import defs
from rugs_pipeline.store import schema
days = partitions.daily.get_partition_keys()
with dg.DagsterInstance.get() as inst:
    # landed days first, then derived ones: the steady state, where automation has nothing to do
    for doc_type in ("ws_event", *[d for d in schema.DOC_TYPES if d != "ws_event"]):
        for day in days:
            inst.report_runless_asset_event(dg.AssetMaterialization(doc_type, partition=day))
    start = time.perf_counter()
    first = dg.evaluate_automation_conditions(defs=defs, instance=inst)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    second = dg.evaluate_automation_conditions(defs=defs, instance=inst, cursor=first.cursor)
    warm = time.perf_counter() - start
    # months of recordings imported at once: every day's ws_event changes
    for day in days:
        inst.report_runless_asset_event(dg.AssetMaterialization("ws_event", partition=day))
    start = time.perf_counter()
    third = dg.evaluate_automation_conditions(defs=defs, instance=inst, cursor=second.cursor)
    burst = time.perf_counter() - start
    print(len(days), cold, warm, burst, first.total_requested, second.total_requested, third.total_requested)
"""
    with fresh_database(pg, bulk=True) as db, instance_home(kind, db) as env:
        out = subprocess.run([str(BIN / "python"), "-c", code], env=env, capture_output=True, text=True, check=True)
    days, cold, warm, burst, req1, req2, req3 = out.stdout.split()[-7:]
    say(f"{kind}: automation tick, {days} days all derived, first tick", float(cold), "s", f"requested {req1}")
    say(f"{kind}: automation tick, {days} days all derived, next tick", float(warm), "s", f"requested {req2}")
    say(f"{kind}: automation tick after all {days} days re-landed", float(burst), "s", f"requested {req3}")


def measure_daemon(kind: str, pg: dict[str, str] | None) -> None:
    data = Path(tempfile.mkdtemp(prefix="rugs_data_"))
    store = Store(data)
    days = 3
    for n in range(days):
        sealed_segment(store, f"s{n}", game_frames(f"g{n}", 20), start_ns=T0_2025 + n * 86_400 * 10**9)
    with fresh_database(pg) as db, instance_home(kind, db, automation=False) as env:
        env["RUGS_DATA_DIR"] = str(data)
        started = time.time()
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            with environ(env), dg.DagsterInstance.get() as inst:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    records = inst.get_run_records(dg.RunsFilter(job_name="land_ws_event"))
                    if len(records) == days and all(r.dagster_run.is_finished for r in records):
                        break
                    time.sleep(0.5)
                records = sorted(records, key=lambda r: r.create_timestamp)
                assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records), records
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
            with suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGKILL)
    shutil.rmtree(data, ignore_errors=True)
    say(f"{kind}: daemon start -> first run queued (workspace load, sensor)",
        records[0].create_timestamp.timestamp() - started, "s")
    say(f"{kind}: queued -> running (queue, launcher, run worker boot), median",
        statistics.median(r.start_time - r.create_timestamp.timestamp() for r in records), "s")
    say(f"{kind}: running -> success (2 steps, multiprocess), median",
        statistics.median(r.end_time - r.start_time for r in records), "s")
    say(f"{kind}: {days} land runs, first queued -> last finished", records[-1].end_time - records[0].create_timestamp.timestamp(), "s",
        "one landing run at a time (tag limit)")


def measure_executors() -> None:
    for executor in ("in_process", "multiprocess"):
        data, home = Path(tempfile.mkdtemp(prefix="rugs_data_")), Path(tempfile.mkdtemp(prefix="rugs_home_"))
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
        sealed_segment(Store(data), "s1", game_frames("g1", 20) + game_frames("g2", 30), start_ns=T0_2025)
        env = {**os.environ, "RUGS_EXECUTOR": executor, "RUGS_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}
        for job in ("land_ws_event", "rederive"):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run([str(BIN / "dagster"), "job", "execute", "-m", "rugs_pipeline.definitions", "-j", job,
                            "--tags", f'{{"dagster/partition": "{day_of(0)}"}}'],
                           env=env, cwd=home, check=True, capture_output=True)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            say(f"executor {executor}: {job} run of one day, process start to end", wall, "s", f"{cpu:.1f} CPU-s")
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def measure_queue(minutes: float = 6) -> None:
    for executor in ("multiprocess", "in_process"):
        data, home = Path(tempfile.mkdtemp(prefix="rugs_data_")), Path(tempfile.mkdtemp(prefix="rugs_home_"))
        shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {**os.environ, "RUGS_EXECUTOR": executor, "RUGS_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}
        sim = subprocess.Popen([str(BIN / "rugs-pipeline"), "simulate", "--port", "0", "--seed", "5"],
                               stdout=subprocess.PIPE, text=True)
        url = next(w for w in sim.stdout.readline().split() if w.startswith("ws://"))
        procs = [sim, subprocess.Popen([str(BIN / "rugs-pipeline"), "record", "--url", url, "--seal-interval", "10"],
                                       env=env, stderr=subprocess.DEVNULL)]
        daemon = subprocess.Popen([str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=REPO, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        start = time.monotonic()
        try:
            with environ(env), dg.DagsterInstance.get() as inst:
                while time.monotonic() - start < minutes * 60:
                    time.sleep(60)
                    elapsed = time.monotonic() - start
                    runs = inst.get_runs(dg.RunsFilter(job_name="land_ws_event"))
                    by_status = {s: sum(r.status == s for r in runs) for s in
                                 (dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.SUCCESS)}
                    segments = len(spool.sealed_segments(Store(data).spool_dir))
                    say(f"queue {executor}: after {elapsed / 60:.0f} min, land runs queued", by_status[dg.DagsterRunStatus.QUEUED],
                        "runs", f"{by_status[dg.DagsterRunStatus.SUCCESS]} finished, {segments} segments sealed")
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=60)
            with suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGKILL)
            for proc in reversed(procs):
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def _spool(recorders: int, days: int) -> Path:
    """``days`` days of 30-s segments from ``recorders`` recorders, all landed but the last day's second half."""
    data = Path(tempfile.mkdtemp(prefix="rugs_data_"))
    store, per_day = Store(data), 2_880 * recorders
    for d in range(days):
        day = day_of(600 + d)
        folder, ledger = store.spool_dir / day, store.manifests_dir / "landed" / day
        folder.mkdir(parents=True)
        ledger.mkdir(parents=True)
        for n in range(per_day):
            name = f"{day.replace('-', '')}_000000_r{n % recorders:03d}-{n:06d}_{n:012d}"
            (folder / f"{name}.seg").touch()
            if d < days - 1 or n < per_day // 2:
                (ledger / f"{name}.json").touch()
    return data


def _pending_one_listing_per_day(store: Store, day: str | None = None) -> list[spool.Segment]:
    """pending_segments with each day's ledger listed once (it lists it once per segment)."""
    landed: dict[str, set[str]] = {}
    out = []
    for seg in spool.sealed_segments(store.spool_dir, day):
        if seg.day not in landed:
            landed[seg.day] = landing.landed_names(store, seg.day)
        if seg.name not in landed[seg.day]:
            out.append(seg)
    return out


def measure_sensor() -> None:
    from unittest import mock

    from rugs_pipeline.defs.resources import StoreResource
    from rugs_pipeline.defs.sensors import spool_sensor

    def tick(data: Path) -> float:
        with environ({"RUGS_DATA_DIR": str(data)}):
            return timed(spool_sensor, dg.build_sensor_context(resources={"store": StoreResource()}))

    for days in (1, 3):
        data = _spool(1, days)
        say(f"sensor: spool_sensor tick as is, 1 recorder x {days} day(s) retained", tick(data), "s",
            f"{days * 2_880} segments")
        shutil.rmtree(data, ignore_errors=True)
    for recorders, days in ((1, 14), (10, 14)):
        data = _spool(recorders, days)
        with mock.patch.object(landing, "pending_segments", _pending_one_listing_per_day):
            say(f"sensor: tick, ledger listed once per day, {recorders} recorder(s) x {days} days", tick(data), "s",
                f"{recorders * days * 2_880} segments")
        shutil.rmtree(data, ignore_errors=True)


def measure_landing() -> None:
    from rugs_pipeline.definitions import defs

    work = Path(tempfile.mkdtemp(prefix="rugs_landing_"))
    recorded = Store(work / "recorded")
    env = {**os.environ, "RUGS_DATA_DIR": str(recorded.root)}
    sim = subprocess.Popen([str(BIN / "rugs-pipeline"), "simulate", "--port", "0", "--speed", "25", "--seed", "3"],
                           stdout=subprocess.PIPE, text=True)
    url = next(w for w in sim.stdout.readline().split() if w.startswith("ws://"))
    rec = subprocess.Popen([str(BIN / "rugs-pipeline"), "record", "--url", url, "--seal-interval", "5"], env=env)
    time.sleep(60)
    rec.send_signal(signal.SIGINT)
    rec.wait(timeout=60)
    sim.send_signal(signal.SIGTERM)
    sim.wait(timeout=30)
    records = [r for seg in spool.sealed_segments(recorded.spool_dir) for r in spool.iter_segment_records(seg)]
    frames = [r for r in records if r.kind == spool.KIND_FRAME]
    spool_bytes = sum(seg.path.stat().st_size for seg in spool.sealed_segments(recorded.spool_dir))

    # the same frames re-cut into 30-s segments of the live feed's size, on one day
    store = Store(work / "store")
    segments = 0
    for n in range(0, len(frames) - SEG_FRAMES + 1, SEG_FRAMES):
        chunk = [spool.SpoolRecord(i + 1, T0_2025 + (n + i) * 85_000_000, spool.KIND_FRAME, f.data, f.direction)
                 for i, f in enumerate(frames[n:n + SEG_FRAMES])]
        spool.write_sealed_segment(store.spool_dir, spool.SegmentHeader(f"bench-{n:08d}", "public_ws"), chunk)
        segments += 1
    seg_bytes = sum(seg.path.stat().st_size for seg in spool.sealed_segments(store.spool_dir))
    say("landing: recorded frames (simulator, 60 s at 25x)", len(frames), "frames",
        f"{spool_bytes / len(records) / 1024:.2f} KB spool per record")
    elapsed = timed(landing.land_day, store, day_of(0))
    say(f"landing: land_day, {segments} segments of {SEG_FRAMES} frames", elapsed / segments * 1000, "ms/seg",
        f"{seg_bytes / elapsed / 2**20:.1f} MB spool/s, one process")
    for seg in spool.sealed_segments(store.spool_dir):  # land them again, now as a Dagster run
        landing.ledger_path(store, seg).unlink()
    with environ({"RUGS_DATA_DIR": str(store.root)}):
        job = defs.resolve_job_def("land_ws_event")
        elapsed = timed(job.execute_in_process, partition_key=day_of(0), instance=dg.DagsterInstance.ephemeral(),
                        run_config=QUIET)
    say(f"landing: land_ws_event run in process (with check), {segments} segments", elapsed, "s")
    shutil.rmtree(work, ignore_errors=True)


def main(parts: list[str]) -> None:
    parts = parts or ["instance", "automation", "daemon", "executor", "queue", "sensor", "landing"]
    load = os.getloadavg()[0]
    print(f"# {os.cpu_count()} cores, load average {load:.1f} at start", flush=True)
    with postgres_server() if {"instance", "automation", "daemon"} & set(parts) else nullcontext() as pg:
        for kind, settings in (("sqlite", None), ("postgres", pg)) if pg else ():
            if "instance" in parts:
                measure_instance(kind, settings)
            if "automation" in parts:
                for first_day in ("2025-01-01", "2019-01-01"):
                    measure_automation(kind, first_day, settings)
            if "daemon" in parts:
                measure_daemon(kind, settings)
    if "executor" in parts:
        measure_executors()
    if "queue" in parts:
        measure_queue()
    if "sensor" in parts:
        measure_sensor()
    if "landing" in parts:
        measure_landing()
    print(f"# load average {os.getloadavg()[0]:.1f} at end", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
