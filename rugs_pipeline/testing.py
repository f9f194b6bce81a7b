"""What the tests (and deploy/measure.py) share: made-up games in the spool, stores landed and derived, damaged
files, real processes, a throwaway PostgreSQL server and the demo stack. Not imported by the pipeline itself.

Test modules import these from here, never from each other; pytest fixtures live in rugs_pipeline_tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import psycopg2
import pyarrow.parquet as pq

from rugs_pipeline.definitions import defs
from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.checks import schema_checks
from rugs_pipeline.defs.games import game_assets, game_checks
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.formats import spool
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.store import landing, schema, versions
from rugs_pipeline.store.layout import Store

REPO_ROOT = Path(__file__).resolve().parent.parent


# --- waiting, ports -------------------------------------------------------------------------------

def wait_until(condition: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a day of made-up games in the spool ----------------------------------------------------------

T0 = 1_765_065_600 * 10**9  # 2025-12-07 00:00 UTC


DAY = "2025-12-07"


def game_frames(game: str, rug: int) -> list[str]:
    frames = [encode_event("gameStateUpdate", {"gameId": game, "cooldownTimer": 5000, "allowPreRoundBuys": True})]
    for tick in range(rug + 1):
        frames.append(encode_event("gameStateUpdate", {
            "gameId": game, "active": True, "rugged": tick == rug, "tickCount": tick,
            "price": 1.0 + tick / 100 if tick < rug else 0.01, "cooldownTimer": 0}))
    frames.append(encode_event("gameStateUpdate", {"gameId": game, "active": False, "rugged": True,
                                                   "tickCount": rug + 2, "price": 0.01}))
    return frames


def sealed_segment(store: Store, session: str, frames: list[str], start_ns: int = T0) -> spool.Segment:
    records = [spool.SpoolRecord(i + 1, start_ns + i * 250_000_000, spool.KIND_FRAME, f) for i, f in enumerate(frames)]
    return spool.write_sealed_segment(store.spool_dir, spool.SegmentHeader(session, "public_ws"), records)


def landed_store(root: Path, segments: int = 3, per_segment: int = 4) -> Store:
    """A store whose ws_event day holds ``segments`` landed files (still in the spool)."""
    store = Store(root)
    seq = 0
    for _ in range(segments):
        records = []
        for _ in range(per_segment):
            seq += 1
            frame = encode_event("gameStateUpdate", {"gameId": "20251207-aaaaaaaaaaaaaaaa", "tickCount": seq,
                                                     "price": 1.0, "active": True})
            records.append(spool.SpoolRecord(seq, T0 + seq * 10**9, spool.KIND_FRAME, frame))
        spool.write_sealed_segment(store.spool_dir, spool.SegmentHeader("query-test", "public_ws"), records)
    landing.land_day(store, DAY)
    return store


# --- the pipeline's processes and Dagster runs ----------------------------------------------------

CLI = str(REPO_ROOT / ".venv" / "bin" / "rugs-pipeline")


SEED_QUERY_WS = ("SELECT * FROM '~/rugs_data/events_parquet/**/*.parquet' "
                 "WHERE doc_type = 'ws_event' AND event_name = 'gameStateUpdate' LIMIT 100")


SEED_QUERY_TICKS = ("SELECT game_id, tick, price, ts FROM '~/rugs_data/events_parquet/doc_type=game_tick/**/*.parquet' "
                    "ORDER BY session_id, seq")


def start_recorder(url: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen([CLI, "record", "--url", url, "--seal-interval", "1", "--fsync-interval", "0.2"],
                            env=env, stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> int:
    proc.send_signal(sig)
    return proc.wait(timeout=30)


def run_seed_query(sql: str, home: Path) -> list[tuple]:
    code = "import duckdb, json, sys; print(json.dumps(duckdb.connect().execute(sys.argv[1]).fetchall(), default=str))"
    out = subprocess.run([sys.executable, "-c", code, sql], env={**os.environ, "HOME": str(home)},
                         capture_output=True, text=True, check=True)
    return [tuple(r) for r in json.loads(out.stdout)]


def land_and_derive_days(days: list[str]) -> None:
    """Each day as the daemon would run it: the land job, then every derived asset with its checks passing."""
    instance = dg.DagsterInstance.ephemeral()
    for day in days:
        assert defs.resolve_job_def("land_ws_event").execute_in_process(partition_key=day, instance=instance).success
        result = dg.materialize([ws_event, *derived_assets, *game_assets, *schema_checks, *game_checks],
                                partition_key=day, instance=instance, resources={"store": StoreResource()},
                                selection=[*derived_assets, *game_assets])
        assert result.success
        assert all(e.passed for e in result.get_asset_check_evaluations())


def run_job(name: str, root: Path, day: str) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(name).execute_in_process(
        partition_key=day, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"resources": {"store": {"config": {"data_dir": str(root)}}}})


# --- damaged and old stores -----------------------------------------------------------------------

def truncate(path: Path) -> None:
    """A file cut short (a disk that lost its tail): no footer, no magic bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garble_footer(path: Path) -> None:
    """Magic bytes in place but the footer's metadata garbage: DuckDB's error then names no file."""
    data = bytearray(path.read_bytes())
    data[-20:-8] = b"\xff" * 12
    path.write_bytes(bytes(data))


