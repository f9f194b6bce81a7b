"""Capture throughput: the recorder against the simulator sending as fast as it can on loopback.

The simulator replays the first frames of the synthetic day with no pacing (``--replay
--speed 1e9``), then closes. Same frames, alternately to a client that discards what it
receives (the simulator's own send rate) and to ``rugs-pipeline record`` with its defaults
(fsync every second, 30 s segments, the legacy JSONL copy); the best rate of each counts.
Each rate is frames over the time from the first to the last event frame received; the
recorder's comes from the receive times it stored, and its frames must equal the frames
sent, byte for byte and in order.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import orjson
import pyarrow.compute as pc
import pyarrow.dataset as ds
from websockets.asyncio.client import connect

from rugs_pipeline.tools.bench.synth import SyntheticDay
from rugs_pipeline.formats import spool
from rugs_pipeline.formats.protocol import SIO_CONNECT, parse_frame, reply_to

CLI = Path(sys.executable).with_name("rugs-pipeline")
NO_PACING = "1e9"
ROUNDS = 2


@dataclass(frozen=True)
class CaptureResult:
    frames: int
    sink_rate: float  # frames/s the discarding client received
    recorder_rate: float  # frames/s the recorder stored
    lost: int  # frames sent and not stored, over all rounds
    extra: int  # frames stored and never sent, over all rounds

    @property
    def ratio(self) -> float:
        return self.recorder_rate / self.sink_rate


def measure_capture(day: SyntheticDay, frames: int, work: Path) -> CaptureResult:
    work.mkdir(parents=True, exist_ok=True)
    recording = work / f"replay-{frames}.jsonl"
    expected = write_recording(day, frames, recording)
    sent = Counter(expected)
    sink_rates, recorder_rates, lost, extra = [], [], 0, 0
    for n in range(ROUNDS):  # alternating, so that the machine's drift hits both alike
        sink_rates.append(asyncio.run(sink(start_simulator(recording))))
        stored = _record(start_simulator(recording), work / f"store-{n}")
        received = Counter(text for _, text in stored)
        lost += (sent - received).total()
        extra += (received - sent).total()
        recorder_rates.append((len(stored) - 1) / ((stored[-1][0] - stored[0][0]) / 1e9))
    return CaptureResult(len(expected), max(sink_rates), max(recorder_rates), lost, extra)


def write_recording(day: SyntheticDay, frames: int, path: Path) -> list[str]:
    """The day's first received events as a ``{seq, ts, event, data}`` recording; returns their frames."""
    texts: list[str] = []
    rows = ds.dataset(day.files(), format="parquet").to_batches(columns=["raw_json", "frame_kind", "direction"])
    with open(path, "wb") as fh:
        for batch in rows:
            keep = pc.and_(pc.equal(batch["frame_kind"], "event"), pc.equal(batch["direction"], "received"))
            for text in batch.filter(keep)["raw_json"].to_pylist():
                name, *args = orjson.loads(text[2:])
                data = args[0] if len(args) == 1 else args
                fh.write(orjson.dumps({"seq": len(texts), "ts": "2025-06-01T00:00:00", "event": name, "data": data}))
                fh.write(b"\n")
                texts.append(text)
                if len(texts) == frames:
                    return texts
    return texts


def start_simulator(recording: Path) -> tuple[subprocess.Popen, str]:
    return start_server("simulate", "--replay", str(recording), "--speed", NO_PACING)


def start_server(command: str, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``rugs-pipeline <command> --port 0 <args>``, a server that says its URL on its first line; (process, URL)."""
    proc = subprocess.Popen([str(CLI), command, "--port", "0", *args], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    line = proc.stdout.readline()
    match = re.search(r"(ws://\S+)", line)
    if not match:
        proc.kill()
        raise RuntimeError(f"rugs-pipeline {command} did not start: {line!r}")
    return proc, match.group(1)


async def sink(server: tuple[subprocess.Popen, str]) -> float:
    """Receive everything, keep nothing; frames/s between the first and last event frame."""
    proc, url = server
    first = last = None
    count = 0
    # the recorder's own connection settings: the simulator compresses alike for both
    async with connect(url, max_size=None, ping_interval=None, compression="deflate") as ws:
        async for message in ws:
            if message.startswith("42"):
                last = time.perf_counter()
                first = first or last
                count += 1
            elif message.startswith("0"):
                await ws.send(SIO_CONNECT)
            elif (reply := reply_to(parse_frame(message))) is not None:
                await ws.send(reply)
    proc.wait(timeout=60)
    return (count - 1) / (last - first)


def _record(simulator: tuple[subprocess.Popen, str], root: Path) -> list[tuple[int, str]]:
    """Run the recorder until the simulator has served everything; the received event frames it stored."""
    proc, url = simulator
    recorder = subprocess.Popen([str(CLI), "record", "--url", url], env={**os.environ, "RUGS_DATA_DIR": str(root)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=3600)
    finally:
        recorder.send_signal(signal.SIGTERM)
        recorder.wait(timeout=60)
    return [(rec.ts_ns, rec.data) for segment in spool.sealed_segments(root / "spool")
            for rec in spool.iter_segment_records(segment)
            if rec.kind == spool.KIND_FRAME and rec.direction == "received" and str(rec.data).startswith("42")]
