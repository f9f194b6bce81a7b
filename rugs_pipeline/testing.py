"""What the tests (and deploy/measure.py) share: made-up games in the spool, stores landed and derived, the
recordings read with plain json and run through the pipeline, damaged files, real processes, a throwaway
PostgreSQL server and the demo stack. Not imported by the pipeline itself.

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
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg2
import pyarrow as pa
import pyarrow.parquet as pq

from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.definitions import defs
from rugs_pipeline.defs.assets import derived_assets, ws_event
from rugs_pipeline.defs.checks import schema_checks
from rugs_pipeline.defs.games import game_assets, game_checks
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.derive.datasets import derive
from rugs_pipeline.derive.games import rebuild_games, summarize_games
from rugs_pipeline.formats import spool
from rugs_pipeline.formats.protocol import encode_event
from rugs_pipeline.store import doctypes, landing, schema, versions
from rugs_pipeline.store.layout import Store
from rugs_pipeline.tools.bench import golden

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


# --- the recordings (the golden day, ../shared's real ones), read with plain json -----------------

UTC = timezone.utc
EASTERN = ZoneInfo("America/New_York")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# name -> (file pattern, time zone of its naive timestamps)
FIXTURES = {
    "sandbox": ("public_2025-12-06_sandbox.jsonl", EASTERN),
    "raw": ("public_2025-12-12_raw.jsonl", EASTERN),
    "cdp": ("cdp_2025-12-15.jsonl", UTC),  # its timestamps carry an offset
    "keysamples": ("keysamples_2026-02-06.json", UTC),  # timestamp_ms
    "example_seq": ("example_seq_*.json", UTC),  # naive UTC (their gameId dates only fit UTC)
}

# The golden day: its receive times are UTC with an offset. It comes first in every list of recordings.
GOLDEN = REPO_ROOT / "rugs_pipeline_tests" / "golden" / golden.RECORDING
RECORDINGS = ("golden", *FIXTURES)


def tz_of(name: str):
    return UTC if name == "golden" else FIXTURES[name][1]


def _is_traced(data) -> bool:
    return isinstance(data, list) and len(data) == 2 and isinstance(data[0], dict) and data[0].get("__trace") is True


def _utc(when, tz) -> datetime:
    if isinstance(when, int):  # keysamples' timestamp_ms
        return EPOCH + timedelta(milliseconds=when)
    parsed = datetime.fromisoformat(when)
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)).astimezone(UTC)


def _try_json(line: str):
    try:
        return json.loads(line)
    except json.JSONDecodeError:
        return None


def _is_event_obj(obj) -> bool:
    """What the recorders wrote for one event; anything else in a file is a corrupt line."""
    if not isinstance(obj, dict) or "data" not in obj:
        return False
    return {"event", "ts"} <= obj.keys() or {"event_type", "timestamp"} <= obj.keys()


def read_events(path: Path, tz) -> list[dict]:
    """The file's events in the order the importer stores them (file order; keysamples by time, name)."""
    text = path.read_text()
    if path.name.startswith("keysamples"):
        samples = sorted(json.loads(text).items(), key=lambda kv: (kv[1]["timestamp_ms"], kv[0]))
        objs = [{"event_type": s["event_type"], "timestamp": s["timestamp_ms"], "data": s["data"]} for _, s in samples]
    elif path.suffix == ".jsonl":
        objs = [o for line in text.splitlines() if line.strip() and _is_event_obj(o := _try_json(line))]
    else:
        objs = [json.loads(text)]
    events = []
    for o in objs:
        data = o["data"]
        args = () if data is None else tuple(data) if _is_traced(data) else (data,)
        events.append({
            "name": o.get("event", o.get("event_type")),
            "ts": _utc(o.get("ts", o.get("timestamp")), tz),
            "direction": o.get("direction", "received"),
            "args": args,
            "payload": args[-1] if args else None,
        })
    return events