def parquet_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in (root / "events_parquet").rglob("*.parquet"))


def downgrade(root: Path) -> None:
    """Rewrite every file and the manifest as 1.0.0 code wrote them."""
    for rel in parquet_files(root):
        path = root / rel
        table = pq.read_table(path)
        meta = {schema.SCHEMA_VERSION_KEY: b"1.0.0", schema.DOC_TYPE_KEY: table.schema.metadata[schema.DOC_TYPE_KEY]}
        pq.write_table(schema.conform(table, versions.BY_VERSION["1.0.0"].schema).replace_schema_metadata(meta), path, compression="zstd")
    manifest = json.loads((root / "manifests" / "schema_version.json").read_text())
    manifest.update(version="1.0.0", fields=schema.manifest_fields(versions.BY_VERSION["1.0.0"].schema))
    (root / "manifests" / "schema_version.json").write_text(json.dumps(manifest))


# A landing-like writer: under the partition's shared lock, writes one batch of a file, says so, then waits
# forever in the middle of the file.
WRITER = """
import sys, time
from pathlib import Path
from rugs_pipeline.store import schema
from rugs_pipeline.store.layout import Store

def rows():
    yield schema.empty_table()
    Path(sys.argv[4]).touch()
    time.sleep(3600)

store = Store(Path(sys.argv[1]))
with store.partition_lock("ws_event", sys.argv[3], shared=True):
    store.write_partition_file(sys.argv[2], sys.argv[3], rows(), "held.parquet")
"""


def start_writer(store: Store, doc_type: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    marker = tmp_path / f"{doc_type}.writing"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(store.root), doc_type, DAY, str(marker)])
    wait_until(lambda: marker.exists() or proc.poll() is not None, 120, "the writer mid-file")
    assert proc.poll() is None, "the writer exited early"
    temp = store.partition_dir(doc_type, DAY) / f".held.parquet.{proc.pid}.tmp"
    assert temp.exists()
    return proc, temp


