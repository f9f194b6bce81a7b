"""A synthetic day of feed for the benchmark, cached on disk.

The simulator's own game cycle (``feed.simulator``) runs against a virtual clock, so
a day of frames takes a minute to make instead of a day. A logged-in recorder sees
more than the public feed: after about one state frame in three it gets a
``gameStatePlayerUpdate`` built from that frame, which gives the mix of a real
logged-in recording (gameStateUpdate ~64%, gameStatePlayerUpdate ~25%, trades ~5%,
chat, sidebets, the rest). The frames go through the real spool writer (30 s
segments, sealed on the virtual clock) and the real landing, so the day on disk is
what the pipeline would hold: one ``ws_event`` file per segment.

The same seed gives the same bytes: every wall-clock field comes from the virtual
clock, and each size is a prefix of any larger one (the feed runs at one speed).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import types
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from unittest import mock

import orjson
import pyarrow.parquet as pq

from rugs_pipeline.config import Settings
from rugs_pipeline.formats import spool
from rugs_pipeline.simulator import server as simulator
from rugs_pipeline.formats.protocol import PING, PONG, SIO_CONNECT, encode_connect, encode_event, encode_open
from rugs_pipeline.store import landing, schema
from rugs_pipeline.store.layout import Store

DAY = "2025-11-01"  # a day the partitions hold (config.DEFAULT_FIRST_DAY on)
DAY_START = datetime.fromisoformat(f"{DAY}T00:00:00+00:00")
# The simulator makes ~28,500 frames per hour with the logged-in layer; at 1.6x a
# million frames fill ~22 h, one UTC day (a real day is 0.75-1 M frames).
SPEED = 1.6
MAX_FRAMES = 1_050_000
PLAYER_UPDATE_CHANCE = 0.38  # per gameStateUpdate: 25% of all frames
RUGPOOL_ENTRIES_CHANCE = 0.3  # the big gameStatePlayerUpdate shape, with the rug pool's entries
PING_INTERVAL_MS = 25_000
SEAL_INTERVAL_S = 30.0
VERSION = 2  # bump when the frames change: old caches are then ignored


def cache_root() -> Path:
    """``$RUGS_BENCH_CACHE``, else ``$XDG_CACHE_HOME/rugs_pipeline/bench`` (``~/.cache/...``)."""
    if cache := Settings.from_env().bench_cache:
        return Path(cache).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "rugs_pipeline" / "bench"


@dataclass(frozen=True)
class SyntheticDay:
    root: Path
    frames: int
    json_bytes: int  # frame text, all records
    mix: dict[str, int]  # records by event name (or frame kind)

    @property
    def store(self) -> Store:
        return Store(self.root)

    def files(self) -> list[Path]:
        """The day's ws_event files, oldest segment first."""
        return self.store.partition_files(landing.DOC_TYPE, DAY)

    def landed_copy(self, root: Path, frames: int | None = None) -> Store:
        """A store at ``root`` holding the day's first files (``prefix``; all without ``frames``) as landing left
        them: hard links, with their ledger entries (compaction merges only what the ledger records), nothing derived."""
        files = self.files() if frames is None else self.prefix(frames)
        store = store_holding(files, root)
        names = {f.name for f in files}
        ledger = store.manifests_dir / "landed" / DAY
        ledger.mkdir(parents=True)
        for entry in (self.store.manifests_dir / "landed" / DAY).glob("*.json"):
            if landing.landed_file_name(entry.stem) in names:
                os.link(entry, ledger / entry.name)
        return store

    def prefix(self, frames: int) -> list[Path]:
        """The first files holding at least ``frames`` records (all of them if the day holds fewer)."""
        out, rows = [], 0
        for f in self.files():
            if rows >= frames:
                break
            out.append(f)
            rows += pq.read_metadata(f).num_rows
        return out


def store_holding(files: list[Path], root: Path) -> Store:
    """A store at ``root`` whose day is ``files`` (hard links), with nothing derived."""
    shutil.rmtree(root, ignore_errors=True)
    store = Store(root)
    store.ensure_manifest()
    folder = store.partition_dir(landing.DOC_TYPE, DAY)
    folder.mkdir(parents=True)
    for f in files:
        os.link(f, folder / f.name)
    return store


