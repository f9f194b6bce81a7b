"""Daily partitions start at ``$RUGS_FIRST_DAY``, by default the first day the feed is known to have data."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from rugs_pipeline import config

from .conftest import REPO_ROOT

CLI = REPO_ROOT / ".venv" / "bin" / "rugs-pipeline"

FIRST_KEY = "from rugs_pipeline.defs.partitions import daily; print(daily.get_first_partition_key())"


def _first_key(value: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RUGS_FIRST_DAY"}
    if value is not None:
        env["RUGS_FIRST_DAY"] = value
    return subprocess.run([sys.executable, "-c", FIRST_KEY], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("value, first", [(None, "2025-10-29"), ("", "2025-10-29"), ("2025-12-01", "2025-12-01")])
def test_partitions_start_at_the_configured_first_day(value: str | None, first: str) -> None:
    out = _first_key(value)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == first


@pytest.mark.parametrize("value", ["20251029", "2025-13-01", "yesterday"])
def test_a_first_day_that_is_not_a_day_is_named_with_the_fix(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUGS_FIRST_DAY", value)
    with pytest.raises(config.ConfigError) as err:
        config.Settings.from_env()
    assert str(err.value) == f"RUGS_FIRST_DAY={value!r} is not a day: give YYYY-MM-DD, e.g. 2025-10-29"
    out = _first_key(value)  # the code location refuses to load, saying the same
    assert out.returncode != 0 and str(err.value) in out.stderr


def test_backfill_before_the_first_day_says_which_setting_moves_it(tmp_path) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RUGS_")}, "RUGS_DATA_DIR": str(tmp_path)}
    out = subprocess.run([str(CLI), "backfill", "--from", "2025-10-01", "--to", "2025-10-30"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert ("--from 2025-10-01 is before the first daily partition, 2025-10-29 (RUGS_FIRST_DAY): set "
            "RUGS_FIRST_DAY=2025-10-01 to derive earlier days (and restart Dagster for the UI)") in " ".join(out.stderr.split())


def test_the_sensor_names_days_before_the_first_and_the_fix(data_dir) -> None:
    import dagster as dg

    from rugs_pipeline.formats import spool
    from rugs_pipeline.defs.resources import StoreResource
    from rugs_pipeline.defs.sensors import spool_sensor
    from rugs_pipeline.store.layout import Store

    ts = int(datetime(2025, 10, 1, 12, tzinfo=timezone.utc).timestamp()) * 10**9
    spool.write_sealed_segment(Store(data_dir).spool_dir, spool.SegmentHeader("old", "replay"),
                               [spool.SpoolRecord(1, ts, spool.KIND_FRAME, "2")])
    skip = spool_sensor(dg.build_sensor_context(resources={"store": StoreResource()}))
    assert isinstance(skip, dg.SkipReason)
    assert skip.skip_message == ("pending segments of 2025-10-01 are outside the partitions (2025-10-29..today): set "
                                 "RUGS_FIRST_DAY to the first of them or earlier and restart Dagster")
