"""The reference sidebet environment's speed: ``SidebetEnv`` steps per second on one core.

The episodes are the synthetic day's games as a trainer gets them: the day's first ``ENV_FRAMES``
frames derived by the pipeline's assets, read back with ``consumers.episodes``. The timed loop is a
trainer's inner loop without the model: ``step`` with a fixed random policy (a sidebet asked for on
``BET_CHANCE`` of the ticks), and ``reset`` into a random game after each rug, in a fresh process
pinned to one CPU. The figure is the best of ``ROUNDS``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rugs_pipeline.tools.bench import derivation
from rugs_pipeline.tools.bench.measure import isolated
from rugs_pipeline.tools.bench.synth import DAY, SyntheticDay
from rugs_pipeline.consumers import episodes

ENV_FRAMES = 250_000  # ~550 games, ~100k ticks
STEPS = 300_000
ROUNDS = 3
BET_CHANCE = 0.05


@dataclass(frozen=True)
class EnvResult:
    games: int
    ticks: int  # ticks of all the episodes
    steps: int  # per round
    resets: int  # per round
    rate: float  # steps/s, best round
    cpus: int  # CPUs the timed process could run on


def measure_env(day: SyntheticDay, work: Path, steps: int = STEPS, rounds: int = ROUNDS) -> EnvResult:
    derivation.pipeline_derive(day.prefix(ENV_FRAMES), work)
    return isolated(steps_per_second, episodes(DAY, data_dir=work), steps, rounds).value


def steps_per_second(table: pa.Table, steps: int, rounds: int) -> EnvResult:
    from rugs_pipeline.rl import SidebetEnv  # the rl extra: imported only where this figure runs

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    env = SidebetEnv(table)
    actions = (np.random.default_rng(0).random(steps) < BET_CHANCE).astype(int).tolist()
    best, resets = 0.0, 0
    for _ in range(rounds):
        env.reset(seed=0)
        resets = 0
        start = time.perf_counter()
        for action in actions:
            if env.step(action)[2]:
                env.reset()
                resets += 1
        best = max(best, steps / (time.perf_counter() - start))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    ticks = int(pc.sum(pc.list_value_length(table["prices"])).as_py())
    return EnvResult(table.num_rows, ticks, steps, resets, best, cpus)
