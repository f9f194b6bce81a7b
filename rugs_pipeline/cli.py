"""``rugs-pipeline``: the command line. Each command is thin; the work lives in the modules."""

from __future__ import annotations

import os
import sys
from datetime import timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click
from rich.console import Console
from rich.table import Table

from rugs_pipeline import config
from rugs_pipeline.errors import RugsError

# Piped output (logs, scripts) gets whole lines rather than tables cut to 80 columns.
console = Console() if sys.stdout.isatty() else Console(width=200)


class _OneLineErrors(click.Group):
    """Expected failures (bad file, bad URL, port in use, ...) print one line and exit 1."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (RugsError, OSError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_OneLineErrors)
@click.option("--data-dir", envvar="RUGS_DATA_DIR", help="The store: a folder, file:///folder or s3://bucket/prefix "
              "(default $RUGS_DATA_DIR, else ~/rugs_data).")
@click.option("--spool-dir", envvar="RUGS_SPOOL_DIR", help="The spool, when apart from the store (default "
              "$RUGS_SPOOL_DIR, else <data dir>/spool).")
def main(data_dir: str | None, spool_dir: str | None) -> None:
    """Capture, land, derive and query the rugs.fun feed.

    The store lives in $RUGS_DATA_DIR (default ~/rugs_data).
    """
    # the commands, and the Dagster runs and processes they start, read the settings from the environment
    for var, value in (("RUGS_DATA_DIR", data_dir), ("RUGS_SPOOL_DIR", spool_dir)):
        if value:
            os.environ[var] = value
    config.Settings.from_env()  # a setting that cannot work stops every command here, in one line


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on (0 picks a free one).")
@click.option("--seed", default=1, show_default=True, type=int, help="Seed: same seed, same games.")
@click.option("--speed", default=1.0, show_default=True, type=float, help="Time runs this many times faster.")
@click.option("--replay", "replay", multiple=True, type=click.Path(path_type=Path),
              help="Serve this recording or REPLAYER game file (repeatable, in order) at its original "
              "pacing / speed from the first client's connect, then exit. Files after the options are "
              "served too: --replay FILE...")
@click.option("--ping-interval-ms", default=25000, show_default=True, type=int, help="Engine.IO ping interval.")
@click.option("--ping-timeout-ms", default=20000, show_default=True, type=int, help="Engine.IO ping timeout.")
@click.option("--rate", default=0.0, type=float, help="Extra load: this many simLoad frames per second.")
@click.option("--rate-bytes", default=300, show_default=True, type=int, help="Padding of each load frame.")
@click.option("--sent-log", type=click.Path(path_type=Path), help="Write every frame sent, frame by frame (for audit).")
@click.option("--close-every", "close_every_s", type=float, help="Fault: close each connection after this many s.")
@click.option("--silent-after", "silent_after_s", type=float,
              help="Fault: after this many s send nothing more on a connection (no data, no pings), keep it open.")
@click.option("--flap", default=0, type=int, help="Fault: accept then close this many connections per episode.")
@click.option("--reject", "reject_status", type=int, help="Fault: answer the upgrade with this HTTP status (429, 503).")
@click.option("--reject-count", default=3, show_default=True, type=int, help="... this many times per episode.")
@click.option("--retry-after", "retry_after_s", type=int, help="... with this Retry-After (s).")
@click.option("--ping-delay", "ping_delay_s", default=0.0, type=float, help="Fault: send each ping this many s late.")
@click.option("--no-pings", is_flag=True, help="Fault: never send a ping.")
@click.option("--malformed-every", default=0, type=int,
              help="Fault: after every N frames a malformed one (non-JSON, truncated, binary, unknown types, ...).")
@click.option("--oversized-every", default=0, type=int, help="Fault: after every N frames an oversized one.")
@click.option("--oversized-bytes", default=2 * 2**20, show_default=True, type=int, help="Size of oversized frames.")
@click.option("--burst-every", "burst_every_s", type=float, help="Fault: every this many s hold all sending ...")
@click.option("--burst-hold", "burst_hold_s", default=2.0, show_default=True, type=float,
              help="... for this many s, then send it at once.")
@click.option("--protocol-drift", is_flag=True,
              help="Serve a changed protocol: a new event, a new field, a retyped and a removed field "
              "(what the protocol_drift check must name).")
@click.argument("replay_files", nargs=-1, type=click.Path(path_type=Path))
def simulate(host: str, port: int, seed: int, speed: float, replay: tuple[Path, ...], replay_files: tuple[Path, ...],
             ping_interval_ms: int, ping_timeout_ms: int, protocol_drift: bool, **faults) -> None:
    """Run the feed simulator: a local Socket.IO server speaking the rugs.fun protocol.

    Fault options combine. Connection faults come in episodes: one at start and one after each
    connection the simulator ends (--close-every, --silent-after); in each, --reject-count rejected
    upgrades, then --flap accepted-and-closed connections, then a normal one.
    """
    from rugs_pipeline.simulator.faults import FaultConfig
    from rugs_pipeline.simulator.server import SimulatorConfig, run

    run(SimulatorConfig(host=host, port=port, seed=seed, speed=speed, replay=[*replay, *replay_files],
                        ping_interval_ms=ping_interval_ms, ping_timeout_ms=ping_timeout_ms,
                        protocol_drift=protocol_drift, faults=FaultConfig(**faults)))


@main.command()
@click.option("--url", default=None, help="Feed URL (default $RUGS_FEED_URL or the live server).")
@click.option("--source", default="public_ws", show_default=True,
              type=click.Choice(["public_ws", "cdp", "ui"]), help="Value of the source column.")
@click.option("--seal-interval", default=30.0, show_default=True, type=float, help="Seal a segment at least this often (s).")
@click.option("--fsync-interval", default=1.0, show_default=True, type=float, help="fsync the open segment this often (s).")
@click.option("--stale-after", default=10.0, show_default=True, type=float,
              help="Reconnect when no data arrives for this long during a game (s).")
@click.option("--stale-idle-after", default=30.0, show_default=True, type=float,
              help="Reconnect when no data arrives for this long outside a game (s).")
@click.option("--min-connect-interval", default=1.0, show_default=True, type=float,
              help="Never start two connects closer than this (s).")
@click.option("--backoff-max", default=30.0, show_default=True, type=float, help="Longest wait between reconnects (s).")
@click.option("--retry-after-max", default=600.0, show_default=True, type=float,
              help="Honour a server's Retry-After up to this long (s).")
@click.option("--max-frame-mb", default=16.0, show_default=True, type=float,
              help="Refuse (and count) frames bigger than this (MiB); bounds the recorder's memory.")
@click.option("--resume-free-mb", default=16.0, show_default=True, type=float,
              help="After a write fails (disk full), resume once this much space is free (MiB).")
def record(url: str | None, source: str, seal_interval: float, fsync_interval: float, stale_after: float,
           stale_idle_after: float, min_connect_interval: float, backoff_max: float, retry_after_max: float,
           max_frame_mb: float, resume_free_mb: float) -> None:
    """Record the feed into the spool until SIGINT/SIGTERM, then seal what is held.

    With $RUGS_LEGACY_RECORDERS true (the default) it also writes the legacy JSONL
    capture to $RUGS_DATA_DIR/legacy_jsonl/<session>.jsonl.
    """
    import logging

    from rugs_pipeline.capture.recorder import RecorderConfig, RecorderError, check_feed_url, run
    from rugs_pipeline.store.layout import Store

    settings = config.Settings.from_env()
    feed = check_feed_url(url or settings.feed_url)  # before anything is created
    legacy = settings.legacy_recorders
    logging.basicConfig(format="%(message)s", level=logging.WARNING)
    logging.getLogger("rugs_pipeline.capture").setLevel(logging.INFO)  # connection state changes, the summary
    store = Store.from_env()
    if legacy and store.remote:
        raise RecorderError(f"the legacy JSONL capture is written under RUGS_DATA_DIR, which is {store.root}: set "
                            "RUGS_LEGACY_RECORDERS=false or give the recorder a local RUGS_DATA_DIR")
    cfg = RecorderConfig(url=feed.real, spool_dir=store.spool_dir, source=source,
                         seal_interval_s=seal_interval, fsync_interval_s=fsync_interval, stale_game_s=stale_after,
                         stale_idle_s=stale_idle_after, min_connect_interval_s=min_connect_interval,
                         backoff_max_s=backoff_max, retry_after_max_s=retry_after_max, max_frame_bytes=int(max_frame_mb * 2**20),
                         resume_free_bytes=int(resume_free_mb * 2**20),
                         legacy_dir=store.root / "legacy_jsonl" if legacy else None)
    click.echo(f"recording {feed.shown} into {cfg.spool_dir}", err=True)
    run(cfg)


@main.command()
@click.option("--sent-log", required=True, type=click.Path(path_type=Path), help="The simulator's --sent-log file.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-landed", is_flag=True, help="Skip checking the landed ws_event files against the spool.")
def audit(sent_log: Path, as_json: bool, no_landed: bool) -> None:
    """Compare what the simulator sent with the spool and the landed ws_event of $RUGS_DATA_DIR.

    Prints frames lost, duplicated and reordered, and the outages that explain any loss;
    exits 1 if anything is unexplained.
    """
    import json

    from rugs_pipeline.tools.audit import audit as run_audit
    from rugs_pipeline.tools.audit import render
    from rugs_pipeline.store.layout import Store

    store = Store.from_env()
    report = run_audit(sent_log, store, with_landed=not no_landed)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        for line in render(report, sent_log, store):
            click.echo(line)
    if report.problems:
        sys.exit(1)


def _timezone(_ctx, _param, value: str):
    try:
        return timezone.utc if value.upper() == "UTC" else ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"unknown time zone {value!r}") from exc


@main.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--tz", default="UTC", show_default=True, callback=_timezone,
              help="Time zone of timestamps that carry none (e.g. America/New_York).")
@click.option("--max-frame-mb", default=16.0, show_default=True, type=float,
              help="Lines (array elements) longer than this (MiB) are stored as import_error, unread; bounds memory.")
def import_(files: tuple[Path, ...], tz, max_frame_mb: float) -> None:
    """Bring existing recordings into the spool as source = replay (landed by the sensor)."""
    from rich.progress import Progress

    from rugs_pipeline.tools.backfill import backfill_commands
    from rugs_pipeline.capture.importer import iter_import
    from rugs_pipeline.store.layout import Store

    store = Store.from_env()
    reports = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("import", total=len(files))
        for rep in iter_import(list(files), store.spool_dir, tz=tz, max_bytes=int(max_frame_mb * 2**20)):
            reports.append(rep)
            progress.update(task, advance=1, description=rep.path.name)
    table = Table("file", "format", "session", "events", "bad lines", "segments",
                  title=f"imported into {store.spool_dir}")
    for rep in reports:
        table.add_row(rep.path.name, rep.format, rep.session_id, str(rep.events), str(len(rep.bad_lines)), str(len(rep.segments)))
    console.print(table)
    for rep in reports:
        for bad in rep.bad_lines:
            click.echo(f"{rep.path}:{bad.line}: {bad.reason}", err=True)
    days = sorted({day for rep in reports for day in rep.days})
    if days:
        # The UTC day, not the recording's local one: an evening in New York is the next day in UTC.
        click.echo(f"wrote UTC day(s) {' '.join(days)} (times without a zone read as {getattr(tz, 'key', 'UTC')}); "
                   "land and derive them with:")
        for command in backfill_commands(days):
            click.echo(f"  {command}")


@main.command()
@click.option("--frames", default=1_000_000, show_default=True, type=int, help="Frames in the synthetic day.")
@click.option("--seed", default=1, show_default=True, type=int, help="Simulator seed of the synthetic day.")
@click.option("--capture-frames", default=50_000, show_default=True, type=int, help="Frames the capture figure sends.")
@click.option("--query-frames", default=250_000, show_default=True, type=int,
              help="Frames per day of the 30 days the query figure reads.")
@click.option("--only", multiple=True, type=click.IntRange(1, 10), help="Measure only this figure (repeatable).")
@click.option("--work", type=click.Path(path_type=Path), help="Scratch folder (default beside the cache).")
@click.option("--keep", is_flag=True, help="Keep the scratch data of this run.")
def bench(frames: int, seed: int, capture_frames: int, query_frames: int, only: tuple[int, ...], work: Path | None,
          keep: bool) -> None:
    """Measure the pipeline on a synthetic day: ten figures, each beside its goal.

    The day is built from the simulator once and cached in $RUGS_BENCH_CACHE
    (default ~/.cache/rugs_pipeline/bench); a 1M-frame day takes ~5 GB there.
    """
    from rugs_pipeline.tools.bench.run import Options, run

    options = Options(frames=frames, seed=seed, capture_frames=capture_frames, query_frames=query_frames,
                      work=work, keep=keep, only=set(only) or set(range(1, 10)))
    run(options, console)


@main.command()
@click.argument("sql")
@click.option("--max-rows", default=50, show_default=True, type=int, help="Rows to print (--format table).")
@click.option("--format", "fmt", default="table", show_default=True,
              type=click.Choice(["table", "csv", "json", "parquet"]),
              help="table: for reading (a result too wide for the screen prints one record per row); csv, json "
              "(one object per line), parquet: every row, for programs.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the result to FILE, not stdout.")
def query(sql: str, max_rows: int, fmt: str, output: Path | None) -> None:
    """Run DuckDB SQL over the store: one view per doc_type (ws_event, game_tick, ...)."""
    import duckdb

    from rugs_pipeline.consumers import connect_views, results

    con, skipped = connect_views()
    if skipped:
        click.echo(f"note: {results.skipped_note(skipped)}", err=True)
    if fmt == "parquet" and output is None and sys.stdout.isatty():
        raise click.UsageError("--format parquet is binary: give --output FILE (or pipe it)")
    try:
        rel = con.sql(sql)
        if rel is None:  # a statement without a result
            return
        if fmt != "table":
            if output is None:
                results.write(rel, fmt, sys.stdout.buffer)
            else:
                click.echo(f"{results.write_file(rel, fmt, output)} rows written to {output}", err=True)
            return
        rows = rel.limit(max_rows + 1).fetchall()
    except duckdb.Error as exc:
        click.echo(f"error: {results.error_text(exc)}", err=True)
        sys.exit(1)
    if output is None:
        results.render(console, rel.columns, rows[:max_rows])
    else:
        with open(output, "w") as fh:
            results.render(Console(file=fh, width=console.width), rel.columns, rows[:max_rows])
    if len(rows) > max_rows:
        click.echo(f"(more than {max_rows} rows; showing {max_rows})", err=True)


@main.command()
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC), YYYY-MM-DD.")
@click.option("--to", "last", required=True, type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), inclusive.")
@click.option("--land/--no-land", default=False, show_default=True,
              help="Land the days' pending spool segments first (ws_event); by default only re-derive.")
def backfill(first, last, land: bool) -> None:
    """Re-derive every derived dataset for a range of days, one run per day, on the Dagster instance.

    Raw data is not re-landed: after a logic change this rebuilds game_tick, player_action, ...
    from the ws_event already stored. Runs appear in the UI ($DAGSTER_HOME, default
    $RUGS_DATA_DIR/dagster_home). Days without data are skipped (one line each, naming the
    nearest days with data); it exits 1 when no day of the range has any.
    """
    from rich.progress import Progress

    from rugs_pipeline.tools.backfill import dagster_home, days_between, plan, progress_console, rederive, result_table
    from rugs_pipeline.store.layout import Store

    try:
        days = days_between(first.date(), last.date())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    dagster_home()  # its settings are checked before the store is read
    days, skipped = plan(days, Store.from_env(), land)
    for line in skipped:
        click.echo(line, err=True)
    if not days:
        sys.exit(1)
    results = []
    with progress_console(console) as terminal, Progress(console=terminal, transient=True) as progress:
        day_task = progress.add_task("backfill", total=len(days))
        step_task = progress.add_task("", total=None)

        def on_step(day: str, step: str, finished: int, steps: int) -> None:
            progress.update(step_task, description=f"{day} {step}", completed=finished, total=steps)

        for result in rederive(days, "land_and_derive" if land else "rederive", on_step):
            results.append(result)
            progress.update(day_task, advance=1, description=f"{result.day} {'ok' if result.success else 'FAILED'}")
    console.print(result_table(results))
    if not all(r.success for r in results):
        sys.exit(1)


@main.command()
@click.option("--dry-run", is_flag=True, help="List the days still at an older schema version, change nothing.")
def migrate(dry_run: bool) -> None:
    """Migrate the store to this code's schema version: one migrate_schema run per day, on the Dagster instance.

    Each run re-derives the day's derived datasets and rewrites its ws_event files at an older
    version (atomically, under the same names). The manifest moves to the new version once no day
    is left. Safe to stop at any point and run again: it continues where it stopped.
    """
    import time

    from rich.progress import Progress

    from rugs_pipeline.store import migration, schema
    from rugs_pipeline.store.layout import SchemaVersionError, Store

    store = Store.from_env()
    if store.read_manifest() is None:
        raise SchemaVersionError(f"{store.manifest_path} not found: {store.root} is not a rugs_pipeline store (yet)")
    store.ensure_manifest()  # refuses a store at a newer or another major version, in one line
    days = migration.days_to_migrate(store)
    if dry_run:
        click.echo(f"{len(days)} day(s) to migrate to {schema.SCHEMA_VERSION}: {' '.join(days) or '-'}")
        return
    started = time.monotonic()
    results = []
    if days:  # else nothing to launch (Dagster is not even imported): the manifest alone may be left to finish
        from rugs_pipeline.tools.backfill import rederive

        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("migrate", total=len(days))
            for result in rederive(days, "migrate_schema"):
                results.append(result)
                progress.update(task, advance=1, description=f"{result.day} {'ok' if result.success else 'FAILED'}")
        table = Table("day", "run", "result", title=f"migrate to {schema.SCHEMA_VERSION}")
        for r in results:
            table.add_row(r.day, r.run_id[:8], "migrated" if r.success else "FAILED (see the run in the UI)")
        console.print(table)
    done = migration.finish(store)  # also completes a store whose last run stopped before the manifest
    left = [] if done else migration.days_to_migrate(store)
    click.echo(f"{len(results)} day(s) in {time.monotonic() - started:.1f} s; store at schema "
               f"{store.read_manifest()['version']}" + (f", {len(left)} day(s) left: {' '.join(left)}" if left else ""))
    if not done or not all(r.success for r in results):
        sys.exit(1)


@main.command()
@click.option("--repair", is_flag=True, help="Apply the fixes: quarantine corrupt files and re-land their segments "
              "from the spool, remove stale temp files, land past days' leftovers.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def doctor(repair: bool, as_json: bool) -> None:
    """Check the store of $RUGS_DATA_DIR: every file's footer, the landed ledger against the files and the spool,
    stale temp files and locks, the manifest. Each problem comes with its fix; exits 1 while any is left."""
    import json

    from rugs_pipeline.store import doctor as checks
    from rugs_pipeline.store.layout import Store

    store = Store.from_env()
    report = checks.check(store)
    if repair:
        checks.repair(store, report)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1))
    else:
        if report.problems:
            table = Table("problem", "where", "detail", "fix", *(["repaired"] if repair else []),
                          title=f"doctor: {report.root}")
            for column in table.columns:
                column.overflow = "fold"  # a path is cut nowhere
            for p in report.problems:
                table.add_row(p.kind, p.path, p.detail, p.fix, *([p.repaired or "-"] if repair else []))
            console.print(table)
        left = len(report.unresolved)
        click.echo(f"{report.files_checked} Parquet file(s) checked, {len(report.problems)} problem(s)"
                   + (f", {left} left" if repair else "") + ("" if report.problems else ": OK"))
    if report.unresolved:
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """The store on one screen: recorder sessions, landing lag, last day per dataset, failing checks,
    today's outages, sizes and the manifest version. What to run first."""
    import json

    from rugs_pipeline.tools.status import collect, render
    from rugs_pipeline.store.layout import Store

    report = collect(Store.from_env())
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=1, default=str))
    else:
        click.echo("\n".join(render(report)))


