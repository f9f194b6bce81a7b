"""The spool: sealing, torn writes, and recovery after a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rugs_pipeline.formats import spool

DAY_NS = 86_400 * 10**9
T0 = 1_765_000_000 * 10**9  # 2025-12-06


def _writer(tmp_path: Path, **kw) -> spool.SpoolWriter:
    return spool.SpoolWriter(tmp_path / "spool", "sess1", "public_ws", **kw)


def test_records_round_trip_byte_exact(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    frames = ['42["a",{"x":1.0000000000000002}]', "2", '42["é ü",{"k":"\\u0000"}]', b"\x00\xffbinary"]
    for i, f in enumerate(frames):
        w.append(spool.KIND_FRAME, f, T0 + i)
    w.append(spool.KIND_LIFECYCLE, '{"event":"stopped"}', T0 + 9, None)
    seg = w.close()
    header, records, _ = spool.read_segment(seg.path)
    assert header == spool.SegmentHeader("sess1", "public_ws")
    assert [r.data for r in records[:4]] == frames
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert records[4].direction is None and records[4].kind == spool.KIND_LIFECYCLE
    assert seg.session_id == "sess1" and seg.day == "2025-12-06"


def test_seals_on_interval_and_at_utc_midnight(tmp_path: Path) -> None:
    now = [0.0]
    w = _writer(tmp_path, seal_interval_s=30, clock=lambda: now[0])
    midnight = (T0 // DAY_NS + 1) * DAY_NS
    w.append(spool.KIND_FRAME, "a", midnight - 10)
    now[0] = 31.0
    w.tick()  # interval passed: sealed
    w.append(spool.KIND_FRAME, "b", midnight - 5)
    w.append(spool.KIND_FRAME, "c", midnight + 5)  # next day: new segment
    w.close()
    segs = spool.sealed_segments(tmp_path / "spool")
    assert [(s.day, [r.data for r in spool.iter_segment_records(s)]) for s in segs] == [
        ("2025-12-06", ["a"]), ("2025-12-06", ["b"]), ("2025-12-07", ["c"]),
    ]
    assert not list((tmp_path / "spool").rglob("*.part"))


def test_recover_truncates_torn_tail_and_removes_temp_files(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    for i in range(3):
        w.append(spool.KIND_FRAME, f"42[\"e\",{i}]", T0 + i)
    w.sync()
    part = next((tmp_path / "spool").rglob("*.part"))
    with open(part, "ab") as fh:
        fh.write(b'{"seq": 4, "ts": 1, "kind": "fr')  # a crash mid-line
    (part.parent / ".x.seg.tmp").write_bytes(b"half")
    recovered = spool.recover(tmp_path / "spool")
    assert len(recovered) == 1 and recovered[0].records == 3 and recovered[0].last_seq == 3
    assert recovered[0].torn_bytes > 0
    _, records, _ = spool.read_segment(recovered[0].segment.path)
    assert [r.seq for r in records] == [1, 2, 3]
    leftovers = [p.name for p in (tmp_path / "spool").rglob("*") if p.is_file() and not p.name.endswith(".seg")]
    assert leftovers == []


def test_recover_drops_segment_with_no_complete_record(tmp_path: Path) -> None:
    w = _writer(tmp_path)
    w.append(spool.KIND_FRAME, "x", T0)  # written, never synced
    part = next((tmp_path / "spool").rglob("*.part"))
    w._current.file.fh.close()  # the process dies before the record reaches the file
    part.write_bytes(part.read_bytes().split(b"\n")[0] + b"\n")
    recovered = spool.recover(tmp_path / "spool")
    assert recovered[0].segment is None and recovered[0].records == 0
    assert not list((tmp_path / "spool").rglob("*.*"))


WRITER_SCRIPT = """
import sys, time
from pathlib import Path
from rugs_pipeline.formats import spool
w = spool.SpoolWriter(Path(sys.argv[1]), "killme", "public_ws", fsync_interval_s=0.02, seal_interval_s=0.3)
i = 0
while True:
    i += 1
    w.append(spool.KIND_FRAME, '42["gameStateUpdate",{"i":%d,"pad":"%s"}]' % (i, "x" * 500), time.time_ns())
    before = w.acked_seq
    w.tick()
    if w.acked_seq != before:
        print(w.acked_seq, flush=True)
"""


def test_sigkill_loses_no_acknowledged_record(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    for delay in (0.3, 0.75, 1.2):
        proc = subprocess.Popen([sys.executable, "-c", WRITER_SCRIPT, str(spool_dir)], stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()  # writing (a loaded machine may take a while to start Python)
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        acked = max(int(x) for x in out.split())
        spool.recover(spool_dir)
        seqs = sorted(
            r.seq for seg in spool.sealed_segments(spool_dir) if seg.session_id == "killme"
            for r in spool.iter_segment_records(seg)
        )
        assert seqs == list(range(1, len(seqs) + 1)), "gap in recovered records"
        assert len(seqs) >= acked, f"acknowledged {acked} but recovered {len(seqs)}"
        assert not [p for p in spool_dir.rglob("*") if p.is_file() and p.suffix != ".seg"]
        for seg in spool.sealed_segments(spool_dir):
            seg.path.unlink()


GROUP_SCRIPT = """
import random, sys, time
from pathlib import Path
from rugs_pipeline.formats import spool
w = spool.SpoolWriter(Path(sys.argv[1]), "pairs", "public_ws", fsync_interval_s=0.05, seal_interval_s=5)
rng = random.Random(int(sys.argv[2]))
i = 0
while True:
    i += 1
    with w.together():  # sizes around the file's 8 KiB buffer: overflows fall between any two records
        w.append(spool.KIND_FRAME, '42["e",{"i":%d,"pad":"%s"}]' % (i, "x" * rng.randint(10, 12000)), time.time_ns())
        w.append(spool.KIND_LIFECYCLE, '{"event":"pair","i":%d}' % i, time.time_ns(), None)
    w.tick()
    if i == 200:
        print("writing", flush=True)
"""


def test_records_written_together_survive_sigkill_together(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    for seed, delay in ((1, 0.1), (2, 0.25), (3, 0.4)):
        proc = subprocess.Popen([sys.executable, "-c", GROUP_SCRIPT, str(spool_dir), str(seed)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "writing\n"
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        torn = sum(r.torn_bytes for r in spool.recover(spool_dir))
        kept = sorted((r for seg in spool.sealed_segments(spool_dir) for r in spool.iter_segment_records(seg)),
                      key=lambda r: r.seq)
        assert len(kept) > 400
        if torn and len(kept) % 2:  # the kill cut the group's one write short inside its last line
            kept = kept[:-1]
        assert len(kept) % 2 == 0 and all(a.kind == spool.KIND_FRAME and b.kind == spool.KIND_LIFECYCLE
                                          for a, b in zip(kept[::2], kept[1::2])), "a group was split by the kill"
        for seg in spool.sealed_segments(spool_dir):
            seg.path.unlink()
