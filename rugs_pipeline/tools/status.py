"""``rugs-pipeline status``: the store and its pipeline on one screen, what an operator reads first.

Read-only, and cheap enough to run any time: directory listings, file sizes, the footer-free tail
of each recent session's last segment, today's ``system_event`` outages, and the Dagster instance's
latest check evaluations. It never takes a lock a writer waits on, and never creates a file: a
missing store, spool or instance is reported as such in one line.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from rugs_pipeline.config import Settings
from rugs_pipeline.formats import spool
from rugs_pipeline.store import landing, schema
from rugs_pipeline.store.layout import Store

RECENT_SESSIONS = 5  # sessions without a lock file shown (newest first); locked ones always are
CHECK_EVALUATIONS = 5000  # the newest check evaluations read from the instance


@dataclass
class Session:
    session_id: str
    state: str  # alive (its lock held) | crashed (lock left, not held) | stopped
    last_seq: int | None
    last_frame: str | None  # UTC time of the last frame kept
    last_frame_age_s: float | None


@dataclass
class Dataset:
    doc_type: str
    last_day: str | None  # the newest partition holding files
    written: str | None  # when that day's newest file was written (UTC)
    files: int
    bytes: int


@dataclass
class FailingCheck:
    asset: str
    check: str
    day: str | None
    severity: str
    description: str | None


@dataclass
class Status:
    now: str
    data_dir: str
    manifest_version: str | None
    code_version: str
    sessions: list[Session] = field(default_factory=list)
    pending_segments: int = 0
    pending_days: list[str] = field(default_factory=list)
    landing_lag_s: float | None = None  # age of the oldest sealed segment not landed yet
    spool_bytes: int = 0
    datasets: list[Dataset] = field(default_factory=list)
    outages_today: list[dict] = field(default_factory=list)
    dagster_home: str | None = None
    checks_note: str | None = None  # why failing checks could not be read, in one line
    failing_checks: list[FailingCheck] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, timezone.utc).isoformat(timespec="seconds")


def _last_frame(path: Path) -> spool.SpoolRecord | None:
    try:
        _, records, _ = spool.read_segment(path)
    except (OSError, ValueError):
        return None
    return next((r for r in reversed(records) if r.kind == spool.KIND_FRAME), None)


def sessions(spool_dir: Path, now_ns: int) -> list[Session]:
    """Every session with a lock file, and the RECENT_SESSIONS newest others, newest first."""
    by_session = spool.segments_by_session(spool_dir)
    locked = set(spool.locked_sessions(spool_dir))
    newest = sorted(by_session, key=lambda s: by_session[s][-1].name, reverse=True)
    shown = [s for s in newest if s in locked] + [s for s in newest if s not in locked][:RECENT_SESSIONS]
    shown += sorted(locked - set(by_session))
    out = []
    for session in shown:
        if session in locked:
            state = "alive" if spool.session_alive(spool_dir, session) else "crashed"
        else:
            state = "stopped"
        # the last segment's last frame; a live session's open segment may end in a torn line, read_segment stops there
        frame = next((f for f in map(_last_frame, reversed(by_session.get(session, []))) if f), None)
        out.append(Session(session, state, frame.seq if frame else None, _iso(frame.ts_ns) if frame else None,
                           round((now_ns - frame.ts_ns) / 1e9, 1) if frame else None))
    return out


def _datasets(store: Store) -> list[Dataset]:
    out = []
    for doc_type in schema.DOC_TYPES:
        days = store.partition_days(doc_type)
        files = [f for day in days for f in store.partition_files(doc_type, day)]
        last = store.partition_files(doc_type, days[-1]) if days else []
        written = max((store.files.stamp(f)[1] for f in last), default=None) if not store.remote else None
        out.append(Dataset(doc_type, days[-1] if days else None, _iso(written) if written else None, len(files),
                           sum(store.files.size(f) for f in files)))
    return out


def _outages(store: Store, day: str) -> list[dict]:
    if not store.partition_files("system_event", day):
        return []
    table = store.read_partition("system_event", day, ["event_name", "start_ts", "end_ts", "duration_s", "message"])
    rows = [r for r in table.to_pylist() if r["event_name"] == "outage"]
    return [{"start": r["start_ts"].isoformat(timespec="seconds") if r["start_ts"] else None,
             "duration_s": r["duration_s"], "message": r["message"]} for r in rows]


def dagster_home(store: Store) -> Path:
    """``$DAGSTER_HOME``, else ``<data dir>/dagster_home`` as ``make run`` and ``backfill`` use it."""
    value = Settings.from_env().dagster_home
    return Path(value).expanduser() if value else Path(str(store.root)) / "dagster_home"


def failing_checks(home: Path) -> tuple[list[FailingCheck], str | None]:
    """The checks whose latest evaluation (per asset, check and day) failed, and a note when none could be read."""
    if not (home / "dagster.yaml").is_file():
        return [], f"no Dagster instance at {home} (set DAGSTER_HOME to the one the UI uses)"
    import dagster as dg

    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_event_records(
                dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION), limit=CHECK_EVALUATIONS)
    except Exception as exc:  # e.g. a PostgreSQL instance that cannot be reached: the rest of the status still stands
        return [], f"cannot read the Dagster instance at {home}: {(str(exc).splitlines() or [type(exc).__name__])[0]}"
    latest: dict[tuple, object] = {}
    for record in records:  # newest first: the first seen of each key is its latest
        evaluation = record.event_log_entry.dagster_event.event_specific_data
        key = (evaluation.asset_key.to_user_string(), evaluation.check_name, evaluation.partition)
        latest.setdefault(key, evaluation)
    failing = [FailingCheck(asset, check, day, e.severity.value, e.description)
               for (asset, check, day), e in latest.items() if not e.passed]
    return sorted(failing, key=lambda f: (f.day or "", f.asset, f.check), reverse=True), None


def collect(store: Store, now: datetime | None = None) -> Status:
    now = now or datetime.now(timezone.utc)
    now_ns = int(now.timestamp() * 1e9)
    manifest = store.read_manifest()
    status = Status(now.isoformat(timespec="seconds"), str(store.root), manifest.get("version") if manifest else None,
                    schema.SCHEMA_VERSION)
    spool_dir = store.spool_dir
    status.sessions = sessions(spool_dir, now_ns)
    pending = landing.pending_segments(store)
    status.pending_segments = len(pending)
    status.pending_days = sorted({s.day for s in pending})
    if pending:
        status.landing_lag_s = round(time.time() - min(s.path.stat().st_mtime for s in pending), 1)
    if spool_dir.is_dir():
        status.spool_bytes = sum(p.stat().st_size for p in spool_dir.rglob("*") if p.is_file())
    status.datasets = _datasets(store)
    status.outages_today = _outages(store, now.date().isoformat())
    home = dagster_home(store)
    status.dagster_home = str(home)
    status.failing_checks, status.checks_note = failing_checks(home)
    return status


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 172800 else f"{seconds / 86400:.0f} d"


def render(status: Status) -> list[str]:
    """The status as lines of at most ~80 columns."""
    manifest = status.manifest_version or "none (not a store yet)"
    behind = f" (code writes {status.code_version}: rugs-pipeline migrate)" \
        if status.manifest_version and status.manifest_version != status.code_version else ""
    lines = [f"store {status.data_dir}   manifest {manifest}{behind}   at {status.now}", "", "recorder sessions:"]
    for s in status.sessions:
        last = f"last frame seq {s.last_seq} at {s.last_frame} ({_age(s.last_frame_age_s)} ago)" \
            if s.last_frame else "no frame kept"
        lines.append(f"  {s.state:<8} {s.session_id}  {last}")
    if not status.sessions:
        lines.append("  none in the spool")
    lines += ["", f"landing: {status.pending_segments} sealed segment(s) not landed yet"
              + (f" ({', '.join(status.pending_days)}), oldest sealed {_age(status.landing_lag_s)} ago"
                 if status.pending_segments else "") + f"; spool {_size(status.spool_bytes)}"]
    lines += ["", f"  {'doc_type':<14}{'last day':<12}{'written (UTC)':<22}{'files':>7}{'size':>11}"]
    for d in status.datasets:
        lines.append(f"  {d.doc_type:<14}{d.last_day or '-':<12}{(d.written or '-')[:19]:<22}{d.files:>7}"
                     f"{_size(d.bytes):>11}")
    total = sum(d.bytes for d in status.datasets)
    lines.append(f"  {'total':<48}{sum(d.files for d in status.datasets):>7}{_size(total):>11}")
    seconds = sum(o["duration_s"] or 0 for o in status.outages_today)
    lines += ["", f"outages today: {len(status.outages_today)}" + (f", {seconds:.0f} s in all" if status.outages_today else "")
              + " (as of today's last system_event derivation)"]
    for o in status.outages_today[-3:]:
        lines.append(f"  {o['start']}  {o['duration_s'] or 0:.1f} s  {o['message']}")
    lines.append("")
    if status.checks_note:
        lines.append(f"checks: {status.checks_note}")
    else:
        lines.append(f"failing checks: {len(status.failing_checks)} (latest evaluation per asset, check and day)")
        for c in status.failing_checks[:10]:
            lines.append(f"  {c.day or '-'}  {c.asset}.{c.check} [{c.severity}]: {(c.description or '')[:60]}")
        if len(status.failing_checks) > 10:
            lines.append(f"  ... {len(status.failing_checks) - 10} more (--json lists all)")
    return lines
