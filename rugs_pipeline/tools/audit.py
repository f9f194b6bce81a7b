"""Audit a capture against what the simulator says it sent (``simulate --sent-log``).

Pure reading: nothing in the store is changed. The two sides are matched by
connection: the simulator logs each connection's frames in order, the recorder
stores the Engine.IO OPEN it received (with the same ``sid``) and everything after
it. Within one connection TCP delivers in order, so the frames the store holds
must be the frames sent, in order; what is missing must be a tail that the data
explains (the recorder was killed, stopped, dropped the connection, or could not
write). Between connections the feed goes on without us: every broadcast frame no
connection got must fall inside an outage that the data records. The report also
checks that every acknowledged record is in the spool, that each session's seqs
are gap-free, and that landed ``ws_event`` files hold exactly their segments' rows.

A tail not received yet is pending only while its session is alive (a process holds
its lock). A session that is gone without a ``stopped`` record and not yet recovered
by a later start has lost that tail with no record of why: a problem, until the next
start of the recorder records the crash.
"""

from __future__ import annotations

import base64
from array import array
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson
import pyarrow.parquet as pq

from rugs_pipeline.errors import RugsError
from rugs_pipeline.formats import spool
from rugs_pipeline.formats.sent_log import SentConn, SentLog, frame_key, open_sid
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store

# A recorder-side end of a connection can lose the frames in flight; a server's clean close cannot.
CLEAN_SERVER_CLOSE = "server_closed"


class AuditError(RugsError, RuntimeError):
    """The sent-log cannot be read at all (reported as one line)."""


# --- the captured side ------------------------------------------------------------------


@dataclass
class CapturedConn:
    session: str
    sid: str
    seqs: array = field(default_factory=lambda: array("q"))
    keys: array = field(default_factory=lambda: array("q"))
    ts: array = field(default_factory=lambda: array("q"))
    end_ts_ns: int = 0  # the last record of its span (frames and the lifecycle records after them)
    after: list[dict] = field(default_factory=list)  # lifecycle records after its last frame

    def end_cause(self, session: "Session") -> str | None:
        """Why it ended, as the data says; None while its session has not ended."""
        for info in self.after:
            if info.get("event") == "disconnected":
                return info.get("cause") or info.get("reason") or "disconnected"
            if info.get("event") == "storage_failed":
                return "storage"
        if session.stopped:
            return "stopping"
        if session.crashed:
            return "crash"
        return None


@dataclass
class Session:
    id: str
    started_ns: int | None = None
    stopped: bool = False
    crashed: bool = False  # a later session recovered it
    alive: bool = False  # a process holds its lock
    records: int = 0
    seq_gaps: int = 0
    last_seq: int = 0
    acked_seq: int | None = None  # from its recovery record or its live ack file
    outages: list[dict] = field(default_factory=list)
    conns: list[CapturedConn] = field(default_factory=list)


@dataclass
class Landed:
    files: int = 0
    rows: int = 0
    duplicated_rows: int = 0  # (session, seq) present more than once across the landed files
    differing_rows: int = 0  # landed rows whose content is not their spool record's
    missing_rows: int = 0  # records of segments the ledger calls landed, absent from ws_event
    segments_not_landed: int = 0
    rows_without_segment: int = 0  # landed rows whose segment is gone from the spool (pruned)


def _segment_records(path: Path) -> list[spool.SpoolRecord]:
    try:
        return spool.read_segment(path)[1]
    except (ValueError, orjson.JSONDecodeError, KeyError):
        return []  # a torn header: nothing in it was acknowledged


