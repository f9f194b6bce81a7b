"""`rugs-pipeline doctor`: what in a store would stop or mislead the pipeline, each with its fix; ``repair`` applies
them.

Checked:
- the manifest: present, readable, at a version this code writes (an older minor: migrate);
- every Parquet file's footer: one truncated or corrupt file fails every read of its day;
- the landed ledger against the files and the spool: an entry whose ``ws_event`` file is gone (its rows are
  missing), sealed segments of a past day never landed;
- temp files no live writer holds (a writer killed mid-write; see ``fs.stale_temp``), and the folders of a
  compaction killed mid-run;
- spool session locks no recorder holds (a recorder killed before it sealed its open segment).

Repaired:
- a corrupt file moves to ``$RUGS_DATA_DIR/quarantine/<its path in the store>`` (kept, never deleted). A
  ``ws_event`` file's segments lose their ledger entries and land again from the spool, through ``land_day``.
  A compacted file holds rows of every segment of its day, so its day is re-landed whole (all its merged files
  quarantined) when the spool still holds every segment. Rows no longer in the spool are lost: doctor says so
  and writes a ``rows_lost`` lifecycle record into the spool, which lands into ``ws_event`` and becomes a
  ``system_event`` row (message naming the file) when the day is derived again. A derived file is rebuilt by
  re-deriving its day, which doctor names but leaves to ``backfill`` (a Dagster run, with its checks).
- a ledger entry whose file is gone is removed, and its segment lands again (or its rows are recorded lost);
- past days' pending segments are landed; stale temp files and compaction leftovers are removed.
A dead recorder session is left to the next ``rugs-pipeline record``, whose start seals it and records the outage.
All changes to a ``ws_event`` day happen under its partition lock, taken alone, as compaction takes it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import orjson

from rugs_pipeline.formats import fs, spool
from rugs_pipeline.config import ConfigError
from rugs_pipeline.store import compaction, landing, schema
from rugs_pipeline.store.compaction import merged_version
from rugs_pipeline.store.layout import SchemaVersionError, Store, footer_problem, parse_version

DOC_TYPE = landing.DOC_TYPE
LOST_EVENT = "rows_lost"


@dataclass
class Problem:
    kind: str  # manifest | corrupt file | ledger | not landed | stale temp | compaction leftover | dead session
    path: str
    detail: str
    fix: str
    repaired: str = ""  # what --repair did ("" : nothing)
    # what repair needs: the partition, and the ledger stems whose rows it concerns
    doc_type: str = field(default="", repr=False)
    day: str = field(default="", repr=False)
    segments: list[str] = field(default_factory=list, repr=False)


@dataclass
class Report:
    root: str
    files_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def unresolved(self) -> list[Problem]:
        return [p for p in self.problems if not p.repaired]

    def to_dict(self) -> dict:
        return {"root": self.root, "files_checked": self.files_checked,
                "problems": [{k: v for k, v in asdict(p).items() if k in ("kind", "path", "detail", "fix", "repaired")}
                             for p in self.problems]}


def check(store: Store) -> Report:
    if store.remote:
        raise ConfigError(f"doctor checks a local lake; RUGS_DATA_DIR={store.root} is object storage")
    report = Report(str(store.root))
    _check_manifest(store, report)
    _check_files(store, report)
    _check_ledger(store, report)
    _check_temps(store, report)
    _check_compaction(store, report)
    _check_sessions(store, report)
    return report


def _check_manifest(store: Store, report: Report) -> None:
    where = str(store.manifest_path)
    try:
        manifest = store.read_manifest()
    except SchemaVersionError as exc:
        report.problems.append(Problem("manifest", where, str(exc), "restore it from a backup, or remove it and let "
                                       "the next landing write this code's (only if every file is at its version)"))
        return
    if manifest is None:
        report.problems.append(Problem("manifest", where, "missing: not a rugs_pipeline store yet",
                                       "check RUGS_DATA_DIR; a first landing (backfill --land) writes it"))
        return
    ours, theirs = parse_version(schema.SCHEMA_VERSION), parse_version(manifest.get("version"))
    if theirs is None or theirs[0] != ours[0] or theirs > ours:
        report.problems.append(Problem("manifest", where, f"store at schema {manifest.get('version')!r}, this code "
                                       f"writes {schema.SCHEMA_VERSION}", "use the release that wrote it"))
    elif theirs < ours:
        report.problems.append(Problem("manifest", where, f"store at schema {manifest['version']}, this code writes "
                                       f"{schema.SCHEMA_VERSION}", "rugs-pipeline migrate"))


def _check_files(store: Store, report: Report) -> None:
    for doc_type in schema.DOC_TYPES:
        for day in store.partition_days(doc_type):
            for path in store.partition_files(doc_type, day):
                report.files_checked += 1
                problem = footer_problem(path)
                if problem is not None:
                    report.problems.append(_corrupt(store, doc_type, day, path, problem))


def _corrupt(store: Store, doc_type: str, day: str, path: Path, problem: str) -> Problem:
    found = Problem("corrupt file", str(path), problem, "", doc_type=doc_type, day=day)
    if doc_type != DOC_TYPE:
        found.fix = f"--repair quarantines it; then re-derive: rugs-pipeline backfill --from {day} --to {day}"
        return found
    if merged_version(path) is None:
        found.segments = [stem for stem, name in _ledger_files(store, day).items() if name == path.name]
        found.segments += [s.name for s in landing.pending_segments(store, day)
                           if landing.landed_file_name(s.name) == path.name and s.name not in found.segments]
    else:  # compacted: rows of every segment of the day
        found.segments = sorted(_ledger_files(store, day))
    lost = _not_in_spool(store, day, found.segments)
    if not found.segments:
        found.fix = ("--repair quarantines it; no segment in the ledger or the spool maps to it: its rows are lost "
                     "(recorded as a system_event)")
    elif not lost:
        what = "the day's merged files and re-lands its" if merged_version(path) is not None else "it and re-lands"
        found.fix = f"--repair quarantines {what} {len(found.segments)} segment(s) from the spool"
    else:
        found.fix = (f"--repair quarantines it; {len(lost)} of its {len(found.segments)} segment(s) are no longer in "
                     "the spool: their rows are lost (recorded as a system_event)")
    return found


def _check_ledger(store: Store, report: Report) -> None:
    today = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    ledger = store.manifests_dir / "landed"
    for day in sorted(p.name for p in ledger.iterdir() if p.is_dir()) if ledger.is_dir() else []:
        files = {p.name for p in store.partition_files(DOC_TYPE, day)}
        if any(merged_version(Path(name)) is not None for name in files):
            continue  # compacted: the ledger's file names are merged away
        for stem, name in _ledger_files(store, day).items():
            if name not in files:
                lost = _not_in_spool(store, day, [stem])
                report.problems.append(Problem(
                    "ledger", str(ledger / day / f"{stem}.json"), f"segment landed as {name}, which is missing: its "
                    "rows are not in ws_event",
                    "--repair " + ("records the rows as lost (the segment is no longer in the spool)" if lost
                                   else "re-lands it from the spool"), doc_type=DOC_TYPE, day=day, segments=[stem]))
    for day in sorted({s.day for s in landing.pending_segments(store)}):
        if day < today:  # the live day lands continuously; a past day's leftovers were missed
            pending = landing.pending_segments(store, day)
            report.problems.append(Problem(
                "not landed", str(store.spool_dir / day), f"{len(pending)} sealed segment(s) of a past day not landed",
                f"--repair lands them (or rugs-pipeline backfill --from {day} --to {day} --land)", day=day))


def _check_temps(store: Store, report: Report) -> None:
    for folder in (store.events_dir, store.manifests_dir):
        for tmp in sorted(folder.rglob(fs.TEMP_GLOB)) if folder.is_dir() else []:
            if fs.stale_temp(tmp):
                report.problems.append(Problem("stale temp", str(tmp), "left by a writer killed mid-write",
                                               "--repair removes it (so does the partition's next landing, "
                                               "derivation or compaction)"))


def _check_compaction(store: Store, report: Report) -> None:
    work = store.root / "compaction" / DOC_TYPE
    days = {p.name.lstrip(".").removeprefix("date=").split(".v")[0] for p in work.iterdir()} if work.is_dir() else set()
    for day in sorted(days):
        for path in compaction.leftovers(store, day):
            report.problems.append(Problem(
                "compaction leftover", str(path), "left by a compaction killed mid-run (or one running now)",
                "--repair removes it once no compaction of the day runs (so does the day's next compaction)",
                day=day))


def _check_sessions(store: Store, report: Report) -> None:
    folder = store.spool_dir
    for session in spool.locked_sessions(folder):
        if not spool.session_alive(folder, session):  # no recorder holds it
            report.problems.append(Problem(
                "dead session", str(spool.lock_path(folder, session)), "a recorder session ended without sealing "
                "(killed?): its open segment is not landed", "start rugs-pipeline record: it seals the session and records the outage"))


def repair(store: Store, report: Report) -> Report:
    """Apply each problem's fix that needs no Dagster run (see the module docstring); marks what was done."""
    for problem in report.problems:
        if problem.kind == "corrupt file":
            problem.repaired = _repair_corrupt(store, problem)
        elif problem.kind == "ledger":
            problem.repaired = _reland(store, problem, [])
        elif problem.kind == "not landed":
            landed = landing.land_day(store, problem.day)
            problem.repaired = f"landed {len(landed.segments)} segment(s), {landed.rows} rows"
        elif problem.kind == "compaction leftover":
            with store.partition_lock(DOC_TYPE, problem.day):  # as compaction holds it: none runs meanwhile
                shutil.rmtree(problem.path, ignore_errors=True)
            problem.repaired = "removed"
        elif problem.kind == "stale temp":  # a landing above may have removed it already
            removed = fs.stale_temp(Path(problem.path), remove=True) or not Path(problem.path).exists()
            problem.repaired = "removed" if removed else ""
    return report


