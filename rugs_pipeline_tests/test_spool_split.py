"""Recorders on their own machines: the spool on shared storage, the lake and Dagster elsewhere.

One machine plays both sides with two data roots: the recorders' (``RUGS_DATA_DIR`` of
their own, ``RUGS_SPOOL_DIR`` the shared folder) and Dagster's (the lake, same spool).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest

from rugs_pipeline.formats import spool
from rugs_pipeline.defs.resources import StoreResource
from rugs_pipeline.defs.sensors import spool_sensor
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import SEED_QUERY_TICKS, SEED_QUERY_WS, land_and_derive_days, run_seed_query

from .capture_harness import CLI, Recorder, Sim


def test_recorders_write_a_shared_spool_that_the_lake_lands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared" / "spool"  # e.g. an NFS mount both sides see
    home = tmp_path / "home"
    lake = home / "rugs_data"  # the Dagster machine's store, where the seed queries' ~/rugs_data points
    recorder_roots = [tmp_path / "recorder1", tmp_path / "recorder2"]
    sim = Sim(tmp_path, "--speed", "25", "--seed", "3")
    try:
        recorders = [Recorder(sim.url, root, env={"RUGS_SPOOL_DIR": str(shared)}) for root in recorder_roots]
        for recorder in recorders:
            recorder.wait_acked(frames=1200)  # a few whole games
        for recorder in recorders:
            assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    sealed = spool.sealed_segments(shared)
    sessions = {seg.session_id for seg in sealed}
    assert len(sessions) == 2
    for root in recorder_roots:  # a recorder's own root keeps only its legacy capture
        assert not (root / "spool").exists() and not (root / "events_parquet").exists()
        assert [p.name for p in root.iterdir()] == ["legacy_jsonl"]

    monkeypatch.setenv("RUGS_DATA_DIR", str(lake))
    monkeypatch.setenv("RUGS_SPOOL_DIR", str(shared))
    requests = spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()}))
    days = sorted({r.partition_key for r in requests})
    assert days
    land_and_derive_days(days)
    assert isinstance(spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()})), dg.SkipReason)
    assert not (lake / "spool").exists(), "the lake side never writes a spool of its own"

    store = Store(lake)
    landed = [r for d in days for r in store.read_partition("ws_event", d, ["session_id", "seq"]).to_pylist()]
    spooled = [{"session_id": seg.session_id, "seq": r.seq} for seg in sealed for r in spool.iter_segment_records(seg)]
    key = lambda r: (r["session_id"], r["seq"])  # noqa: E731
    assert sorted(landed, key=key) == sorted(spooled, key=key)

    out = subprocess.run([CLI, "audit", "--sent-log", str(tmp_path / "sent.jsonl"), "--json"], capture_output=True,
                         text=True, env={**os.environ, "RUGS_DATA_DIR": str(lake), "RUGS_SPOOL_DIR": str(shared)},
                         timeout=600)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["problems"] == [], report
    ws_rows = run_seed_query(SEED_QUERY_WS, home)
    ticks = run_seed_query(SEED_QUERY_TICKS, home)
    assert len(ws_rows) == 100 and len(ticks) > 50