def read_sessions(store: Store) -> dict[str, Session]:
    sessions: dict[str, Session] = {}
    recovered: list[dict] = []
    for session_id, paths in spool.segments_by_session(store.spool_dir).items():
        session = sessions[session_id] = Session(session_id)
        conn: CapturedConn | None = None
        for path in paths:
            for rec in _segment_records(path):
                session.records += 1
                session.seq_gaps += rec.seq != session.last_seq + 1
                session.last_seq = rec.seq
                if rec.kind == spool.KIND_LIFECYCLE:
                    info = _lifecycle(rec.data)
                    _note_lifecycle(session, info, rec.ts_ns, recovered)
                    if conn is not None:
                        conn.after.append(info)
                elif rec.direction == "received":
                    sid = open_sid(rec.data)
                    if sid is not None:
                        conn = CapturedConn(session_id, sid)
                        session.conns.append(conn)
                    if conn is None:
                        continue
                    conn.seqs.append(rec.seq)
                    conn.keys.append(frame_key(rec.data))
                    conn.ts.append(rec.ts_ns)
                    conn.after = []
                if conn is not None:
                    conn.end_ts_ns = rec.ts_ns
    for info in recovered:
        crashed = sessions.get(info.get("crashed_session"))
        if crashed is not None:
            crashed.crashed = True
            crashed.acked_seq = info.get("acked_seq")
    for session in sessions.values():
        session.alive = spool.session_alive(store.spool_dir, session.id)
        ack = spool.read_ack(store.spool_dir, session.id)
        if ack.get("acked_seq") is not None:
            session.acked_seq = ack["acked_seq"]
    return sessions


def _lifecycle(data: str | bytes) -> dict:
    try:
        info = orjson.loads(data)
    except orjson.JSONDecodeError:
        return {}
    return info if isinstance(info, dict) else {}


def _note_lifecycle(session: Session, info: dict, ts_ns: int, recovered: list[dict]) -> None:
    event = info.get("event")
    if event == "started" and session.started_ns is None:
        session.started_ns = ts_ns
    elif event == "stopped":
        session.stopped = True
    elif event == "recovered":
        recovered.append(info)
    elif event == "outage" and info.get("start_ns") and info.get("end_ns"):
        session.outages.append(info)


def check_landed(store: Store) -> Landed:
    """The landed ws_event rows against the spool records they came from, whatever files now hold them."""
    out = Landed()
    landed: dict[tuple[str, int], int] = {}
    for day in store.partition_days(landing.DOC_TYPE):
        for path in store.partition_files(landing.DOC_TYPE, day):
            table = pq.read_table(str(path), columns=["session_id", "seq", "raw_json", "parse_error"],
                                  filesystem=store.filesystem)
            out.files += 1
            out.rows += table.num_rows
            for row in zip(*(table[c].to_pylist() for c in table.column_names)):
                key = (row[0], row[1])
                out.duplicated_rows += key in landed
                landed[key] = frame_key(_landed_data(row[2], row[3]))
    pending = {seg.path for seg in landing.pending_segments(store)}
    out.segments_not_landed = len(pending)
    for segment in spool.sealed_segments(store.spool_dir):
        for rec in ([] if segment.path in pending else _segment_records(segment.path)):
            kept = landed.pop((segment.session_id, rec.seq), None)
            out.missing_rows += kept is None
            out.differing_rows += kept is not None and kept != frame_key(rec.data)
    out.rows_without_segment = len(landed)
    return out


def _landed_data(raw: str, parse_error: str | None) -> str | bytes:
    return base64.b64decode(raw) if parse_error in (landing.BINARY_STORED, landing.NOT_UTF8_STORED) else raw


# --- the comparison ---------------------------------------------------------------------


@dataclass
class Report:
    sent_frames: int = 0
    sent_conns: int = 0
    sent_events: dict[str, int] = field(default_factory=dict)
    sent_log_bad_lines: int = 0
    sessions: int = 0
    records: int = 0
    conns_matched: int = 0
    conns_not_in_store: int = 0  # another client's, or a recorder killed before it kept anything
    frames_not_in_store: int = 0  # ... and the frames sent on them
    frames_captured: int = 0
    lost_explained: dict[str, int] = field(default_factory=dict)  # by cause
    lost_unexplained: int = 0
    lost_pending: int = 0  # tail of a session that is still running
    lost_unrecorded: int = 0  # tail of a session gone without a record of its end (no stop, not recovered yet)
    duplicated: int = 0
    reordered: int = 0
    unexpected: int = 0  # received on a matched connection but never sent on it
    missed_gaps: int = 0  # runs of feed frames no connection got
    missed_frames: int = 0
    missed_unexplained: int = 0
    acked_missing: int = 0
    seq_gaps: int = 0
    landed: Landed = field(default_factory=Landed)
    outages: list[dict] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return sum(self.lost_explained.values()) + self.lost_unexplained + self.lost_pending + self.lost_unrecorded

    @property
    def problems(self) -> list[str]:
        checks = {
            "frames lost without explanation": self.lost_unexplained,
            "frames lost by a session that ended without recording its end (start the recorder: it records "
            "the crash)": self.lost_unrecorded,
            "frames duplicated": self.duplicated,
            "frames reordered": self.reordered,
            "frames received that were never sent": self.unexpected,
            "feed frames missed outside any outage": self.missed_unexplained,
            "acknowledged records missing": self.acked_missing,
            "seq gaps": self.seq_gaps,
            "landed rows duplicated": self.landed.duplicated_rows,
            "landed rows differing from the spool": self.landed.differing_rows,
            "landed rows missing": self.landed.missing_rows,
        }
        return [f"{n} {what}" for what, n in checks.items() if n]

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "landed"}
        return {**out, "landed": dict(self.landed.__dict__), "lost": self.lost, "problems": self.problems}