def _repair_corrupt(store: Store, problem: Problem) -> str:
    path = Path(problem.path)
    if problem.doc_type != DOC_TYPE:
        moved = quarantine(store, path)
        return f"moved to {moved}; re-derive: rugs-pipeline backfill --from {problem.day} --to {problem.day}"
    lost = _not_in_spool(store, problem.day, problem.segments)
    merged = merged_version(path) is not None
    if merged and not lost:
        return _reland(store, problem, [f for f in store.partition_files(DOC_TYPE, problem.day)
                                        if merged_version(f) is not None])
    if merged or not problem.segments:
        # merged: the rest of its segments' rows are in the day's other merged files, which stay
        with store.partition_lock(DOC_TYPE, problem.day):
            moved = quarantine(store, path)
        _record_lost(store, problem, f"a compacted file ({len(lost)} of its day's segments no longer in the spool)"
                     if merged else "no segment in the ledger or the spool maps to it")
        landing.land_day(store, problem.day)
        return (f"moved to {moved}; its rows are lost: recorded as a {LOST_EVENT} system_event; re-derive: "
                f"rugs-pipeline backfill --from {problem.day} --to {problem.day}")
    return _reland(store, problem, [path])


def _reland(store: Store, problem: Problem, files: list[Path]) -> str:
    """Quarantine ``files``, forget the problem's segments in the ledger, land them again from the spool."""
    lost = _not_in_spool(store, problem.day, problem.segments)
    with store.partition_lock(DOC_TYPE, problem.day):  # alone: no landing or compaction of the day meanwhile
        moved = [quarantine(store, f) for f in files]
        for stem in problem.segments:
            (store.manifests_dir / "landed" / problem.day / f"{stem}.json").unlink(missing_ok=True)
    if lost:
        _record_lost(store, problem, f"{len(lost)} segment(s) no longer in the spool: {', '.join(lost)}")
    landed = landing.land_day(store, problem.day)
    done = [f"moved to {', '.join(map(str, moved))}"] if moved else []
    if len(problem.segments) > len(lost):
        done.append(f"re-landed {len(problem.segments) - len(lost)} segment(s) from the spool ({landed.rows} rows)")
    if lost:
        done.append(f"rows of {len(lost)} segment(s) lost: recorded as a {LOST_EVENT} system_event")
    return "; ".join(done) + f"; re-derive: rugs-pipeline backfill --from {problem.day} --to {problem.day}"


