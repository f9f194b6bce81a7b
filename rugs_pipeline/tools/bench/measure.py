"""Running one measured step in a fresh process: its wall time and its peak resident memory."""

from __future__ import annotations

import multiprocessing
import resource
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

GIB = 2**30
MIB = 2**20


@dataclass(frozen=True)
class Measured:
    value: Any
    seconds: float  # wall time of the call, inside the process (imports excluded)
    peak_rss: int  # bytes: the process's high-water mark, imports included


def isolated(fn: Callable[..., Any], *args: Any, warmup: tuple | None = None) -> Measured:
    """Run ``fn(*args)`` in a new process (spawned: nothing inherited but the arguments).

    ``warmup``: ``(fn, *args)`` run first in the same process, untimed: what the process pays once
    (first-use setup, caches), not per call.
    """
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_timed, fn, args, warmup).result()


def _timed(fn: Callable[..., Any], args: tuple, warmup: tuple | None) -> Measured:
    if warmup:
        warmup[0](*warmup[1:])
    start = time.perf_counter()
    value = fn(*args)
    seconds = time.perf_counter() - start
    return Measured(value, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
