"""`make demo` / `make run` / `make stop` as an operator meets them: ports taken by another stack, a second
stack on one store, the read-only UI (Dagster's mitigation for GraphQL mutations sent from any web page)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from rugs_pipeline.testing import DemoStack, free_port

from .conftest import REPO_ROOT

SPOOL_SENSOR = "spool_sensor"


def _make(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-s", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.mark.parametrize("variable, message", [
    ("RUGS_UI_PORT", "error: port {port} on 127.0.0.1 is in use (RUGS_UI_PORT): another stack or service holds it; "
                     "make stop, or set RUGS_UI_PORT to a free port"),
    ("RUGS_SIM_PORT", "error: port {port} on 127.0.0.1 is in use (RUGS_SIM_PORT): another stack's simulator or a "
                      "service holds it; make stop, or set RUGS_SIM_PORT to a free port"),
])
def test_a_port_in_use_is_one_line_before_anything_starts(variable: str, message: str, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        ports = {"RUGS_UI_PORT": str(free_port()), "RUGS_SIM_PORT": str(free_port()), variable: str(port)}
        out = _make("demo", f"DEMO={tmp_path}", env=ports)
    assert out.returncode != 0
    assert [line for line in out.stderr.splitlines() if not line.startswith("make:")] == [message.format(port=port)]
    assert not (tmp_path / "rugs_data" / "logs").exists() and not (tmp_path / "rugs_data" / "spool").exists()


def test_a_read_only_setting_that_is_not_one_is_one_line(tmp_path: Path) -> None:
    out = _make("demo", f"DEMO={tmp_path}", env={"RUGS_UI_READONLY": "maybe"})
    assert out.returncode != 0
    assert [line for line in out.stderr.splitlines() if not line.startswith("make:")] == [
        "error: RUGS_UI_READONLY=maybe: give 1 (a read-only UI) or 0"]
    assert not (tmp_path / "rugs_data" / "logs").exists()


def _get(url: str, query: str) -> dict:
    """GraphQL over GET with a foreign Origin: what any web page the operator opens can send."""
    request = urllib.request.Request(f"{url}/graphql?{urllib.parse.urlencode({'query': query})}",
                                     headers={"Origin": "https://attacker.example"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)["data"]
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{error}: {error.read().decode(errors='replace')[:2000]}") from None


SENSORS = """{ sensorsOrError(repositorySelector: {repositoryLocationName: "rugs_pipeline", repositoryName: "__repository__"})
  { ... on Sensors { results { name sensorState { id status } } } } }"""


def _sensor(url: str) -> dict:
    [state] = [s["sensorState"] for s in _get(url, SENSORS)["sensorsOrError"]["results"] if s["name"] == SPOOL_SENSOR]
    return state


def test_read_only_ui_refuses_mutations_and_make_stop_stops_the_stack(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUGS_UI_READONLY", "1")
    demo = DemoStack(tmp_path / "demo")
    demo.root.mkdir()
    demo.start()
    try:
        # a second stack: on the same store, and on another store but the first one's UI port
        again = _make("demo", f"DEMO={demo.root}", env={"RUGS_UI_PORT": str(free_port()), "RUGS_SIM_PORT": str(free_port())})
        assert again.returncode != 0 and "error: a stack is already running for " \
            f"{demo.root}/rugs_data (pid " in again.stderr, again.stderr
        other = _make("demo", f"DEMO={tmp_path / 'other'}", env={"RUGS_UI_PORT": str(demo.ui_port)})
        assert f"error: port {demo.ui_port} on 127.0.0.1 is in use (RUGS_UI_PORT)" in other.stderr, other.stderr

        # the daemon and the webserver start together on a fresh instance: its SQLite storage was created once
        # (created by both at once, a database gets two alembic heads and the code location never loads)
        for db in (demo.root / "dagster_home").rglob("*.db"):
            with contextlib.closing(sqlite3.connect(db)) as con:
                assert con.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,), db

        sensor = _sensor(demo.url)
        assert sensor["status"] == "RUNNING"
        stopped = _get(demo.url, f'mutation {{ stopSensor(id: "{sensor["id"]}") {{ __typename }} }}')
        assert stopped["stopSensor"]["__typename"] == "UnauthorizedError"
        launched = _get(demo.url, """mutation { launchRun(executionParams: {selector: {repositoryLocationName: "rugs_pipeline",
            repositoryName: "__repository__", jobName: "land_ws_event"}}) { __typename } }""")
        assert launched["launchRun"]["__typename"] == "UnauthorizedError"
        assert _sensor(demo.url)["status"] == "RUNNING"

        demo.note_processes()
        stack_pid = int((demo.root / "rugs_data" / "logs" / "stack.pid").read_text())
        out = _make("stop", f"DEMO={demo.root}", env={"RUGS_DATA_DIR": str(tmp_path / "no_live_stack")})
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [f"stopped the stack of {demo.root}/rugs_data (pid {stack_pid})",
                                           f"no stack running for {tmp_path / 'no_live_stack'}"]
        assert demo.proc.wait(timeout=60) == 0
        deadline = time.monotonic() + 90  # the webserver's code server ends on its own heartbeat
        while demo.alive() and time.monotonic() < deadline:
            time.sleep(1)
        assert not demo.alive(), f"still running after make stop: {demo.alive()}"
        spool_dir = demo.root / "rugs_data" / "spool"
        assert list(spool_dir.glob("*/*.seg")) and not list(spool_dir.glob("*/*.part")), "the recorder sealed first"
    finally:
        if demo.proc.poll() is None:
            demo.ctrl_c()
        demo.kill_leftovers()
