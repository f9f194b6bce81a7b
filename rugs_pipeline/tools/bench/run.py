"""``rugs-pipeline bench`` / ``make bench``: figures about one synthetic day, each beside its goal.

Every figure is measured in this one run, baselines next to what they are compared with,
so that the machine's noise falls on both sides of each ratio.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from rugs_pipeline.tools.bench import capture, catalog, derivation, landing, query, replay, sidebet_env, synth
from rugs_pipeline.tools.bench.measure import GIB, MIB, Measured, isolated

SCALES = (0.25, 0.5, 1.0)
DERIVE_ROUNDS = 2
LANDED = "landed"  # the derivation of the day as landed, beside the finalised days of SCALES


@dataclass
class Figure:
    number: int
    name: str
    text: str
    goal: str
    met: bool

    def line(self) -> str:
        verdict = "[green]met[/]" if self.met else "[red]MISSED[/]"
        return f"{self.number} {self.name:<11} {self.text}\n  {'':<11} goal: {self.goal} -> {verdict}"


@dataclass
class Options:
    frames: int = 1_000_000
    seed: int = 1
    capture_frames: int = 50_000
    query_frames: int = 250_000
    work: Path | None = None  # scratch space (default: beside the cache)
    keep: bool = False
    only: set[int] = field(default_factory=lambda: set(range(1, 11)))


def run(options: Options, console: Console | None = None) -> list[Figure]:
    console = console or Console()
    work = Path(tempfile.mkdtemp(prefix="run-", dir=_scratch(options)))
    try:
        with _progress(console) as progress:
            task = progress.add_task("synthetic day", total=options.frames)
            day = synth.synthetic_day(options.frames, options.seed, lambda n: progress.advance(task, n))
            progress.update(task, completed=options.frames)
            figures = _measure(day, options, work, progress)
        console.print(_header(day))
        for fig in figures:
            console.print(fig.line())
        return figures
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)


def _scratch(options: Options) -> Path:
    folder = options.work or synth.cache_root() / "scratch"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:<34}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,}"),
                    TimeElapsedColumn(), console=console, transient=True)


def _step(progress: Progress, name: str):
    """A one-unit task shown while a step runs."""
    return progress.add_task(name, total=1)


def _header(day: synth.SyntheticDay) -> str:
    top = ", ".join(f"{name} {n / day.frames:.0%}" for name, n in list(day.mix.items())[:5])
    return (f"[bold]rugs_pipeline bench[/]: synthetic day {synth.DAY}, {day.frames:,} frames, "
            f"{day.json_bytes / 1e9:.2f} GB of JSON (avg {day.json_bytes / day.frames / 1e3:.1f} KB; {top}), "
            f"{len(day.files()):,} landed files, {os.cpu_count()} cores")


def _measure(day: synth.SyntheticDay, options: Options, work: Path, progress: Progress) -> list[Figure]:
    figures: dict[int, Figure] = {}
    if options.only & {1, 5, 6}:
        figures.update(_derivation(day, work, progress))
    if 2 in options.only:
        figures[2] = _capture(day, options, work, progress)
    if options.only & {3, 5}:
        figures[3] = _landing(day, work, progress, figures.get(5))
    if 4 in options.only:
        figures[4] = _query(day, options, work, progress)
    if 7 in options.only:
        figures[7] = _replay_server(day, options, work, progress)
    if 8 in options.only:
        figures[8] = _replay_reader(day, work, progress)
    if 9 in options.only:
        figures[9] = _sidebet_env(day, work, progress)
    if 10 in options.only:
        figures[10] = _catalog(day, work, progress)
    return [figures[n] for n in sorted(options.only)]


def _capture(day: synth.SyntheticDay, options: Options, work: Path, progress: Progress) -> Figure:
    t = _step(progress, "capture: simulator -> sink / recorder")
    result = capture.measure_capture(day, options.capture_frames, work / "capture")
    progress.advance(t)
    return Figure(
        2, "capture",
        f"recorder {result.recorder_rate:,.0f} frames/s = {result.ratio:.0%} of the simulator's loopback send rate "
        f"({result.sink_rate:,.0f} frames/s into a discarding client; best of {capture.ROUNDS} alternating runs "
        f"each); {result.lost} of {result.frames:,} frames lost, {result.extra} extra",
        ">= 95% of the send rate, 0 lost", result.ratio >= 0.95 and result.lost == 0 and result.extra == 0)


def _landing(day: synth.SyntheticDay, work: Path, progress: Progress, memory: Figure | None) -> Figure:
    """The latency figure; the landing runs' memory goes on the memory line."""
    t = _step(progress, "landing: dagster job execute x2")
    lat = landing.measure_landing(day, work / "landing")
    progress.advance(t)
    if memory is not None:
        memory.text += (f"; landing a segment: peak {lat.full_day.peak_rss / MIB:,.0f} MiB into the full day, "
                        f"{lat.empty_day.peak_rss / MIB:,.0f} MiB into an empty one")
        memory.goal += "; landing memory independent of day size (within 25%)"
        memory.met = memory.met and lat.full_day.peak_rss <= 1.25 * lat.empty_day.peak_rss
    return Figure(
        3, "landing",
        f"receipt -> visible to the seed query: p50 {lat.p50:.0f} s, p99 {lat.p99:.0f} s "
        f"(model: seal wait U(0,{synth.SEAL_INTERVAL_S:.0f} s) + sensor tick U(0,{landing.SENSOR_INTERVAL_S:.0f}-"
        f"{landing.SENSOR_INTERVAL_S + landing.SENSOR_LOOP_S:.0f} s) + run queue U(0,{landing.dequeue_s():g} s) + "
        f"the landing run, measured: {lat.full_day.seconds:.1f} s into the full day, "
        f"{lat.empty_day.seconds:.1f} s into an empty one)",
        "<= 60 s p50, <= 90 s p99", lat.p50 <= 60 and lat.p99 <= 90)


