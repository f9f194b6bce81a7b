"""Readers for recordings made by earlier recorders (decoded events, not wire frames).

INTERFACE (implementation in progress): ``read_recording(path, tz)`` yields
``RecordedEvent`` for each readable event and ``BadLine`` for each unreadable one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class RecordedEvent:
    ts: datetime  # timezone-aware UTC receive time as the recording states it
    name: str  # Socket.IO event name
    args: tuple[Any, ...]  # event arguments as on the wire (a trace header first where recorded)
    direction: str = "received"  # received | sent
    line: int = 0  # 1-based line (or sample index) in the file


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str
    text: str  # the offending text (truncated to 500 characters)
