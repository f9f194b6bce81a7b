"""The legacy JSONL capture, for tools that still read what earlier recorders wrote.

One file per recorder session, ``$RUGS_DATA_DIR/legacy_jsonl/<session_id>.jsonl``,
one ``{"seq", "ts", "event", "data"}`` object a line: ``seq`` counts the file's
lines from 1, ``ts`` is the receive time (ISO 8601, UTC, with its offset),
``data`` the event's arguments as those recorders stored them (the payload alone,
or ``[trace_header, payload]`` for traced events), and ``connect`` / ``disconnect``
lines mark the Socket.IO connection as python-socketio reported it. ``import``
reads these files back. The spool stays the record of truth: this copy is made
durable with it, but holds decoded events, not wire frames.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

from rugs_pipeline.formats.spool import AppendFile

SUFFIX = ".jsonl"


def _iso(ts_ns: int) -> str:
    seconds, ns = divmod(ts_ns, 10**9)
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=ns // 1000).isoformat()


def _data(args: tuple[Any, ...]) -> Any:
    if not args:
        return None
    return args[0] if len(args) == 1 else list(args)


def repair(folder: Path, session_id: str) -> None:
    """Cut a crashed session's file back to its last complete line."""
    path = folder / f"{session_id}{SUFFIX}"
    if not path.is_file():
        return
    raw = path.read_bytes()
    keep = raw.rfind(b"\n") + 1
    if keep < len(raw):
        with open(path, "rb+") as fh:
            fh.truncate(keep)


class LegacyWriter:
    """Appends one session's events; durable in steps, like the spool (see ``AppendFile``)."""

    def __init__(self, folder: Path, session_id: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{session_id}{SUFFIX}"
        self.file = AppendFile(self.path)
        self.seq = 0
        self._synced_seq = 0

    def write(self, ts_ns: int, event: str, args: tuple[Any, ...] = ()) -> None:
        self.seq += 1
        line = {"seq": self.seq, "ts": _iso(ts_ns), "event": event, "data": _data(args)}
        self.file.write(orjson.dumps(line) + b"\n")

    def flush(self) -> tuple[int, int]:
        """Hand buffered lines to the kernel; returns the mark ``make_durable`` takes."""
        return self.file.flush(), self.seq

    def make_durable(self, mark: tuple[int, int]) -> None:
        self.file.make_durable(mark[0])
        self._synced_seq = mark[1]

    def close(self) -> None:
        self.make_durable(self.flush())
        self.file.fh.close()

    def abandon(self) -> None:
        """After a failed write: keep what is durable and go on appending after it."""
        self.file.abandon()
        self.file = AppendFile(self.path, new=False)
        self.seq = self._synced_seq