def _query(day: synth.SyntheticDay, options: Options, work: Path, progress: Progress) -> Figure:
    t = _step(progress, "queries: 30 days, 3 layouts")
    q = query.measure_queries(day, options.query_frames, work / "query", derivation.game_tick_of)
    progress.advance(t)
    worst = max(q.ratio("compacted", name) for name in ("game_tick", "ws_event"))
    return Figure(
        4, "query",
        f"30 days of {q.frames_per_day:,} frames, compacted ({q.files['compacted']} files): seed game_tick query "
        f"{q.seconds['compacted', 'game_tick']:.2f} s = {q.ratio('compacted', 'game_tick'):.2f}x one file, "
        f"ws_event by event_name {q.seconds['compacted', 'ws_event']:.2f} s = {q.ratio('compacted', 'ws_event'):.2f}x "
        f"one file (as landed, {q.files['landed']:,} files: {q.ratio('landed', 'game_tick'):.2f}x and "
        f"{q.ratio('landed', 'ws_event'):.2f}x; medians of {query.ROUNDS}); compacting a day took {q.compaction_s:.1f} s",
        "<= 1.5x one file", worst <= 1.5)


def _replay_server(day: synth.SyntheticDay, options: Options, work: Path, progress: Progress) -> Figure:
    t = _step(progress, "replay: server -> discarding client")
    result = replay.measure_server(day, options.capture_frames, work / "replay-server")
    progress.advance(t)
    return Figure(
        7, "replay",
        f"rugs-pipeline replay --max {result.replay_rate:,.0f} frames/s = {result.ratio:.2f}x the simulator's send "
        f"rate ({result.simulator_rate:,.0f} frames/s) over the day's first {result.frames:,} frames into a discarding "
        f"client (best of {replay.ROUNDS} alternating runs each)",
        ">= 1.0x the simulator's send rate", result.ratio >= 1.0)


