"""Fault injection, and the sent-log (``formats.sent_log``): what makes the simulator a test instrument.

Faults combine. Connection faults come in *episodes*: one starts with the
simulator and another after each connection the server ends on purpose
(``close_every_s``, ``silent_after_s``). In each episode the first
``reject_count`` upgrade requests get ``reject_status`` (with ``Retry-After`` if
set), the next ``flap`` connections are accepted and closed at once, and the
connection after that is served normally. Feed faults (malformed and oversized
frames, bursts, a load of extra frames) go to every client alike, as broadcasts.

The sent-log (``formats.sent_log``) records every frame sent, so ``audit`` can tell which frames a
recorder should hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rugs_pipeline.formats.protocol import encode_event

LOAD_EVENT = "simLoad"
OVERSIZED_EVENT = "simOversized"


@dataclass
class FaultConfig:
    close_every_s: float | None = None  # the server closes each connection this long after it joined
    silent_after_s: float | None = None  # ... or goes silent on it (no data, no pings), keeping it open
    flap: int = 0  # accept-then-close this many connections per episode
    reject_status: int | None = None  # answer the upgrade with this HTTP status (429, 503, ...)
    reject_count: int = 3  # ... this many times per episode
    retry_after_s: int | None = None  # ... with this Retry-After
    ping_delay_s: float = 0.0  # each ping comes this much later than pingInterval says
    no_pings: bool = False
    malformed_every: int = 0  # after every N feed frames, one malformed frame (cycling through the kinds)
    oversized_every: int = 0  # after every N feed frames, one frame of oversized_bytes
    oversized_bytes: int = 2 * 2**20
    burst_every_s: float | None = None  # every so often hold all sending for burst_hold_s, then send it at once
    burst_hold_s: float = 2.0
    rate: float = 0.0  # extra feed frames per second (simLoad events), on top of the game
    rate_bytes: int = 300
    sent_log: Path | None = None

    def check(self) -> list[str]:
        """What is wrong with the settings (empty if nothing)."""
        problems = []
        for name in ("close_every_s", "silent_after_s", "burst_every_s", "burst_hold_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                problems.append(f"{name.removesuffix('_s').replace('_', '-')} must be positive")
        if self.reject_status is not None and not 400 <= self.reject_status <= 599:
            problems.append(f"reject status must be an HTTP error status (400-599), not {self.reject_status}")
        for name in ("flap", "reject_count", "malformed_every", "oversized_every", "oversized_bytes", "rate", "rate_bytes",
                     "ping_delay_s"):
            if getattr(self, name) < 0:
                problems.append(f"{name.removesuffix('_s').replace('_', '-')} must not be negative")
        return problems


class Episodes:
    """Which connection fault the next attempt gets (see the module docstring)."""

    def __init__(self, config: FaultConfig) -> None:
        self._config = config
        self.begin()

    def begin(self) -> None:
        self._rejects = self._config.reject_count if self._config.reject_status else 0
        self._flaps = self._config.flap

    def reject(self) -> int | None:
        if self._rejects:
            self._rejects -= 1
            return self._config.reject_status
        return None

    def flap(self) -> bool:
        if self._flaps:
            self._flaps -= 1
            return True
        return False


_WRONG_TYPES = {"gameId": 7, "tickCount": "seven", "price": "high", "active": "yes", "rugged": None,
                "partialPrices": [1, 2], "leaderboard": {"not": "a list"}}
MALFORMED_KINDS = 7


def malformed_frame(index: int, last: str) -> str | bytes:
    """Malformed frame number ``index``, cycling through the kinds a recorder must keep raw and flag."""
    return (
        "42this is not JSON",
        last[: max(3, len(last) // 2)],  # truncated: the last frame sent, cut in half
        b"\x00\x01binary\xfe\xff",
        "9unknown Engine.IO packet type",
        '48["unknown Socket.IO packet type"]',
        encode_event("gameStateUpdate", _WRONG_TYPES),  # an event whose payload has the wrong types
        "",
    )[index % MALFORMED_KINDS]


def oversized_frame(n: int, size: int) -> str:
    return encode_event(OVERSIZED_EVENT, {"n": n, "pad": "x" * size})


def load_frame(n: int, size: int) -> str:
    return encode_event(LOAD_EVENT, {"n": n, "pad": "x" * size})
