"""The feed catalog: what every event's payload holds, path by path, from every frame of a day.

Pure functions over ``ws_event`` rows (Arrow). One catalog row per (event_name, path) and one per
event_name as a whole (``path`` ''), both directions, every event frame (``frame_kind = 'event'``);
other frames (malformed, pings, lifecycle records) are counted by the caller, not catalogued.

Invariants:

- The payload is the event's LAST argument: a trace header before it (``event_args`` = 2) is not
  catalogued. An event without arguments has a ``null`` payload.
- Paths are JSON-path style without the leading ``$.``: ``leaderboard[].pnl``; ``[]`` is every element
  of an array; an object key of digits only (a map keyed by tick, ``partialPrices.values.*``) is ``*``;
  a key that is not a plain name is quoted (``["a b"]``). Values nested deeper than ``MAX_DEPTH`` are
  counted at the deepest path, not walked into.
- ``occurrences`` counts values at the path (each array element counts), ``frames`` the frames in
  which the path occurs, ``types`` each JSON type's occurrences, ``nulls`` the ``null`` ones.
- ``examples``: the first ``EXAMPLES`` distinct scalar values (JSON text, cut to ``EXAMPLE_CHARS``)
  in the order (ts, session_id, seq, position in the frame); first/last seen and the sample frame
  (the first, by the same order) likewise. So the result does not depend on how the day's rows are
  split into files or batches, nor on their order.

A day is catalogued file by file (``file_part``: small, mergeable partial rows, cached beside the
catalog) and the parts merged (``merge_parts``), so re-cataloguing a live day walks only the files
landed since the last run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rugs_pipeline.store.layout import Store

MAX_DEPTH = 32
EXAMPLES = 3
EXAMPLE_CHARS = 40
TYPES = ("object", "array", "string", "number", "boolean", "null")
_TYPE_INDEX = {dict: 0, list: 1, str: 2, int: 3, float: 3, bool: 4, type(None): 5}
_NAME = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")

READ_COLUMNS = ["ts", "session_id", "seq", "raw_json", "frame_kind", "event_name"]

_EXAMPLE = pa.struct([("value", pa.string()), ("ts", pa.timestamp("us", tz="UTC")), ("session_id", pa.string()),
                      ("seq", pa.int64()), ("pos", pa.int64())])
PART_SCHEMA = pa.schema(
    [("event_name", pa.string()), ("path", pa.string()),
     *((f"n_{t}", pa.int64()) for t in TYPES),
     ("frames", pa.int64()),
     ("first_ts", pa.timestamp("us", tz="UTC")), ("first_session_id", pa.string()), ("first_seq", pa.int64()),
     ("last_ts", pa.timestamp("us", tz="UTC")), ("last_session_id", pa.string()), ("last_seq", pa.int64()),
     ("examples", pa.list_(_EXAMPLE))]
)
CATALOG_SCHEMA = pa.schema(
    [("event_name", pa.string()), ("path", pa.string()), ("kind", pa.string()),
     ("types", pa.map_(pa.string(), pa.int64())), ("occurrences", pa.int64()), ("nulls", pa.int64()),
     ("frames", pa.int64()), ("examples", pa.list_(pa.string())),
     ("first_ts", pa.timestamp("us", tz="UTC")), ("last_ts", pa.timestamp("us", tz="UTC")),
     ("sample_session_id", pa.string()), ("sample_seq", pa.int64())]
)
DESCRIPTIONS = {
    "event_name": "the Socket.IO event name (sent and received frames alike)",
    "path": "JSON path in the payload (the last argument): '' is the payload as a whole, a[].b each element's b, "
            "* a key of digits",
    "kind": "'event' (the payload as a whole) or 'field'",
    "types": "JSON type -> values of that type seen at the path",
    "occurrences": "values seen at the path (each array element counts)",
    "nulls": "of them, null",
    "frames": "frames in which the path occurs",
    "examples": f"the first {EXAMPLES} distinct scalar values (JSON text, cut to {EXAMPLE_CHARS} characters)",
    "first_ts": "receive time of the first frame with the path",
    "last_ts": "receive time of the last frame with the path",
    "sample_session_id": "the first frame with the path: its session_id ...",
    "sample_seq": "... and seq (rugs-pipeline query shows it)",
}


def payload_of(raw_json: str):
    """An event frame's payload (its last argument, None without one); raises orjson.JSONDecodeError."""
    args = orjson.loads(raw_json[raw_json.index("["):])
    return args[-1] if len(args) > 1 else None


