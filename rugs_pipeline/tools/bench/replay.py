"""Replay throughput and memory: the server against the simulator, the reader against a bare parse.

- Server: ``rugs-pipeline replay --max`` over the day's first files and ``rugs-pipeline simulate
  --replay`` (no pacing) over the same first frames, alternately into the capture figure's
  discarding client (``capture.sink``: frames/s from the first to the last event frame); the best
  rate of each counts.
- Reader: ``consumers.replay`` over the whole day as landed, against ``orjson.loads`` over the
  day's event frames (``derivation.orjson_loop``: the parse alone, read beforehand). Each in a
  fresh process; the reader's peak memory (imports included) on the day and on its first
  ``SMALL_FRAMES`` frames.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from rugs_pipeline.tools.bench import capture
from rugs_pipeline.tools.bench.measure import Measured, isolated
from rugs_pipeline.tools.bench.synth import DAY, SyntheticDay

ROUNDS = capture.ROUNDS
SMALL_FRAMES = 10_000  # the small day of the memory comparison (beside the bench's 1M-frame day)


@dataclass(frozen=True)
class ServerResult:
    frames: int  # frames in the simulator's recording (the replay serves the files holding them)
    replay_rate: float  # frames/s into the discarding client
    simulator_rate: float

    @property
    def ratio(self) -> float:
        return self.replay_rate / self.simulator_rate


@dataclass(frozen=True)
class ReaderResult:
    frames: int
    reader: Measured  # value: read_all's (frames, resident bytes once imported, peak resident bytes)
    orjson_s: float
    orjson_frames: int
    small: Measured  # the reader on the small day

    @property
    def reader_rate(self) -> float:
        return self.reader.value[0] / self.reader.seconds

    @staticmethod
    def peak(run: Measured) -> int:
        return run.value[2]

    @staticmethod
    def growth(run: Measured) -> int:
        """Peak resident memory over what the process held once its imports were done."""
        return run.value[2] - run.value[1]

    @property
    def orjson_rate(self) -> float:
        return self.orjson_frames / self.orjson_s

    @property
    def ratio(self) -> float:
        return self.reader_rate / self.orjson_rate


def measure_server(day: SyntheticDay, frames: int, work: Path) -> ServerResult:
    work.mkdir(parents=True, exist_ok=True)
    recording = work / f"replay-{frames}.jsonl"
    sent = capture.write_recording(day, frames, recording)
    store = day.landed_copy(work / "store", frames)
    replay_rates, simulator_rates = [], []
    for _ in range(ROUNDS):  # alternating, so that the machine's drift hits both alike
        simulator_rates.append(asyncio.run(capture.sink(capture.start_simulator(recording))))
        replay_rates.append(asyncio.run(capture.sink(capture.start_server(
            "replay", "--from", DAY, "--max", env={"RUGS_DATA_DIR": str(store.root)}))))
    return ServerResult(len(sent), max(replay_rates), max(simulator_rates))


def measure_reader(day: SyntheticDay, work: Path) -> ReaderResult:
    # not at the top: read_all's process imports this module, and its peak memory should be the reader's, not Dagster's
    from rugs_pipeline.tools.bench import derivation

    work.mkdir(parents=True, exist_ok=True)
    whole = day.landed_copy(work / "whole")
    small = day.landed_copy(work / "small", min(day.frames, SMALL_FRAMES))
    parse_s, parsed, _ = isolated(derivation.orjson_loop, day.files()).value
    reader = isolated(read_all, whole.root)
    return ReaderResult(day.frames, reader, parse_s, parsed, isolated(read_all, small.root))


def read_all(root: Path) -> tuple[int, int, int]:
    """Every frame of the day through ``consumers.replay``, as fast as it goes, each one's text in hand: (frames,
    resident bytes once imported, peak resident bytes)."""
    from rugs_pipeline.consumers import replay

    imported = _memory("VmRSS")
    return sum(1 for frame in replay(DAY, data_dir=root) if frame.raw), imported, _memory("VmHWM")


def _memory(field: str) -> int:
    """This process's ``VmRSS`` (now) or ``VmHWM`` (peak) in bytes. Not getrusage's ru_maxrss: Linux keeps that
    across exec, so a spawned process starts with the peak of the process it was forked from."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")
