"""`import` names the UTC days it wrote; `backfill` skips days without data, reports each step, fits 80 columns.

The real US-Eastern recording of the evening of 2025-12-06 lands on the UTC day 2025-12-07:
exactly the case where an operator backfills the wrong day.
"""

from __future__ import annotations

import io
import json
import os
import pty
import re
import subprocess
from pathlib import Path

import pyarrow as pa
from rich.console import Console

from rugs_pipeline.tools.backfill import DayResult, backfill_commands, plan, rederive, result_table
from rugs_pipeline.tools.bench import golden
from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.store.layout import Store, file_schema
from rugs_pipeline.testing import unpacked_golden

from .conftest import REPO_ROOT

BIN = REPO_ROOT / ".venv" / "bin"
EVENING = "public_2025-12-06_sandbox.jsonl"  # 19:57 in New York, 00:57 UTC the next day


def _run(args: list, env: dict, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, cwd=REPO_ROOT, **kw)


def _run_in_terminal(args: list, env: dict, stderr: Path) -> tuple[int, str]:
    """(exit code, stdout as shown) of a command whose stdout is a terminal, as an operator runs it."""
    leader, follower = pty.openpty()
    with open(stderr, "w") as err:
        proc = subprocess.Popen([str(a) for a in args], env=env, stdout=follower, stderr=err, cwd=REPO_ROOT)
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(leader)
    return proc.wait(timeout=60), re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", shown.decode(errors="replace"))


def test_import_names_the_utc_day_and_backfill_of_the_local_day_says_no_data(real_dir: Path, tmp_path: Path) -> None:
    data = tmp_path / "rugs_data"
    env = {**os.environ, "RUGS_DATA_DIR": str(data), "DAGSTER_HOME": str(tmp_path / "dagster_home")}
    out = _run([BIN / "rugs-pipeline", "import", real_dir / EVENING, "--tz", "America/New_York"], env)
    assert out.returncode == 0, out.stderr
    assert ("wrote UTC day(s) 2025-12-07 (times without a zone read as America/New_York); land and derive them "
            "with:\n  rugs-pipeline backfill --from 2025-12-07 --to 2025-12-07 --land\n") in out.stdout
    spool = data / "spool"

    out = _run([BIN / "rugs-pipeline", "backfill", "--from", "2025-12-06", "--to", "2025-12-06", "--land"], env)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == (f"no data for 2025-12-06 in the spool ({spool}) or the store (ws_event), skipped; "
                          "nearest days with data: 2025-12-07 (after)\n")
    out = _run([BIN / "rugs-pipeline", "backfill", "--from", "2025-12-07", "--to", "2025-12-07"], env)
    assert (out.returncode, out.stderr) == (1, "no landed data for 2025-12-07: its spool segments are not landed "
                                               "yet; add --land\n")
    assert not list(data.rglob("*.parquet")), "a day without data wrote files"

    # Both days in an 80-column terminal: the day without data is named and skipped, the other runs,
    # its progress names the steps as they run, and its table is cut nowhere.
    returncode, shown = _run_in_terminal(
        [BIN / "rugs-pipeline", "backfill", "--from", "2025-12-06", "--to", "2025-12-07", "--land"],
        {**env, "COLUMNS": "80"}, tmp_path / "stderr")
    stderr = (tmp_path / "stderr").read_text()
    assert returncode == 0, shown + stderr
    assert stderr.startswith("no data for 2025-12-06 ")
    assert len(set(re.findall(r"2025-12-07 ([a-z_]+) ", shown))) >= 3, f"progress named too few steps:\n{shown}"
    table = [line for line in shown.splitlines() if line.startswith(("┃", "│"))]
    assert table[1].startswith("│ 2025-12-07 │") and "passed" in table[1] and len(table) >= 3
    assert all(len(line) <= 80 and "…" not in line for line in table), "\n".join(table)
    assert not list(data.glob("events_parquet/*/date=2025-12-06"))


def test_plan_runs_days_with_data_and_names_the_nearest_for_the_others(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    assert plan(["2025-12-10"], store, land=True) == (
        [], ["no data for 2025-12-10 in the spool ({}) or the store (ws_event), skipped; the spool and the store hold "
             "no day yet: record or import first".format(store.spool_dir)])
    recording = tmp_path / "two_days.jsonl"
    recording.write_text("".join(json.dumps({"seq": n, "ts": f"2025-12-{day}T12:00:00", "event": "x", "data": {}})
                                 + "\n" for n, day in enumerate((10, 14))))
    import_recordings([recording], store.spool_dir)
    store.write_partition_file("ws_event", "2025-12-12", pa.Table.from_pylist([], schema=file_schema("ws_event")),
                               "20251212_120000_landed.parquet")

    days = [f"2025-12-{d:02d}" for d in range(9, 16)]
    run, skipped = plan(days, store, land=True)
    assert run == ["2025-12-10", "2025-12-12", "2025-12-14"]
    nearest = [line.split("skipped; ")[1] for line in skipped]
    assert [line.split()[3] for line in skipped] == ["2025-12-09", "2025-12-11", "2025-12-13", "2025-12-15"]
    assert nearest == ["nearest days with data: 2025-12-10 (after)",
                       "nearest days with data: 2025-12-10 (before), 2025-12-12 (after)",
                       "nearest days with data: 2025-12-12 (before), 2025-12-14 (after)",
                       "nearest days with data: 2025-12-14 (before)"]
    run, skipped = plan(["2025-12-10", "2025-12-12"], store, land=False)
    assert run == ["2025-12-12"]
    assert skipped == ["no landed data for 2025-12-10: its spool segments are not landed yet; add --land"]
    assert backfill_commands(["2025-12-12", "2025-12-07", "2025-12-08"]) == [
        "rugs-pipeline backfill --from 2025-12-07 --to 2025-12-08 --land",
        "rugs-pipeline backfill --from 2025-12-12 --to 2025-12-12 --land"]


def _at_80_columns(results: list[DayResult]) -> str:
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(result_table(results))
    return console.export_text()


def test_backfill_reports_every_step_of_a_day_and_its_table_fits_80_columns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RUGS_DATA_DIR", str(tmp_path / "rugs_data"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    import_recordings([unpacked_golden(tmp_path)], Store.from_env().spool_dir)
    day = golden.START.date().isoformat()
    calls = []
    (result,) = rederive([day], "land_and_derive", lambda *call: calls.append(call))
    assert result.success

    steps = {step for _, step, _, _ in calls}
    (total,) = {total for *_, total in calls}
    assert len(steps) == total > 10 and {"ws_event", "game_tick_schema_valid", "games"} <= steps
    assert {d for d, *_ in calls} == {day}
    assert len(calls) == 2 * total  # each step's start and end, as they happened
    assert [finished for *_, finished, _ in calls] == sorted(finished for *_, finished, _ in calls)
    assert calls[0][1:3] == ("ws_event", 0) and calls[-1][2] == total

    failed = DayResult("2025-12-08", False, "f" * 36, {"ws_event": 1_234_567, "complete_game": 10},
                       ["complete_game", "game_tick", "games", "player_action"])
    text = _at_80_columns([result, failed])
    assert "…" not in text and max(map(len, text.splitlines())) <= 80
    for r in (result, failed):
        (line,) = [line for line in text.splitlines() if line.startswith(f"│ {r.day} │ {r.run_id[:8]} │")]
        assert ("passed" if r.success else "FAILED") in line
        assert all(f"{name}={count}" in text.split() for name, count in r.rows.items())
    assert all(name in text.split() for name in failed.checks_failed)
