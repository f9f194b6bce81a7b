"""Real processes for the capture tests: the simulator (with faults), the recorder, the audit.

Everything waits for conditions (with generous limits) rather than sleeping a fixed
time, so the tests hold on a loaded two-core machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Response

from rugs_pipeline.formats import spool
from rugs_pipeline.derive.datasets import derive_all
from rugs_pipeline.derive.games import rebuild_games, summarize_games
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.store.validation import validate_table
from rugs_pipeline.testing import CLI, wait_until

SLOW_START_S = 60.0  # a Python process on a busy machine


class Sim:
    """``rugs-pipeline simulate`` on a free port, logging what it sends to ``sent.jsonl``."""

    def __init__(self, folder: Path, *args: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.sent_log = folder / "sent.jsonl"
        self.proc = subprocess.Popen([CLI, "simulate", "--port", "0", "--sent-log", str(self.sent_log), *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        match = re.search(r"(ws://\S+)", line)
        assert match, f"simulator did not start: {line!r} {self.proc.stderr.read() if not line else ''}"
        self.url = match.group(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(timeout=60) == 0, self.proc.stderr.read()


def text(message: str | bytes) -> tuple[Opcode, bytes]:
    """A text frame (its bytes as given: they need not be UTF-8)."""
    return Opcode.TEXT, message.encode() if isinstance(message, str) else message


def close_frame(code: int, reason: bytes = b"") -> bytes:
    """A close frame on the wire, whatever its code (invalid ones too)."""
    return Frame(Opcode.CLOSE, code.to_bytes(2, "big") + reason).serialize(mask=False, extensions=[])


@dataclass
class Script:
    """What the scripted server does with one connection.

    ``response``: answer the upgrade with this HTTP response (status, headers, body) instead, or with
    these raw bytes (then drop the TCP connection). Else complete the handshake, write ``frames`` as they are, then ``end`` (raw bytes: a close
    frame, garbage, or nothing) and drop the TCP connection; ``end`` None: wait until the client closes.
    """

    frames: list[tuple[Opcode, bytes]] = field(default_factory=list)
    end: bytes | None = None
    response: tuple[int, list[tuple[str, str]], bytes] | bytes | None = None


class ScriptedServer:
    """A real websockets server on 127.0.0.1 that plays one ``Script`` per connection, in order.

    A connection waits in the upgrade until a script is queued for it (``play``); ``waiting``
    counts connections doing so (the recorder is back), ``finished`` the scripts played out.
    """

    def __init__(self) -> None:
        self.waiting = self.finished = 0
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(30), "scripted server did not start"

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/socket.io/?EIO=4&transport=websocket"

    def play(self, script: Script) -> None:
        self._loop.call_soon_threadsafe(self._scripts.put_nowait, script)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _main(self) -> None:
        self._loop, self._scripts, self._stop = asyncio.get_running_loop(), asyncio.Queue(), asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, process_request=self._request, compression=None,
                         ping_interval=None, open_timeout=None, max_size=None) as server:
            self._port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await self._stop.wait()

    async def _request(self, connection: ServerConnection, _request) -> Response | None:
        self.waiting += 1
        try:
            script = await self._scripts.get()
        finally:
            self.waiting -= 1
        connection.script = script
        if script.response is None:
            return None
        self.finished += 1
        if isinstance(script.response, bytes):
            connection.transport.write(script.response)
            connection.transport.abort()  # websockets' own answer below goes nowhere
            return Response(500, "Unsent", Headers())
        status, headers, body = script.response
        return Response(status, "Scripted", Headers(headers), body)

    async def _handler(self, ws: ServerConnection) -> None:
        script: Script = ws.script
        try:
            for opcode, data in script.frames:  # written raw: websockets would refuse to send invalid frames
                ws.transport.write(Frame(opcode, data).serialize(mask=False, extensions=[]))
            if script.end is None:
                await ws.wait_closed()
            else:
                ws.transport.write(script.end)
                ws.transport.close()
        finally:
            self.finished += 1


class Recorder:
    """``rugs-pipeline record`` into ``data``; its stderr goes to a file (never a full pipe)."""

    def __init__(self, url: str, data: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data = data
        self.spool = Path((env or {}).get("RUGS_SPOOL_DIR") or data / "spool")
        self.stderr_path = data.parent / f"recorder-{time.monotonic_ns()}.err"
        data.parent.mkdir(parents=True, exist_ok=True)
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(
                [CLI, "record", "--url", url, "--seal-interval", "1", *args],
                env={**os.environ, "RUGS_DATA_DIR": str(data), **(env or {})}, stderr=err,
            )

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def ack(self) -> dict:
        """This process's acknowledgement file ({} until it has one)."""
        for path in self.spool.glob(f"*{spool.ACK_SUFFIX}"):
            try:
                ack = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if ack.get("pid") == self.proc.pid:
                return ack
        return {}

    def wait_acked(self, frames: int = 1, timeout: float = SLOW_START_S) -> dict:
        return wait_until(lambda: (a := self.ack()) and a.get("frames_received", 0) >= frames and a,
                          timeout, f"recorder to acknowledge {frames} frames")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def records(data: Path) -> dict[str, list[spool.SpoolRecord]]:
    """Every sealed record, by session, in seq order."""
    out: dict[str, list[spool.SpoolRecord]] = {}
    for seg in spool.sealed_segments(data / "spool"):
        out.setdefault(seg.session_id, []).extend(spool.iter_segment_records(seg))
    return {s: sorted(r, key=lambda x: x.seq) for s, r in out.items()}


