"""The soak (``make soak``): the recorder at a high rate for ten minutes keeps flat memory and loses nothing.

``RUGS_SOAK_S`` (default 600) and ``RUGS_SOAK_RATE`` (default 10000 frames/s) set the run.
It prints what it measured: frames per second kept, the recorder's and the simulator's
memory over time (a simulator that grows holds a backlog: the recorder pushed back), CPU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from .capture_harness import Recorder, Sim, assert_clean_audit

SOAK_S = float(os.environ.get("RUGS_SOAK_S") or 600)
RATE = os.environ.get("RUGS_SOAK_RATE") or "10000"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
@pytest.mark.timeout(SOAK_S + 1200)  # the run, then auditing millions of frames
def test_soak_at_a_high_rate_keeps_memory_flat_and_loses_nothing(tmp_path: Path, capsys) -> None:
    sim = Sim(tmp_path, "--speed", "5", "--rate", RATE)
    data = tmp_path / "data"
    samples = []  # (elapsed s, frames acked, recorder MiB, simulator MiB)
    try:
        recorder = Recorder(sim.url, data)
        recorder.wait_acked(frames=1000)
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < SOAK_S:
            time.sleep(min(10.0, SOAK_S / 20))
            samples.append((elapsed, recorder.ack()["frames_received"], rss_mib(recorder.proc.pid),
                            rss_mib(sim.proc.pid)))
        recorder_cpu = cpu_s(recorder.proc.pid)
        assert recorder.stop() == 0, recorder.stderr
    finally:
        sim.stop()
    report = assert_clean_audit(sim.sent_log, data)
    first, last = samples[0], samples[-1]
    rate = (last[1] - first[1]) / (last[0] - first[0])
    half = len(samples) // 2
    early, late = max(s[2] for s in samples[:half]), max(s[2] for s in samples[half:])
    with capsys.disabled():
        print(f"\nsoak {SOAK_S:.0f} s at --rate {RATE}: kept {rate:.0f} frames/s; {report['frames_captured']} frames, "
              f"lost {report['lost']} (unexplained {report['lost_unexplained']}); recorder RSS "
              f"{min(s[2] for s in samples):.0f}-{max(s[2] for s in samples):.0f} MiB (first half max {early:.0f}, "
              f"second half max {late:.0f}); simulator RSS {first[3]:.0f} -> {last[3]:.0f} MiB; "
              f"recorder CPU {recorder_cpu:.0f} s")
        for elapsed, frames, rec, simulated in samples:
            print(f"  {elapsed:6.0f} s  {frames:10d} frames  recorder {rec:6.1f} MiB  simulator {simulated:7.1f} MiB")
    assert late <= early * 1.1 + 8, "recorder memory grows"