def _replay_reader(day: synth.SyntheticDay, work: Path, progress: Progress) -> Figure:
    t = _step(progress, "replay: consumers.replay, orjson")
    r = replay.measure_reader(day, work / "replay-reader")
    progress.advance(t)
    return Figure(
        8, "replay read",
        f"consumers.replay over the day as landed: {r.reader.value[0]:,} frames in {r.reader.seconds:.1f} s = "
        f"{r.reader_rate:,.0f} frames/s = {r.ratio:.2f}x a bare orjson.loads loop over its {r.orjson_frames:,} event "
        f"frames ({r.orjson_rate:,.0f} frames/s, one core); peak memory {r.peak(r.reader) / MIB:,.0f} MiB "
        f"({r.growth(r.reader) / MIB:,.0f} MiB over the imports) on the day, {r.peak(r.small) / MIB:,.0f} MiB "
        f"({r.growth(r.small) / MIB:,.0f} MiB) on a day of {r.small.value[0]:,} frames",
        ">= 3x orjson.loads", r.ratio >= 3.0)


def _sidebet_env(day: synth.SyntheticDay, work: Path, progress: Progress) -> Figure:
    t = _step(progress, "sidebet env: derive, episodes, steps")
    env = sidebet_env.measure_env(day, work / "sidebet_env")
    progress.advance(t)
    return Figure(
        9, "sidebet env",
        f"SidebetEnv {env.rate:,.0f} steps/s on {env.cpus} core ({env.games:,} games, {env.ticks:,} ticks from the "
        f"day's first {sidebet_env.ENV_FRAMES:,} frames via consumers.episodes; {env.steps:,} steps of a random "
        f"policy with the {env.resets:,} resets between games; best of {sidebet_env.ROUNDS})",
        ">= 50,000 steps/s on one core", env.rate >= 50_000 and env.cpus == 1)


def _catalog(day: synth.SyntheticDay, work: Path, progress: Progress) -> Figure:
    """event_catalog of the day as landed: a live run (parts cached but the last files') and from scratch,
    beside one derivation of the same files; wall and CPU seconds."""
    t = _step(progress, "catalog: live run, from scratch, derivation")
    files = day.files()
    live = isolated(catalog.build, work / "catalog-live", warmup=(catalog.prepare, files, work / "catalog-live", True))
    full = isolated(catalog.build, work / "catalog-full", warmup=(catalog.prepare, files, work / "catalog-full", False))
    derive = isolated(catalog.derive, files, work / "catalog-derived",
                      warmup=(derivation.pipeline_derive, files[:1], work / "catalog-warmup"))
    progress.advance(t)
    walked, frames, rows, full_cpu = full.value
    live_cpu, derive_cpu = live.value[3], derive.value
    ratio = live.seconds / derive.seconds
    return Figure(
        10, "catalog",
        f"event_catalog of the day as landed ({len(files):,} files, {frames:,} event frames, {rows:,} rows): a live "
        f"run (the day catalogued before its last {catalog.LIVE_FILES} files landed, as each "
        f"{catalog.LIVE_FILES * 30 // 60}-minute run finds it) {live.seconds:.1f} s = {ratio:.0%} of deriving the day "
        f"({derive.seconds:.1f} s); from scratch (every file walked: a first run, or after a migration) "
        f"{full.seconds:.1f} s = {full.seconds / derive.seconds:.1f}x; in CPU seconds {live_cpu:.1f}, "
        f"{full_cpu:.1f} and {derive_cpu:.1f} ({live_cpu / derive_cpu:.0%} and {full_cpu / derive_cpu:.1f}x); "
        f"peak {max(live.peak_rss, full.peak_rss) / MIB:,.0f} MiB",
        "a live run <= 25% of the day's derivation; memory bounded (<= 1 GiB)",
        ratio <= 0.25 and max(live.peak_rss, full.peak_rss) <= GIB)


