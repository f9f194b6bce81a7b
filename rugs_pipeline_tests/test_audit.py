"""The audit finds what a capture got wrong: holes, duplicates, reordering, unexplained gaps, lost acks."""

from __future__ import annotations

import shutil
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rugs_pipeline.formats import spool
from rugs_pipeline.tools import audit
from rugs_pipeline.formats.protocol import encode_event, encode_open
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store

T0 = 1_765_065_600 * 10**9  # 2025-12-07 00:00 UTC
MS = 10**6


class Feed:
    """A sent-log and a store written side by side, frame by frame."""

    def __init__(self, root: Path) -> None:
        self.store = Store(root / "data")
        self.sent_path = root / "sent.jsonl"
        self.sent: list[dict] = []
        self.writers: dict[str, spool.SpoolWriter] = {}
        self.t = T0
        self.feed_no = 0

    def _tick(self) -> int:
        self.t += MS
        return self.t

    def life(self, session: str, event: str, **fields) -> None:
        w = self.writers.get(session) or self.writers.setdefault(session, spool.SpoolWriter(
            self.store.spool_dir, session, "public_ws"))
        w.append(spool.KIND_LIFECYCLE, orjson.dumps({"event": event, "v": 2, **fields}).decode(), self._tick(), None)

    def connect(self, session: str, conn: int, sid: str) -> None:
        self._send(conn, None, encode_open(sid), keep=session)

    def broadcast(self, *deliveries: tuple[int, str | None]) -> str:
        """One feed frame, sent on each listed connection and kept by the listed session (or None: lost)."""
        self.feed_no += 1
        frame = encode_event("simLoad", {"n": self.feed_no})
        self.sent.append({"f": self.feed_no, "ts": self._tick()})
        for conn, session in deliveries:
            self._send(conn, self.feed_no, frame, keep=session)
        return frame

    def keep(self, session: str, frame: str) -> None:
        self.writers[session].append(spool.KIND_FRAME, frame, self._tick())

    def _send(self, conn: int, feed_no: int | None, frame: str, keep: str | None) -> None:
        self.sent.append({"c": conn, "f": feed_no, "ts": self._tick(), "data": frame})
        if keep is not None:
            self.keep(keep, frame)

    def audit(self, land: bool = False) -> audit.Report:
        for w in self.writers.values():
            w.close()
        self.sent_path.write_bytes(b"".join(orjson.dumps(x) + b"\n" for x in self.sent))
        if land:
            landing.land_day(self.store, "2025-12-07")
        return audit.audit(self.sent_path, self.store)


def one_connection(feed: Feed, frames: int = 5) -> list[str]:
    feed.life("s1", "started")
    feed.connect("s1", 1, "sidA")
    return [feed.broadcast((1, "s1")) for _ in range(frames)]


def test_a_faithful_capture_has_no_problems(tmp_path: Path) -> None:
    feed = Feed(tmp_path)
    one_connection(feed)
    feed.life("s1", "disconnected", cause="stopping")
    feed.life("s1", "stopped")
    report = feed.audit(land=True)
    assert report.problems == [] and report.lost == 0 and report.frames_captured == 6
    assert report.landed.rows == report.records and report.landed.differing_rows == 0


def test_a_hole_a_duplicate_and_reordering_are_found(tmp_path: Path) -> None:
    feed = Feed(tmp_path)
    feed.life("s1", "started")
    feed.connect("s1", 1, "sidA")
    a = feed.broadcast((1, "s1"))
    b = feed.broadcast((1, None))  # never kept, yet frames after it were: a hole
    c = feed.broadcast((1, None))
    d = feed.broadcast((1, "s1"))
    feed.keep("s1", d)  # kept twice
    feed.keep("s1", c)  # kept after d: out of order
    assert a and b
    feed.life("s1", "stopped")
    report = feed.audit()
    assert (report.lost_unexplained, report.duplicated, report.reordered) == (1, 1, 1)
    assert report.problems


@pytest.mark.parametrize("cause, explained", [("stale", True), ("frame_too_big", True), ("server_closed", False)])
def test_a_lost_tail_needs_a_recorder_side_end(tmp_path: Path, cause: str, explained: bool) -> None:
    feed = Feed(tmp_path)
    one_connection(feed)
    feed.broadcast((1, None))  # in flight when the connection ended
    feed.life("s1", "disconnected", cause=cause)
    feed.life("s1", "stopped")
    report = feed.audit()
    assert report.lost == 1
    assert report.lost_explained == ({cause: 1} if explained else {}) and report.lost_unexplained == (not explained)


