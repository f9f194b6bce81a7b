"""The golden day: minutes of the simulator's feed, recorded once and committed with the tests.

It lets the derivation tests run in any clone, without the real recordings of ``../shared``.
The frames are the feed simulator's own game cycle (``feed.simulator``) on the benchmark's
virtual clock (``bench.synth``), as a logged-in recorder sees them: the on-connect snapshot,
games with trades, sidebets, partial prices and gameHistory, rugs, ``gameStatePlayerUpdate``.
One outage cuts a game short mid-way: the client's ``disconnect``, nothing for a while, then
``connect`` and a fresh on-connect snapshot, as python-socketio based recorders log it.

It is written in the ``{seq, ts, event, data}`` envelope of the public recorders (one JSON object a
line; a traced event's ``data`` is ``[trace_header, payload]``), so it goes through the importer
like the real recordings, and the tests read it back with plain ``json``.

Invariant: the same seed gives the same bytes. Nothing is inherently time-based: every time in
the file (receive times, the simulator's timestamps and game-id dates) follows the virtual clock,
which starts at ``START``. The expected rows beside it are the row-at-a-time deriver's
(``bench.reference``), never the SQL derivations': ``scripts/golden_day.py`` writes both.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.parquet as pq

from rugs_pipeline.tools.bench import reference, synth
from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.simulator import server as simulator
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store

SEED = 14
START = datetime(2025, 11, 2, 12, 0, tzinfo=timezone.utc)  # noon: the whole recording is one UTC day
MINUTES = 6.0
OUTAGE_AT_S, OUTAGE_S = 150.0, 20.0  # the connection is lost 150 s in, for 20 s
RECORDING = "golden_day.jsonl.gz"  # gzip without a time stamp (mtime 0): the same text, the same bytes
# the doc types the row-at-a-time deriver computes itself (``games`` it sums up with the pipeline's SQL)
EXPECTED = ("player_action", "server_state", "system_event", "game_tick", "complete_game")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def golden_lines(seed: int = SEED, minutes: float = MINUTES, outage_at_s: float = OUTAGE_AT_S,
                 outage_s: float = OUTAGE_S) -> Iterator[str]:
    """The recording's lines, in receive order."""
    clock = synth._Clock(START.timestamp() * 1000)
    end_ms, down_ms = clock.ms + minutes * 60_000, clock.ms + outage_at_s * 1000
    up_ms = down_ms + outage_s * 1000
    rng = random.Random(f"{seed}:golden:logged-in")
    seq = 0

    def line(name: str, data) -> str:
        nonlocal seq
        seq += 1
        ts = _EPOCH + timedelta(microseconds=clock.receive_ns() // 1000)
        return json.dumps({"seq": seq, "ts": ts.isoformat(), "event": name, "data": data}, separators=(", ", ": "))

    out: list[str] = []
    with synth._virtual_time(clock):
        feed = simulator._GameFeed(seed, 1.0, out.append)
        yield line("connect", None)
        yield line(*_event(feed.snapshot()))
        game = feed.run()
        state = "up"
        try:
            while clock.ms < end_ms:
                game.send(None)  # the game cycle up to its next pause
                if state == "up" and clock.ms >= down_ms:
                    state = "down"
                    yield line("disconnect", None)
                elif state == "down" and clock.ms >= up_ms:
                    state = "back"
                    yield line("connect", None)
                    yield line(*_event(feed.snapshot()))
                if state != "down":
                    for text in out:
                        yield line(*_event(text))
                        if text.startswith('42["gameStateUpdate"') and rng.random() < synth.PLAYER_UPDATE_CHANCE:
                            yield line(*_event(synth._player_update(text, rng)))
                out.clear()
        finally:
            game.close()


def _event(text: str) -> tuple[str, object]:
    """(name, data) of an event frame as the recorders stored it: the payload, or all arguments when traced."""
    name, *args = json.loads(text[2:])
    return name, args[0] if len(args) == 1 else args


def write_golden(folder: Path, work: Path, seed: int = SEED) -> tuple[Path, dict[str, int]]:
    """Write the recording and its expected rows (``expected/<doc_type>.parquet``) to ``folder``.

    The expectations: the recording imported and landed in ``work`` (a scratch folder), derived by
    the row-at-a-time deriver. Returns the recording's path and the rows of each doc type.
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RECORDING
    text = "".join(f"{line}\n" for line in golden_lines(seed)).encode()
    path.write_bytes(gzip.compress(text, mtime=0))
    expected = expected_rows(unpacked(path, work), work / "store")
    (folder / "expected").mkdir(exist_ok=True)
    for doc_type in EXPECTED:
        pq.write_table(expected[doc_type], folder / "expected" / f"{doc_type}.parquet", compression="zstd")
    return path, {doc_type: expected[doc_type].num_rows for doc_type in EXPECTED}


def unpacked(path: Path, folder: Path) -> Path:
    """The recording as the importer reads it (plain JSON lines), written into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    plain = folder / path.name.removesuffix(".gz")
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    return plain


def expected_rows(path: Path, work: Path) -> dict:
    """The recording imported and landed in ``work``, derived by the row-at-a-time deriver."""
    store = Store(work)
    (report,) = import_recordings([path], store.spool_dir)
    (day,) = report.days
    landing.land_day(store, day)
    return reference.derive(store.partition_files("ws_event", day), day)