@main.command()
@click.option("--from", "first", required=True, type=click.DateTime(["%Y-%m-%d"]), help="First day (UTC), YYYY-MM-DD.")
@click.option("--to", "last", type=click.DateTime(["%Y-%m-%d"]), help="Last day (UTC), inclusive (default: --from).")
@click.option("--game", "games", multiple=True, help="Only this game's frames (repeatable).")
@click.option("--event", "events", multiple=True, help="Only frames of this event name (repeatable).")
@click.option("--speed", default=1.0, show_default=True, type=float, help="The recorded gaps divided by this.")
@click.option("--max", "fastest", is_flag=True, help="No pacing: as fast as the client takes the frames.")
@click.option("--with-disconnects", is_flag=True,
              help="Serve a recorded outage as a close, then wait for the client to reconnect (else: silence).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int, help="Port to listen on (0 picks a free one).")
def replay(first, last, games: tuple[str, ...], events: tuple[str, ...], speed: float, fastest: bool,
           with_disconnects: bool, host: str, port: int) -> None:
    """Serve stored days ($RUGS_DATA_DIR) as the live Socket.IO feed: the ws_event frames byte-exact, in order.

    Starts once the first client has connected; exits 0 after the last frame, closing each client with 1000.
    """
    from rugs_pipeline.consumers.replay import Replay
    from rugs_pipeline.consumers.replay_server import ReplayConfig, run

    source = Replay(first.date(), last.date() if last else None, games, events)  # refused before listening
    run(source, ReplayConfig(host=host, port=port, speed=None if fastest else speed, disconnects=with_disconnects))


@main.command("search")
@click.argument("question")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100), help="Hits to print.")
def search_(question: str, limit: int) -> None:
    """Search the feed catalog (vectors/events.lance): which events and fields answer QUESTION."""
    from rugs_pipeline.derive import search
    from rugs_pipeline.store.layout import Store

    hits = search.search(Store.from_env(), question, limit)
    table = Table("event", "path", "types", "examples", "seen", "sample frame", title=question)
    for h in hits:
        table.add_row(h["event"], h["path"] or "(payload)", h["types"], ", ".join(h["examples"]),
                      f"{h['frames']:,} frames, {h['occurrences']:,} values", search.show_frame_command(h))
    console.print(table if hits else "no hit: is the catalog built? (event_catalog, then events_index)")


if __name__ == "__main__":
    main()