def test_feed_missed_between_connections_must_fall_in_a_recorded_outage(tmp_path: Path) -> None:
    for recorded in (True, False):
        folder = tmp_path / str(recorded)
        feed = Feed(folder)
        one_connection(feed, frames=3)
        start = feed.t
        feed.life("s1", "disconnected", cause="server_closed")
        feed.broadcast()
        feed.broadcast()  # no connection: missed
        feed.connect("s1", 2, "sidB")
        feed.broadcast((2, "s1"))
        if recorded:
            feed.life("s1", "outage", start_ns=start, end_ns=feed.t, cause="connection lost: going away")
        feed.life("s1", "stopped")
        report = feed.audit()
        assert (report.missed_gaps, report.missed_frames) == (1, 2)
        assert report.missed_unexplained == (0 if recorded else 2)


def test_a_crash_explains_its_tail_but_not_a_lost_acknowledged_record(tmp_path: Path) -> None:
    feed = Feed(tmp_path)
    one_connection(feed, frames=3)
    feed.broadcast((1, None))  # in flight at the kill
    feed.life("s2", "started")
    feed.life("s2", "recovered", crashed_session="s1", acked_seq=99)
    report = feed.audit()
    assert report.lost_explained == {"crash": 1}
    assert report.acked_missing == 99 - 5  # s1 kept 5 records; it claimed 99 acknowledged
    assert "94 acknowledged records missing" in report.problems


def test_landed_rows_duplicated_or_differing_are_found(tmp_path: Path) -> None:
    feed = Feed(tmp_path)
    one_connection(feed)
    feed.life("s1", "stopped")
    feed.audit(land=True)
    landed, = feed.store.partition_files("ws_event", "2025-12-07")
    shutil.copy(landed, landed.with_name("20251207_000000_00000000.parquet"))  # the same rows twice
    report = audit.audit(feed.sent_path, feed.store)
    assert report.landed.duplicated_rows == 8 and "8 landed rows duplicated" in report.problems
    # a file that lost rows, and holds other content than its segment for the rest
    landed.with_name("20251207_000000_00000000.parquet").unlink()
    table = pq.read_table(landed).slice(1, 2)
    pq.write_table(table.set_column(table.schema.get_field_index("raw_json"), "raw_json",
                                    pa.array(["changed", "changed"])), landed)
    report = audit.audit(feed.sent_path, feed.store)
    assert (report.landed.missing_rows, report.landed.differing_rows) == (6, 2)


def test_an_unreadable_sent_log_is_an_audit_error(tmp_path: Path) -> None:
    with pytest.raises(audit.AuditError, match="cannot read the sent-log"):
        audit.audit(tmp_path / "nope.jsonl", Store(tmp_path))


def test_a_recorder_killed_on_its_first_data_leaves_one_stretch_in_two_outages(tmp_path: Path) -> None:
    # s1 is killed; s2 records the outage up to its on-connect snapshot (no feed frame) and is
    # killed; s3's outage starts at that snapshot, s2's last data. The gap from s1's last frame
    # to s3's first is covered by the two outages together, but only if they meet exactly.
    for meet in (True, False):
        feed = Feed(tmp_path / str(meet))
        one_connection(feed, frames=3)
        s1_end = feed.t
        feed.broadcast()  # no recorder connected: missed
        feed.life("s2", "started")
        feed.life("s2", "recovered", crashed_session="s1", down_since_ns=s1_end)
        feed.connect("s2", 2, "sidB")
        snapshot = encode_event("gameStateUpdate", {"snapshot": True})
        feed._send(2, None, snapshot, keep="s2")
        s2_data = feed.t
        feed.life("s2", "outage", start_ns=s1_end, end_ns=s2_data, cause="recorder down: session s1")
        feed.broadcast()
        feed.broadcast()  # s2 killed, s3 not yet connected: missed
        feed.life("s3", "started")
        feed.connect("s3", 3, "sidC")
        feed.broadcast((3, "s3"))
        feed.life("s3", "outage", start_ns=s2_data + (0 if meet else 1), end_ns=feed.t, cause="recorder down: session s2")
        feed.life("s3", "stopped")
        report = feed.audit()
        assert (report.missed_gaps, report.missed_frames) == (1, 3)
        assert report.missed_unexplained == (0 if meet else 3)