def received(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["name"] == name and e["direction"] == "received" and isinstance(e["payload"], dict)]


def crash_tick(p: dict) -> int:
    """The tick a rugged frame's (crash) price belongs to.

    The rug frame itself has tickCount R and partialPrices ending at R. A post-rug
    broadcast counts tickCount on to R+1..R+3 but its partialPrices still end at R.
    """
    pp = p.get("partialPrices")
    if isinstance(pp, dict) and isinstance(pp.get("endTick"), int) and 0 <= pp["endTick"] <= p["tickCount"]:
        return pp["endTick"]
    return p["tickCount"]


def write_jsonl(path: Path, objs: list) -> Path:
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


# --- a recording through the pipeline: import, land, derive ---------------------------------------

@dataclass
class Run:
    files: list[Path]
    events: list[dict]
    reports: list
    store: Store
    days: list[str]
    derived: dict[str, dict[str, pa.Table]]  # day -> doc_type -> table

    def rows(self, doc_type: str) -> list[dict]:
        return [r for day in self.days for r in self.derived[day][doc_type].to_pylist()]

    def ws(self, day: str) -> pa.Table:
        return self.store.read_partition("ws_event", day)


def run_pipeline(files: list[Path], root: Path, tz) -> Run:
    """The recordings imported, landed and derived day by day, as the pipeline does; their events read with json."""
    store = Store(root)
    reports = import_recordings(files, store.spool_dir, tz=tz)
    days = sorted({seg.day for rep in reports for seg in rep.segments})
    for day in days:
        landing.land_day(store, day)
    ws = {day: store.read_partition("ws_event", day) for day in days}
    derived = {day: {dt: derive(dt, ws[day]) for dt in doctypes.FRAME_DERIVED} for day in days}
    # a day's games read the frames and trades after midnight too: here, the whole recording
    frames = pa.concat_tables(ws.values())
    actions = pa.concat_tables([derived[day]["player_action"] for day in days])
    for day in days:
        derived[day].update(rebuild_games(frames, day))
        derived[day]["games"] = summarize_games(derived[day]["game_tick"], derived[day]["complete_game"], actions)
    events = [e for f in files for e in read_events(f, tz)]
    return Run(files, events, reports, store, days, derived)


def unpacked_golden(folder: Path) -> Path:
    """The golden day as the importer reads it (plain JSON lines), in ``folder``."""
    return golden.unpacked(GOLDEN, folder)


# --- each game as the recording tells it ----------------------------------------------------------

SOURCES = schema.TICK_SOURCES  # in order of preference


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


@dataclass
class Recorded:
    game_id: str
    candidates: dict[int, list[tuple]] = field(default_factory=lambda: defaultdict(list))  # tick -> [(rank, order, price, event)]
    rug: dict | None = None  # the first rugged frame
    history: dict | None = None  # the first gameHistory entry
    history_ts: datetime | None = None
    announced: list[str] = field(default_factory=list)  # serverSeedHash of its own frames, in receive order

    @property
    def rug_tick(self) -> int | None:
        if self.rug is not None:
            return crash_tick(self.rug["payload"])
        if self.history is not None and self.history.get("prices"):
            return len(self.history["prices"]) - 1
        return None

    def expected_ticks(self) -> dict[int, dict]:
        """tick -> the row it must give: price, tick_source, price_conflicts, ts."""
        r = self.rug_tick
        rows = {}
        for tick, cands in self.candidates.items():
            if r is not None and tick > r:
                continue
            # the rug frame first for tick R, else the first source in order, first received within it
            rank, _, price, event = min(cands, key=lambda c: (c[0], not (c[0] == 0 and tick == r and c[3]["payload"].get("rugged") is True), c[1]))
            rows[tick] = {"price": price, "tick_source": SOURCES[rank], "ts": event["ts"],
                          "price_conflicts": len({c[2] for c in cands}) - 1}
        return rows