def _example(value) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS - 3] + "..."


class _Acc:
    """Per (event, path): type counts, frames, first/last frame key, the first distinct examples."""

    __slots__ = ("counts", "frames", "first", "last", "examples")

    def __init__(self) -> None:
        self.counts = [0] * len(TYPES)
        self.frames = 0
        self.first = None
        self.last = None
        self.examples: list = []  # [(key, text)], sorted by key, distinct texts, at most EXAMPLES

    def offer(self, key: tuple, value) -> None:
        ex = self.examples
        if len(ex) == EXAMPLES and key >= ex[-1][0]:
            return
        text = _example(value)
        for i, (k, t) in enumerate(ex):
            if t == text:
                if key < k:
                    ex[i] = (key, text)
                    ex.sort()
                return
        ex.append((key, text))
        ex.sort()
        del ex[EXAMPLES:]


def _child(path: str, key: str) -> str:
    if key.isascii() and key.isdigit():
        seg = "*"
    elif _NAME.match(key):
        seg = key
    else:
        seg = "[" + orjson.dumps(key).decode() + "]"
        return path + seg
    return f"{path}.{seg}" if path else seg


class Walker:
    """Accumulates frames' payloads into per-(event, path) partial rows."""

    def __init__(self) -> None:
        self.acc: dict[tuple[str, str], _Acc] = {}
        self._children: dict[tuple[str, str], str] = {}

    def add(self, event: str, frame_key: tuple, payload) -> None:
        """One frame: ``frame_key`` = (ts in µs, session_id, seq)."""
        seen: dict[str, _Acc] = {}
        self._walk(event, payload, "", 0, frame_key, seen, [0])
        for acc in seen.values():
            acc.frames += 1
            if acc.first is None or frame_key < acc.first:
                acc.first = frame_key
            if acc.last is None or frame_key > acc.last:
                acc.last = frame_key

    def _walk(self, event: str, value, path: str, depth: int, frame_key: tuple, seen: dict, pos: list) -> None:
        acc = seen.get(path)
        if acc is None:
            acc = self.acc.get((event, path))
            if acc is None:
                acc = self.acc[(event, path)] = _Acc()
            seen[path] = acc
        t = _TYPE_INDEX[type(value)]
        acc.counts[t] += 1
        n = pos[0]
        pos[0] = n + 1
        if t >= 2:
            if t < 5:
                ex = acc.examples
                if len(ex) < EXAMPLES or (frame_key, n) < ex[-1][0]:
                    acc.offer((frame_key, n), value)
            return
        if depth >= MAX_DEPTH:
            return
        if t == 0:
            children = self._children
            for k, v in value.items():
                child = children.get((path, k))
                if child is None:
                    child = children[(path, k)] = _child(path, k)
                self._walk(event, v, child, depth + 1, frame_key, seen, pos)
        else:
            child = path + "[]"
            for v in value:
                self._walk(event, v, child, depth + 1, frame_key, seen, pos)

    def add_rows(self, rows: pa.Table | pa.RecordBatch) -> int:
        """The event frames among ``rows`` (READ_COLUMNS); returns how many were catalogued."""
        events = rows.filter(pc.equal(rows["frame_kind"], "event"))
        ts = events["ts"].cast(pa.int64()).to_pylist()
        n = 0
        for t, session, seq, raw, name in zip(ts, events["session_id"].to_pylist(), events["seq"].to_pylist(),
                                              events["raw_json"].to_pylist(), events["event_name"].to_pylist()):
            try:
                payload = payload_of(raw)
            except (orjson.JSONDecodeError, ValueError):  # framing said event: only a hand-built row gets here
                continue
            self.add(name, (t, session, seq), payload)
            n += 1
        return n

    def part(self) -> pa.Table:
        """The partial rows (PART_SCHEMA), sorted by (event_name, path)."""
        cols: dict[str, list] = {f.name: [] for f in PART_SCHEMA}
        for (event, path), acc in sorted(self.acc.items()):
            cols["event_name"].append(event)
            cols["path"].append(path)
            for t, n in zip(TYPES, acc.counts):
                cols[f"n_{t}"].append(n)
            cols["frames"].append(acc.frames)
            for end, key in (("first", acc.first), ("last", acc.last)):
                cols[f"{end}_ts"].append(key[0])
                cols[f"{end}_session_id"].append(key[1])
                cols[f"{end}_seq"].append(key[2])
            cols["examples"].append([{"value": text, "ts": k[0][0], "session_id": k[0][1], "seq": k[0][2], "pos": k[1]}
                                     for k, text in acc.examples])
        arrays = []
        for f in PART_SCHEMA:
            if pa.types.is_timestamp(f.type):
                arrays.append(pa.array(cols[f.name], pa.int64()).cast(f.type))
            elif f.name == "examples":
                arrays.append(pa.array(cols[f.name], pa.list_(pa.struct([(x.name, pa.int64() if x.name == "ts"
                                                                          else x.type) for x in _EXAMPLE]))
                                       ).cast(f.type))
            else:
                arrays.append(pa.array(cols[f.name], f.type))
        return pa.Table.from_arrays(arrays, schema=PART_SCHEMA)