def fill(folder: Path) -> Path:
    """Write zeros until the disk is full. Unbuffered: a buffered file's close would retry the write and raise."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
    finally:
        os.close(fd)
    return filler


# --- a throwaway PostgreSQL server ----------------------------------------------------------------

USER, PASSWORD, DB = "rugs", "rugs-test-pw", "rugs_dagster"


def _server_cmd(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: as root, run them as Debian's postgres user
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PostgresUnavailable(Exception):
    """No server to test against: not installed, or it would not initialise or start."""


@contextlib.contextmanager
def postgres_server() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL server on 127.0.0.1 with a password and an empty database; yields RUGS_PG_*."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not bins:
        raise PostgresUnavailable("PostgreSQL server not installed (Debian package postgresql; "
                                  "make test installs it when run as root)")
    bindir = Path(bins[-1]).parent
    # not under pytest's tmp_path: that is private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="rugs_pg_"))
    data, log = root / "data", root / "server.log"
    (root / "pw").write_text(PASSWORD)
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(root / "pw", "postgres")
    port = free_port()
    pg_ctl = _server_cmd([str(bindir / "pg_ctl"), "-D", str(data)])
    started = False
    try:
        init = subprocess.run(_server_cmd([str(bindir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={root / 'pw'}",
                                           "--auth=scram-sha-256", "--no-locale", "-E", "UTF8"]),
                              capture_output=True, text=True, timeout=120)
        if init.returncode:
            raise PostgresUnavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
        start = subprocess.run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "start",
                                "-o", f"-k {root} -p {port} -c listen_addresses=127.0.0.1"],
                               capture_output=True, text=True, timeout=90)
        started = start.returncode == 0
        if not started:
            raise PostgresUnavailable(f"PostgreSQL server did not start: {start.stderr.strip()[-300:]} {log.read_text()[-500:]}")
        conn = psycopg2.connect(host="127.0.0.1", port=port, user=USER, password=PASSWORD, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:  # outside a transaction block, as CREATE DATABASE needs
            cur.execute(f"CREATE DATABASE {DB}")
        conn.close()
        yield {"RUGS_PG_HOST": "127.0.0.1", "RUGS_PG_PORT": str(port), "RUGS_PG_USER": USER,
               "RUGS_PG_PASSWORD": PASSWORD, "RUGS_PG_DB": DB}
    finally:
        if started:
            subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


# --- the demo stack (make demo) -------------------------------------------------------------------

def _proc_table() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, start time) of every process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(stat.parent.name)] = (int(fields[1]), fields[0], fields[19])
    return table


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


@dataclass
class DemoStack:
    """`make demo` in a session of its own, on free ports, with its store in a temporary folder."""

    root: Path
    ui_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    seen: dict[int, tuple[str, str]] = field(default_factory=dict)  # pid -> (start time, command line)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}"

    @property
    def log(self) -> str:
        logs = [self.root / "make.log", *sorted((self.root / "rugs_data" / "logs").glob("*.log"))]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in logs if p.exists())

    def start(self) -> None:
        # in_process (the default, named so that a caller's RUGS_EXECUTOR does not change it): one process
        # per run instead of one per step; on two cores multiprocess takes minutes for what this does in seconds
        env = {**os.environ, "RUGS_UI_PORT": str(self.ui_port), "RUGS_SIM_PORT": str(free_port()),
               "RUGS_EXECUTOR": "in_process"}
        # setsid: a process group of its own, as in a terminal; env: SIGINT handled although
        # pytest starts it in the background (where a shell would ignore it)
        self.proc = subprocess.Popen(
            ["setsid", "env", "--default-signal=INT,TERM", "make", "--no-print-directory", "demo", f"DEMO={self.root}"],
            cwd=REPO_ROOT, env=env, stdout=(self.root / "make.log").open("w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"make demo exited with {self.proc.returncode}\n{self.log}"
            try:
                urllib.request.urlopen(f"{self.url}/server_info", timeout=2).read()
                return
            except OSError:
                time.sleep(1)
        raise AssertionError(f"the Dagster webserver did not come up on {self.url}\n{self.log}")

    def note_processes(self) -> dict[int, str]:
        """Remember every process of the stack now (make's descendants); returns pid -> command line."""
        table = _proc_table()
        children = defaultdict(list)
        for pid, (ppid, _, _) in table.items():
            children[ppid].append(pid)
        todo, found = [self.proc.pid], {}
        while todo:
            pid = todo.pop()
            if pid in table:
                found[pid] = _cmdline(pid)
                self.seen[pid] = (table[pid][2], found[pid])
            todo.extend(children[pid])
        return found

    def alive(self) -> dict[int, str]:
        table = _proc_table()
        return {pid: cmd for pid, (start, cmd) in self.seen.items()
                if pid in table and table[pid][2] == start and table[pid][1] != "Z"}

    def ctrl_c(self) -> None:
        """SIGINT to the whole process group, as a terminal sends it."""
        os.killpg(self.proc.pid, signal.SIGINT)
        self.proc.wait(timeout=90)

    def kill_leftovers(self) -> None:
        for pid in self.alive():
            os.kill(pid, signal.SIGKILL)