def recorded_games(events: list[dict]) -> dict[str, Recorded]:
    games: dict[str, Recorded] = {}

    def game(gid: str) -> Recorded:
        return games.setdefault(gid, Recorded(gid))

    # the pipeline's "first received": receive time, then the importer's order (file order)
    ordered = sorted(enumerate(received(events, "gameStateUpdate")), key=lambda ie: (ie[1]["ts"], ie[0]))
    for order, e in ordered:
        p = e["payload"]
        gid = p.get("gameId")
        for h in p.get("gameHistory") or []:
            g = game(h["id"])
            if g.history is None:
                g.history, g.history_ts = h, e["ts"]
            for tick, price in enumerate(h.get("prices") or []):
                if _number(price):
                    g.candidates[tick].append((3, order, price, e))
        if not isinstance(gid, str):
            continue
        fair = p.get("provablyFair") or {}
        if fair.get("serverSeedHash"):
            game(gid).announced.append(fair["serverSeedHash"])
        if not (p.get("active") is True or p.get("rugged") is True):
            continue  # cooldown and presale frames give no ticks
        g = game(gid)
        if isinstance(p.get("tickCount"), int) and p["tickCount"] >= 0 and _number(p.get("price")):
            g.candidates[crash_tick(p) if p.get("rugged") is True else p["tickCount"]].append((0, order, p["price"], e))
        if p.get("rugged") is True and g.rug is None:
            g.rug = e
        window = (p.get("partialPrices") or {}).get("values") or {}
        for key, price in window.items():
            if _number(price):
                g.candidates[int(key)].append((1, order, price, e))
        for tick, price in enumerate(p.get("prices") or []):
            if _number(price):
                g.candidates[tick].append((2, order, price, e))
    return games


def rows_by_game(rows: list[dict]) -> dict[str, dict[int, dict]]:
    by_game = defaultdict(dict)
    for r in rows:
        assert r["tick"] not in by_game[r["game_id"]], f"{r['game_id']} tick {r['tick']} twice"
        by_game[r["game_id"]][r["tick"]] = r
    return by_game


def ended_games(games: dict[str, Recorded]) -> dict[str, Recorded]:
    """The games whose end is in the recording: a rug frame, or a gameHistory entry with prices."""
    return {gid: g for gid, g in games.items() if g.rug is not None or (g.history and g.history.get("prices"))}


def check_ended_games_match_the_recording(rows: list[dict], games: dict[str, Recorded]) -> int:
    """Every game whose end the recording holds comes back tick for tick, prices bit-exact; returns how many."""
    got = rows_by_game(rows)
    ended = ended_games(games)
    for gid, g in ended.items():
        ticks = {t: r["price"] for t, r in got[gid].items()}
        r = g.rug_tick
        assert [t for t, row in got[gid].items() if row["is_rug_tick"]] == [r], gid
        if g.history and g.history.get("prices"):  # the server's own record of the whole game
            assert ticks == dict(enumerate(g.history["prices"])), f"{gid}: not the game's gameHistory prices"
        if g.rug is not None:  # the rug frame's crash price at R, nothing after
            assert ticks[r] == g.rug["payload"]["price"] and max(ticks) == r, gid
    return len(ended)


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
        # ready = the code location has loaded: the webserver answers before that, and a query for the
        # repository's sensors or jobs meanwhile fails (a 500 on a loaded machine)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"make demo exited with {self.proc.returncode}\n{self.log}"
            try:
                if self.location_status() == "LOADED":
                    return
            except OSError:
                pass
            time.sleep(1)
        raise AssertionError(f"the Dagster webserver did not load the code location on {self.url}\n{self.log}")

    def location_status(self) -> str | None:
        query = "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }"
        request = urllib.request.Request(f"{self.url}/graphql", data=json.dumps({"query": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.load(response)["data"]["workspaceOrError"].get("locationEntries") or [{}]
        return entries[0].get("loadStatus")

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