def part_of(batches: Iterable[pa.Table | pa.RecordBatch]) -> tuple[pa.Table, int]:
    """The partial catalog of some ws_event rows, and how many event frames it holds."""
    walker = Walker()
    n = sum(walker.add_rows(b) for b in batches)
    return walker.part(), n


_MERGE = f"""
WITH p AS (SELECT * FROM parts),
agg AS (
  SELECT event_name, path, {", ".join(f"sum(n_{t})::BIGINT AS n_{t}" for t in TYPES)}, sum(frames)::BIGINT AS frames,
         min((first_ts, first_session_id, first_seq)) AS f, max((last_ts, last_session_id, last_seq)) AS l
  FROM p GROUP BY event_name, path
), ex AS (
  SELECT event_name, path, e.value AS value, min((e.ts, e.session_id, e.seq, e.pos)) AS k
  FROM (SELECT event_name, path, unnest(examples) AS e FROM p)
  GROUP BY event_name, path, e.value
), top AS (
  SELECT event_name, path, list(value ORDER BY k) AS examples
  FROM (SELECT * FROM ex QUALIFY row_number() OVER (PARTITION BY event_name, path ORDER BY k) <= {EXAMPLES})
  GROUP BY event_name, path
)
SELECT agg.event_name, agg.path, CASE WHEN agg.path = '' THEN 'event' ELSE 'field' END AS kind,
       map_from_entries(list_filter([{", ".join(f"{{'k': '{t}', 'v': n_{t}}}" for t in TYPES)}], lambda x: x.v > 0)) AS types,
       ({" + ".join(f"n_{t}" for t in TYPES)})::BIGINT AS occurrences, n_null AS nulls, frames,
       coalesce(top.examples, []::VARCHAR[]) AS examples,
       f[1] AS first_ts, l[1] AS last_ts, f[2] AS sample_session_id, f[3] AS sample_seq
FROM agg LEFT JOIN top USING (event_name, path)
ORDER BY agg.event_name, agg.path
"""


def merge_parts(parts: Iterable[pa.Table]) -> pa.Table:
    """The catalog (CATALOG_SCHEMA) from partial catalogs of disjoint sets of frames."""
    table = pa.concat_tables([PART_SCHEMA.empty_table(), *parts])
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("parts", table)
        out = con.sql(_MERGE).to_arrow_table()
    finally:
        con.close()
    return out.cast(CATALOG_SCHEMA)