def audit(sent_log_path: Path, store: Store, with_landed: bool = True) -> Report:
    try:
        sent = SentLog.read(sent_log_path)
    except OSError as exc:
        raise AuditError(f"cannot read the sent-log {sent_log_path}: {exc.strerror or exc}") from None
    sessions = read_sessions(store)
    report = Report(sent_frames=sent.frames, sent_conns=len(sent.conns), sent_events=dict(sent.events),
                    sent_log_bad_lines=sent.bad_lines, sessions=len(sessions),
                    records=sum(s.records for s in sessions.values()),
                    seq_gaps=sum(s.seq_gaps for s in sessions.values()))
    if with_landed:
        report.landed = check_landed(store)
    for session in sessions.values():
        if session.acked_seq is not None:
            # seqs are gap-free from 1, so the records kept are 1..last_seq
            report.acked_missing += max(0, session.acked_seq - session.last_seq)
    captured = {c.sid: c for s in sessions.values() for c in s.conns}
    delivered: dict[int, CapturedConn] = {}  # feed number -> the matched connection it was sent on
    for conn in sent.conns.values():
        mine = captured.get(conn.sid)
        if mine is None:
            report.conns_not_in_store += 1
            report.frames_not_in_store += len(conn.keys)
            continue
        report.conns_matched += 1
        _compare(conn, mine, sessions[mine.session], report)
        for feed_no in conn.feeds:
            if feed_no >= 0:
                delivered.setdefault(feed_no, mine)
    _missed_between_connections(delivered, sessions, report)
    report.outages = sorted(({**o, "session": s.id} for s in sessions.values() for o in s.outages),
                            key=lambda o: o["start_ns"])
    return report


def _compare(sent: SentConn, got: CapturedConn, session: Session, report: Report) -> None:
    """Match one connection's received frames to its sent frames (in order; see the module docstring)."""
    report.frames_captured += len(got.keys)
    matched = bytearray(len(sent.keys))
    i = 0
    n = min(len(sent.keys), len(got.keys))
    while i < n and sent.keys[i] == got.keys[i]:  # the normal case: an exact prefix
        matched[i] = 1
        i += 1
    last = i - 1
    if i < len(got.keys):
        positions: dict[int, list[int]] = defaultdict(list)
        for j in range(len(sent.keys) - 1, i - 1, -1):
            positions[sent.keys[j]].append(j)
        for key in got.keys[i:]:
            if positions.get(key):
                j = positions[key].pop()
                matched[j] = 1
                report.reordered += j < last
                last = max(last, j)
            elif key in sent.keys[:i] or key in positions:
                report.duplicated += 1
            else:
                report.unexpected += 1
    cause = got.end_cause(session)
    for j in range(len(sent.keys)):
        if matched[j]:
            continue
        if j < last:
            report.lost_unexplained += 1  # a hole: frames after it arrived
        elif cause is None:
            if session.alive:
                report.lost_pending += 1
            else:
                report.lost_unrecorded += 1
        elif cause == CLEAN_SERVER_CLOSE:
            report.lost_unexplained += 1
        else:
            report.lost_explained[cause] = report.lost_explained.get(cause, 0) + 1