def _derivation(day: synth.SyntheticDay, work: Path, progress: Progress) -> dict[int, Figure]:
    t = _step(progress, "derivation: compaction (untimed)")
    finalised = {share: derivation.finalised_files(day, int(day.frames * share), work / f"finalised-{share}")
                 for share in SCALES}
    progress.advance(t)
    t = _step(progress, "derivation: orjson, pipeline, reference")
    parses, runs = [], {}
    inputs = {**finalised, LANDED: day.files()}
    for _ in range(DERIVE_ROUNDS):  # interleaved; each figure keeps its best time and its highest memory
        parses.append(isolated(derivation.orjson_loop, day.files()).value)
        for key, files in inputs.items():
            # as re-deriving months runs: day after day in one process (the first pays its setup once)
            run = isolated(derivation.pipeline_derive, files, work / f"derived-{key}",
                           warmup=(derivation.pipeline_derive, day.files()[:1], work / "warmup"))
            best = runs.get(key, run)
            runs[key] = Measured(run.value, min(run.seconds, best.seconds), max(run.peak_rss, best.peak_rss))
    parse = min(parses)
    orjson_s = parse[0]
    reference = isolated(derivation.reference_derive, day.files(), work / "reference")
    differ = sorted({f"{doc_type} ({'as landed' if key == LANDED else 'finalised'})" for key in (1.0, LANDED)
                     for doc_type in derivation.same_rows(work / f"derived-{key}", work / "reference")})
    progress.advance(t)
    full, landed = runs[1.0], runs[LANDED]
    per_frame = {share: runs[share].seconds / runs[share].value for share in SCALES}
    spread = max(per_frame.values()) / min(per_frame.values()) - 1
    vs_orjson, vs_reference = orjson_s / full.seconds, reference.seconds / full.seconds
    return {
        1: Figure(1, "derivation",
                  f"every doc_type of a finalised day ({len(finalised[1.0])} compacted files: what re-deriving months "
                  f"reads) in {full.seconds:.1f} s (read, derive, write; {os.cpu_count()} cores) = {vs_orjson:.2f}x a "
                  f"bare orjson.loads loop over its {parse[1]:,} event frames ({orjson_s:.1f} s, one core) and "
                  f"{vs_reference:.1f}x the row-at-a-time deriver ({reference.seconds:.1f} s); the day as landed "
                  f"({len(day.files()):,} files) in {landed.seconds:.1f} s = {orjson_s / landed.seconds:.2f}x and "
                  f"{reference.seconds / landed.seconds:.1f}x; each after a warm-up derivation of one segment in "
                  f"its process; best of {DERIVE_ROUNDS} interleaved runs; "
                  + (f"outputs DIFFER in {', '.join(differ)}" if differ else "outputs equal, every doc_type, both layouts"),
                  ">= 2.0x orjson and >= 20x row-at-a-time (finalised day), equal outputs",
                  not differ and vs_orjson >= 2.0 and vs_reference >= 20),
        5: Figure(5, "memory", f"deriving the day: peak {max(full.peak_rss, landed.peak_rss) / GIB:.2f} GiB "
                  f"(finalised {', '.join(f'{runs[s].value:,} frames {runs[s].peak_rss / GIB:.2f}' for s in SCALES)} "
                  f"GiB; as landed {landed.peak_rss / GIB:.2f} GiB)",
                  "<= 2 GiB deriving a 1M-frame day", max(full.peak_rss, landed.peak_rss) <= 2 * GIB),
        6: Figure(6, "scaling",
                  "derivation time per frame (finalised): " + ", ".join(
                      f"{runs[s].value:,} frames {per_frame[s] * 1e6:.1f} µs" for s in SCALES)
                  + f" (spread {spread:.0%}; median {statistics.median(per_frame.values()) * 1e6:.1f} µs)",
                  "flat within ±20% from 0.25M to 1M frames", spread <= 0.2),
    }
