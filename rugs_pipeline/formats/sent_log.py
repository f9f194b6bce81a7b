"""The simulator's sent-log (``simulate --sent-log``): one class writes it, and reads it back for ``audit``.

One JSON object a line, written as things happen:

    {"f": 17, "ts": ns}                                   feed frame 17 was broadcast
    {"c": 3, "f": 17, "ts": ns, "data": "42[...]"}        ... and written to connection 3
    {"c": 3, "f": null, "ts": ns, "b64": "..."}           a per-connection frame (OPEN, ping, snapshot), binary as base64
    {"c": 3, "ts": ns, "event": "closed", ...}            connection events: rejected, flapped, closed, silent, ended

A frame is logged when it is handed to an open connection (it then reaches the
peer unless the peer dies), so ``audit`` can tell which frames a recorder should
hold. Each connection's first frame is the Engine.IO OPEN, whose ``sid`` the
recorder stores too: that is how the two sides are matched. Read back, a frame is
kept as its ``frame_key`` only (a day of frames must fit in memory).
"""

from __future__ import annotations

import base64
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from rugs_pipeline.formats.protocol import parse_frame


def frame_key(data: str | bytes) -> int:
    return hash(data)


def open_sid(data: str | bytes) -> str | None:
    """The ``sid`` of an Engine.IO OPEN frame (None for any other frame)."""
    if isinstance(data, str) and data.startswith("0{"):
        frame = parse_frame(data)
        if frame.kind == "open":
            return str(frame.data["sid"])
    return None


@dataclass
class SentConn:
    conn: int
    sid: str | None = None
    feeds: array = field(default_factory=lambda: array("q"))  # feed number, -1 for per-connection frames
    keys: array = field(default_factory=lambda: array("q"))
    ts: array = field(default_factory=lambda: array("q"))


class SentLog:
    """Written by the simulator (a no-op without a path); ``SentLog.read`` gives what a file holds."""

    def __init__(self, path: Path | None) -> None:
        self._fh = open(path, "wb") if path is not None else None
        self.conns: dict[int, SentConn] = {}
        self.feed_ts: dict[int, int] = {}
        self.events: Counter = Counter()
        self.bad_lines = 0

    @property
    def frames(self) -> int:
        return sum(len(c.keys) for c in self.conns.values())

    def _line(self, obj: dict) -> None:
        if self._fh is not None:
            self._fh.write(orjson.dumps(obj) + b"\n")

    def feed(self, feed_no: int) -> None:
        self._line({"f": feed_no, "ts": time.time_ns()})

    def frame(self, conn: int, feed_no: int | None, message: str | bytes) -> None:
        if self._fh is None:
            return
        obj: dict = {"c": conn, "f": feed_no, "ts": time.time_ns()}
        if isinstance(message, bytes):
            obj["b64"] = base64.b64encode(message).decode()
        else:
            obj["data"] = message
        self._line(obj)

    def event(self, conn: int, event: str, **fields) -> None:
        self._line({"c": conn, "ts": time.time_ns(), "event": event, **fields})

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    @classmethod
    def read(cls, path: Path) -> "SentLog":
        """What the file at ``path`` holds; a line that cannot be read is counted (``bad_lines``). OSError if
        the file cannot be opened."""
        log = cls(None)
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    log._add(orjson.loads(line))
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    log.bad_lines += 1  # a simulator killed mid-line: counted, not fatal
        return log

    def _add(self, obj: dict) -> None:
        if "event" in obj:
            self.events[obj["event"]] += 1
            return
        if "c" not in obj:
            self.feed_ts[obj["f"]] = obj["ts"]
            return
        conn = self.conns.get(obj["c"]) or self.conns.setdefault(obj["c"], SentConn(obj["c"]))
        data = base64.b64decode(obj["b64"]) if "b64" in obj else obj["data"]
        if conn.sid is None and not conn.keys:
            conn.sid = open_sid(data)
        conn.feeds.append(-1 if obj["f"] is None else obj["f"])
        conn.keys.append(frame_key(data))
        conn.ts.append(obj["ts"])