def lifecycle(data: Path) -> list[dict]:
    """Every lifecycle record (with its session and ts), sessions in start order."""
    out = []
    for session, recs in sorted(records(data).items()):
        for r in recs:
            if r.kind == spool.KIND_LIFECYCLE:
                out.append({**json.loads(r.data), "_session": session, "_ts": r.ts_ns})
    return out


def audit(sent_log: Path, data: Path) -> tuple[int, dict]:
    out = subprocess.run([CLI, "audit", "--sent-log", str(sent_log), "--json"], capture_output=True, text=True,
                         env={**os.environ, "RUGS_DATA_DIR": str(data)}, timeout=600)
    assert out.stdout, out.stderr
    return out.returncode, json.loads(out.stdout)


def assert_clean_audit(sent_log: Path, data: Path) -> dict:
    """Nothing lost without explanation, duplicated or reordered; every gap in an outage."""
    rc, report = audit(sent_log, data)
    assert rc == 0 and report["problems"] == [], report
    assert report["conns_matched"] >= 1 and report["lost_pending"] == 0, report
    return report


def derive_everything(ws_event: pa.Table) -> dict[str, pa.Table]:
    """Every derived table of these rows: the frame datasets and the games."""
    tables = {**derive_all(ws_event), **rebuild_games(ws_event)}
    tables["games"] = summarize_games(tables["game_tick"], tables["complete_game"], tables["player_action"])
    return tables


def land_and_derive(data: Path) -> dict[str, pa.Table]:
    """Land every day, derive everything from all of it, check each table against its schema."""
    store = Store(data)
    days = sorted({seg.day for seg in spool.sealed_segments(store.spool_dir)})
    for day in days:
        landing.land_day(store, day)
    ws = pa.concat_tables([store.read_partition("ws_event", day) for day in days])
    derived = {"ws_event": ws, **derive_everything(ws)}
    for doc_type, table in derived.items():
        assert validate_table(doc_type, table) == [], (doc_type, validate_table(doc_type, table))
    return derived


def outages(derived: dict[str, pa.Table]) -> list[dict]:
    return [r for r in derived["system_event"].to_pylist() if r["event_name"] == "outage"]
