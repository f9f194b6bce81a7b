"""``rugs-pipeline status`` on a real small store: a recording imported (the golden day), real recorders (one alive,
one killed -9, one recovered), landing and derivation through the Dagster instance, a failing check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from rugs_pipeline.store.layout import Store

from rugs_pipeline.tools.bench import golden
from rugs_pipeline.testing import unpacked_golden

from .capture_harness import CLI, Recorder, Sim

PAST_DAY = golden.START.date().isoformat()


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=600)


def _status(env: dict) -> tuple[dict, str]:
    out = _cli(env, "status", "--json")
    assert out.returncode == 0, out.stderr
    text = _cli(env, "status")
    assert text.returncode == 0, text.stderr
    return json.loads(out.stdout), text.stdout


def test_status_reports_sessions_landing_datasets_outages_and_failing_checks(tmp_path: Path) -> None:
    data, home = tmp_path / "rugs_data", tmp_path / "dagster_home"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("RUGS_", "DAGSTER_"))},
           "RUGS_DATA_DIR": str(data), "DAGSTER_HOME": str(home)}
    today = datetime.now(timezone.utc).date().isoformat()
    assert _cli(env, "import", str(unpacked_golden(tmp_path))).returncode == 0

    sim = Sim(tmp_path / "sim", "--speed", "10")
    crashed_first = Recorder(sim.url, data, env=env)
    crashed_first.wait_acked(5)
    crashed_first.kill9()
    alive = Recorder(sim.url, data, env=env)  # recovers the first: its downtime becomes today's outage
    alive.wait_acked(5)
    crashed = Recorder(sim.url, data, env=env)
    crashed.wait_acked(5)
    crashed.kill9()
    try:
        before, text = _status(env)
        sessions = {s["session_id"]: s for s in before["sessions"]}
        states = sorted(s["state"] for s in before["sessions"])
        assert states == ["alive", "crashed", "stopped", "stopped"], before["sessions"]
        assert all(s["last_frame"] and s["last_seq"] for s in sessions.values()), sessions
        assert before["pending_segments"] >= 2 and before["pending_days"] == [PAST_DAY, today], before
        assert before["landing_lag_s"] is not None and before["landing_lag_s"] >= 0
        assert before["manifest_version"] is None and before["failing_checks"] == []
        assert before["checks_note"] == f"no Dagster instance at {home} (set DAGSTER_HOME to the one the UI uses)"
        assert f"checks: no Dagster instance at {home}" in text and "manifest none (not a store yet)" in text
        assert f"sealed segment(s) not landed yet ({PAST_DAY}, {today}), oldest sealed" in text
        assert "alive " in text and "crashed " in text

        for day in (PAST_DAY, today):
            out = _cli(env, "backfill", "--from", day, "--to", day, "--land")
            assert out.returncode == 0, out.stdout + out.stderr
        # a landed file copied beside itself: ws_event's blocking schema_valid finds every row twice
        landed = Store(data).partition_files("ws_event", PAST_DAY)[0]
        shutil.copyfile(landed, landed.with_name("copy_" + landed.name))
        out = _cli(env, "backfill", "--from", PAST_DAY, "--to", PAST_DAY, "--land")
        assert out.returncode == 1 and "FAILED ws_event" in out.stdout, out.stdout + out.stderr

        after, text = _status(env)
    finally:
        alive.stop()
        sim.stop()

    assert after["manifest_version"] == after["code_version"] == "1.2.0"
    datasets = {d["doc_type"]: d for d in after["datasets"]}
    assert datasets["ws_event"]["last_day"] == datasets["game_tick"]["last_day"] == today
    assert datasets["ws_event"]["files"] >= 3 and datasets["ws_event"]["bytes"] > 0
    assert datasets["games"]["files"] == 2  # one file per derived day
    assert PAST_DAY not in after["pending_days"]
    assert after["checks_note"] is None
    failing = {(c["asset"], c["check"], c["day"]) for c in after["failing_checks"]}
    assert ("ws_event", "schema_valid", PAST_DAY) in failing, after["failing_checks"]
    outages = after["outages_today"]
    assert any("recorder down" in o["message"] for o in outages), outages
    assert f"failing checks: {len(failing)}" in text and f"{PAST_DAY}  ws_event.schema_valid [ERROR]" in text
    assert f"outages today: {len(outages)}, " in text and "manifest 1.2.0" in text
    assert f"ws_event      {today}" in text


def test_an_instance_that_cannot_be_read_is_one_line(tmp_path: Path) -> None:
    from rugs_pipeline.tools.status import failing_checks

    (tmp_path / "dagster.yaml").write_text("storage:\n  no_such_storage: {}\n")
    failing, note = failing_checks(tmp_path)
    assert failing == [] and note.startswith(f"cannot read the Dagster instance at {tmp_path}: ") and "\n" not in note