def quarantine(store: Store, path: Path) -> Path:
    """Move ``path`` to ``quarantine/`` under its path in the store (a number added if that is taken)."""
    target = store.root / "quarantine" / path.relative_to(store.root)
    target.parent.mkdir(parents=True, exist_ok=True)
    candidate, n = target, 0
    while candidate.exists():
        n += 1
        candidate = target.with_name(f"{target.name}.{n}")
    os.replace(path, candidate)
    fs.fsync_dir(path.parent)
    return candidate


def _record_lost(store: Store, problem: Problem, why: str) -> None:
    """A ``rows_lost`` lifecycle record in the spool, in the day of the lost rows, landed with the day."""
    stamp = Path(problem.path).name[:15]
    try:
        at = datetime.strptime(stamp, "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError:  # a merged or derived file: the day's start
        at = datetime.fromisoformat(problem.day).replace(tzinfo=timezone.utc)
    reason = f"{problem.path} was unreadable ({problem.detail}); {why}: their rows are lost"
    data = orjson.dumps({"event": LOST_EVENT, "reason": reason, "file": problem.path}).decode()
    ts_ns = int(at.timestamp()) * 10**9
    header = spool.SegmentHeader(f"doctor-{spool.new_session_id()}", "public_ws")
    spool.write_sealed_segment(store.spool_dir, header, [spool.SpoolRecord(1, ts_ns, spool.KIND_LIFECYCLE, data, None)])


def _ledger_files(store: Store, day: str) -> dict[str, str]:
    """Each ledgered segment of ``day`` and the ws_event file it landed as."""
    return {stem: landing.landed_file_name(stem) for stem in landing.landed_names(store, day)}


def _not_in_spool(store: Store, day: str, stems: list[str]) -> list[str]:
    sealed = {s.name for s in spool.sealed_segments(store.spool_dir, day)}
    return [stem for stem in stems if stem not in sealed]