def synthetic_day(frames: int, seed: int = 1, progress: Callable[[int], None] | None = None,
                  drift: bool = False) -> SyntheticDay:
    """The cached day of ``frames`` records (built first if absent: a minute or two per million).

    ``drift``: the simulator's changed protocol (``simulator.PROTOCOL_DRIFT``)."""
    if not 0 < frames <= MAX_FRAMES:
        raise ValueError(f"a synthetic day holds 1..{MAX_FRAMES} frames, not {frames}")
    # the files are landed by this code: a cache landed at another schema version is not this code's day
    final = cache_root() / f"day-v{VERSION}-{schema.SCHEMA_VERSION}-seed{seed}-{frames}{'-drift' if drift else ''}"
    marker = final / "synthetic_day.json"
    if not marker.exists():
        building = final.with_name(f".{final.name}.{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        stats = _build(Store(building), frames, seed, progress, drift)
        (building / marker.name).write_text(json.dumps(stats))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(building, final)
    stats = json.loads(marker.read_text())
    return SyntheticDay(final, stats["frames"], stats["json_bytes"], stats["mix"])


def _build(store: Store, frames: int, seed: int, progress: Callable[[int], None] | None, drift: bool) -> dict:
    clock = _Clock(DAY_START.timestamp() * 1000)
    writer = spool.SpoolWriter(store.spool_dir, f"{DAY_START:%Y%m%dT%H%M%SZ}-{seed:08x}", "public_ws",
                               seal_interval_s=SEAL_INTERVAL_S, fsync_interval_s=SEAL_INTERVAL_S,
                               clock=lambda: clock.ms / 1000)
    mix: Counter[str] = Counter()
    size = 0
    with closing(_records(seed, clock, drift)) as records:
        for kind, text, direction, name in records:
            if writer.next_seq > frames:
                break
            writer.append(kind, text, clock.receive_ns(), direction)
            writer.tick()
            mix[name] += 1
            size += len(text)
            if progress and writer.next_seq % 10_000 == 0:
                progress(10_000)
    writer.close()
    landing.land_day(store, DAY)
    return {"frames": writer.next_seq - 1, "json_bytes": size, "mix": dict(mix.most_common())}


class _Clock:
    """Virtual time of the feed; receive times are strictly increasing, as a recorder's are."""

    def __init__(self, start_ms: float) -> None:
        self.ms = start_ms
        self._last_ns = 0

    def receive_ns(self) -> int:
        self._last_ns = max(int(self.ms * 1_000_000), self._last_ns + 1000)
        return self._last_ns


@types.coroutine
def _suspend():
    yield


def _records(seed: int, clock: _Clock, drift: bool = False) -> Iterator[tuple[str, str, str | None, str]]:
    """(spool kind, text, direction, name) of a recorder session, until the consumer stops."""
    yield _lifecycle("started")
    yield _lifecycle("connecting")
    yield _lifecycle("connected")
    yield spool.KIND_FRAME, encode_open(f"bench{seed}"), "received", "open"
    yield _lifecycle("handshake")
    yield spool.KIND_FRAME, SIO_CONNECT, "sent", "connect"
    yield spool.KIND_FRAME, encode_connect(f"bench{seed}"), "received", "connect"
    out: list[str] = []
    rng = random.Random(f"{seed}:bench:logged-in")
    with _virtual_time(clock):
        feed = simulator._GameFeed(seed, SPEED, out.append, drift=drift)
        yield spool.KIND_FRAME, feed.snapshot(), "received", "gameStateUpdate"
        game = feed.run()
        next_ping = clock.ms + PING_INTERVAL_MS
        try:
            while True:
                game.send(None)  # runs the game cycle up to its next pause
                for text in out:
                    yield spool.KIND_FRAME, text, "received", _event_name(text)
                    if text.startswith('42["gameStateUpdate"') and rng.random() < PLAYER_UPDATE_CHANCE:
                        yield spool.KIND_FRAME, _player_update(text, rng), "received", "gameStatePlayerUpdate"
                out.clear()
                if clock.ms >= next_ping:
                    next_ping += PING_INTERVAL_MS
                    yield spool.KIND_FRAME, PING, "received", "ping"
                    yield spool.KIND_FRAME, PONG, "sent", "pong"
        finally:
            game.close()


def _lifecycle(event: str) -> tuple[str, str, None, str]:
    return spool.KIND_LIFECYCLE, orjson.dumps({"event": event, "bench": True}).decode(), None, event


def _event_name(text: str) -> str:
    return text[4:text.index('"', 4)]


def _player_update(state_frame: str, rng: random.Random) -> str:
    """What a logged-in player gets beside a state frame: their leaderboard entry, sometimes the rug pool."""
    state = orjson.loads(state_frame[2:])[1]
    board = state.get("leaderboard") or []
    payload: dict = {"gameId": state["gameId"]}
    if board:
        payload["leaderboardEntry"] = board[len(board) // 2]
    if "rugpool" in state and rng.random() < RUGPOOL_ENTRIES_CHANCE:
        entries = [{"playerId": e["id"], "entries": rng.randint(1, 3000), "username": e["username"]} for e in board]
        total = sum(e["entries"] for e in entries) or 1
        payload["rugpool"] = {**state["rugpool"], "totalEntries": total, "playersWithEntries": len(entries),
                              "solPerEntry": 0.001, "maxEntriesPerPlayer": 5000,
                              "playerEntries": [{**e, "percentage": e["entries"] / total * 100} for e in entries]}
    return encode_event("gameStatePlayerUpdate", payload)


@contextmanager
def _virtual_time(clock: _Clock):
    """Run the simulator's game cycle on ``clock``: its pacer, its wall-clock fields and game-id dates.

    The simulator reads time in three places (the pacer, ``_now_ms``, ``datetime.now``
    for game ids); all three follow the virtual clock here, and the pacer suspends
    instead of sleeping so that the caller drives the cycle one pause at a time.
    """

    class Pacer:
        def __init__(self, speed: float) -> None:
            self._speed = speed

        async def wait(self, ms: float) -> None:
            clock.ms += ms / self._speed
            await _suspend()

    class VirtualDatetime(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(clock.ms / 1000, tz)

    with (mock.patch.object(simulator, "_Pacer", Pacer),
          mock.patch.object(simulator, "_now_ms", lambda: int(clock.ms)),
          mock.patch.object(simulator, "datetime", VirtualDatetime)):
        yield