def _missed_between_connections(delivered: dict[int, CapturedConn], sessions: dict[str, Session], report: Report) -> None:
    """Runs of feed frames no matched connection got must fall in an outage of the recorder that got the next one."""
    numbers = sorted(delivered)
    for before, after in zip(numbers, numbers[1:]):
        if after == before + 1:
            continue
        report.missed_gaps += 1
        report.missed_frames += after - before - 1
        prev, nxt = delivered[before], delivered[after]
        if not _explained(prev, nxt, sessions):
            report.missed_unexplained += after - before - 1


def _explained(prev: CapturedConn, nxt: CapturedConn, sessions: dict[str, Session]) -> bool:
    if prev is nxt:
        return False  # one connection gets every broadcast from the moment it joins
    t = prev.end_ts_ns
    session = sessions[nxt.session]
    if any(_stretch_start(o, sessions) <= t <= o["end_ns"] for o in session.outages):
        return True
    # a clean restart: the previous session stopped, the next one started after it
    return sessions[prev.session].stopped and nxt.session != prev.session and (session.started_ns or 0) >= t


def _stretch_start(outage: dict, sessions: dict[str, Session]) -> int:
    """Where the stretch without feed data that ``outage`` ends began.

    A recorder killed right after the data that ended its outage (the on-connect snapshot,
    no feed frame) leaves two outages: its own, ending at that data, and its successor's,
    starting at exactly that moment (its last data). No feed frame lies between them, so they
    are one stretch. Only an outage ending at the very nanosecond another starts continues it.
    """
    start = outage["start_ns"]
    while True:
        before = [o["start_ns"] for s in sessions.values() for o in s.outages
                  if o["end_ns"] == start and o["start_ns"] < start]
        if not before:
            return start
        start = min(before)


# --- the report -------------------------------------------------------------------------


def _when(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def render(report: Report, sent_log: Path, store: Store) -> Iterator[str]:
    r = report
    events = ", ".join(f"{n} {e}" for e, n in sorted(r.sent_events.items())) or "no connection events"
    yield f"audit of {sent_log} against {store.root}"
    yield f"sent:       {r.sent_frames} frames on {r.sent_conns} connections ({events})"
    yield (f"store:      {r.sessions} sessions, {r.records} records; {r.conns_matched} of the connections matched, "
           f"{r.frames_captured} frames captured on them")
    if r.conns_not_in_store:
        yield (f"            {r.conns_not_in_store} connections ({r.frames_not_in_store} frames) not in this store: "
               "another client's, or a recorder killed before it kept anything")
    causes = ", ".join(f"{n} {c}" for c, n in sorted(r.lost_explained.items()))
    yield (f"lost:       {r.lost} frames sent but not captured: {r.lost_unexplained} unexplained"
           + (f", explained by the connection's end: {causes}" if causes else "")
           + (f", {r.lost_pending} not yet (session still running)" if r.lost_pending else "")
           + (f", {r.lost_unrecorded} lost by a session that ended without recording its end" if r.lost_unrecorded
              else ""))
    yield f"duplicated: {r.duplicated}"
    yield f"reordered:  {r.reordered}" + (f"; {r.unexpected} frames received that were never sent" if r.unexpected else "")
    yield (f"missed:     {r.missed_frames} feed frames in {r.missed_gaps} gaps between connections, "
           f"{r.missed_unexplained} outside any recorded outage")
    yield f"acked:      {r.acked_missing} acknowledged records missing; {r.seq_gaps} seq gaps"
    ld = r.landed
    yield (f"landed:     {ld.rows} ws_event rows in {ld.files} files, {ld.duplicated_rows} duplicated, "
           f"{ld.differing_rows} differing from the spool, {ld.missing_rows} missing; "
           f"{ld.segments_not_landed} sealed segments not landed yet")
    yield f"outages:    {len(r.outages)}"
    for o in r.outages:
        yield (f"  {_when(o['start_ns'])} -> {_when(o['end_ns'])}  {(o['end_ns'] - o['start_ns']) / 1e9:9.3f} s  "
               f"{o.get('cause')}" + (f" ({o['ended_by']})" if o.get("ended_by") else ""))
    yield "result:     " + ("OK" if not r.problems else "FAILED: " + "; ".join(r.problems))