def catalog(ws_event: pa.Table) -> pa.Table:
    """The catalog of some ws_event rows in one go (a test's or a small day's)."""
    part, _ = part_of([ws_event.select(READ_COLUMNS)])
    return merge_parts([part])


def type_names(types: dict[str, int] | list) -> list[str]:
    """A catalog row's ``types`` (a dict, or Arrow's list of pairs), most frequent first."""
    items = types.items() if isinstance(types, dict) else types
    return [k for k, _ in sorted(items, key=lambda kv: (-kv[1], kv[0]))]


# --- a day of the store -------------------------------------------------------------------------------

CATALOG_DIR = "catalog"
CATALOG_FILE = "event_catalog.parquet"
_STAMP_KEY = b"rugs_catalog_source"
READ_BATCH_ROWS = 4096  # bounded memory: a compacted file's state frames are GBs of text


@dataclass
class DayCatalog:
    table: pa.Table
    path: object
    frames: int  # event frames catalogued
    other_frames: dict[str, int] = field(default_factory=dict)  # rows not catalogued, by frame_kind
    files: int = 0
    parts_walked: int = 0  # files walked this time (the others' parts were cached)


def catalog_path(store: Store, day: str):
    return store.root / CATALOG_DIR / f"date={day}" / CATALOG_FILE


def _part_path(store: Store, day: str, source):
    return store.root / CATALOG_DIR / "parts" / f"date={day}" / f"{source.name}"


def _parquet_bytes(table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata) if metadata else table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _cached_part(store: Store, path, stamp: bytes) -> pa.Table | None:
    try:
        source = pq.ParquetFile(str(path), filesystem=store.filesystem)
    except (FileNotFoundError, OSError):
        return None
    if (source.schema_arrow.metadata or {}).get(_STAMP_KEY) != stamp:
        return None
    return source.read().replace_schema_metadata(None)


def build_day(store: Store, day: str) -> DayCatalog:
    """Catalogue ``day``'s ws_event files and write ``catalog/date=<day>/event_catalog.parquet`` atomically.

    Each file's partial rows are cached under ``catalog/parts/date=<day>/`` with the file's stamp
    (size and mtime, or ETag): a file landed since, or rewritten by compaction or a migration, is
    walked again; parts of files no longer in the day are deleted.
    """
    parts, walked = [], 0
    other: dict[str, int] = {}
    with store.partition_lock("ws_event", day, shared=True):
        files = store.partition_files("ws_event", day)
        for f in files:
            stamp = orjson.dumps(store.files.stamp(f))
            path = _part_path(store, day, f)
            part = _cached_part(store, path, stamp)
            source = pq.ParquetFile(str(f), filesystem=store.filesystem)
            if part is None:
                part, _ = part_of(source.iter_batches(batch_size=READ_BATCH_ROWS, columns=READ_COLUMNS))
                store.files.write_bytes(path, _parquet_bytes(part, {_STAMP_KEY: stamp}))
                walked += 1
            kinds = source.read(columns=["frame_kind"])["frame_kind"].value_counts().to_pylist()
            for row in kinds:
                other[row["values"]] = other.get(row["values"], 0) + row["counts"]
            parts.append(part)
    keep = {_part_path(store, day, f).name for f in files}
    for stale in store.files.files(store.root / CATALOG_DIR / "parts" / f"date={day}", "*.parquet"):
        if stale.name not in keep:
            store.files.delete(stale)
    table = merge_parts(parts)
    frames = other.pop("event", 0)
    path = catalog_path(store, day)
    store.files.write_bytes(path, _parquet_bytes(table))
    return DayCatalog(table, path, frames, dict(sorted(other.items(), key=lambda kv: str(kv[0]))), len(files), walked)


def catalog_days(store: Store) -> list[str]:
    """Days with a catalog file."""
    return store.files.days(store.root / CATALOG_DIR)


def read_catalog(store: Store, day: str) -> pa.Table | None:
    try:
        return pq.read_table(str(catalog_path(store, day)), filesystem=store.filesystem)
    except (FileNotFoundError, OSError):
        return None
