"""The feed catalog: what every event's payload holds, path by path, from every frame of a day.

Pure functions over ``ws_event`` rows (Arrow), then ``build_day``, which reads a day's files from the
store and writes its catalog beside them (outside ``events_parquet``). One catalog row per (event_name, path) and one per
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

A day is catalogued file by file (``part_of``: small, mergeable partial rows) and the parts combined
(``combine_parts``); the day's combined part is kept with the files it covers, so re-cataloguing a
live day walks only the files landed since the last run.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import duckdb
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rugs_pipeline.store.compaction import merged_version
from rugs_pipeline.store.layout import Store

MAX_DEPTH = 32
EXAMPLES = 3
EXAMPLE_CHARS = 40
TYPES = ("object", "array", "string", "number", "boolean", "null")
_TYPE_INDEX = {dict: 0, list: 1, str: 2, int: 3, float: 3, bool: 4, type(None): 5}
SEEN_MAX = 64  # values remembered per unsettled path (bounded memory)
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
    """An event frame's payload (its last argument, None without one); raises ValueError if not JSON."""
    args = orjson.loads(raw_json[raw_json.index("["):])
    return args[-1] if len(args) > 1 else None


def _example(value) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS - 3] + "..."


class _Node:
    """One (event, path) within one walk: type counts, frames, first/last frame, the first distinct examples, its children."""

    __slots__ = ("path", "counts", "frames", "first", "last", "examples", "seen", "done", "keys", "items", "digits")

    def __init__(self, path: str) -> None:
        self.path = path
        self.counts = [0] * len(TYPES)
        self.frames = 0
        self.first = -1  # index of the first frame with the path (frames are walked in order)
        self.last = -1  # ... and of the last: a frame is counted in ``frames`` once, when ``last`` moves to it
        self.examples: list = []  # [(frame index, position, text)]: the first distinct texts, at most EXAMPLES
        self.seen: set = set()  # values already known to give one of ``examples`` (not floats: -0.0 == 0.0)
        self.done = False  # EXAMPLES examples: later values cannot displace them
        self.keys: dict[str, _Node] = {}  # an object's members by key
        self.items: _Node | None = None  # an array's elements
        self.digits: _Node | None = None  # the members whose key is digits ("*"), not kept by key: unbounded

    def child(self, key: str) -> "_Node":
        if key.isascii() and key.isdigit():
            if self.digits is None:
                self.digits = _Node(_child(self.path, key))
            return self.digits
        node = self.keys[key] = _Node(_child(self.path, key))
        return node

    def element(self) -> "_Node":
        node = self.items = _Node(self.path + "[]")
        return node


def _child(path: str, key: str) -> str:
    if key.isascii() and key.isdigit():
        seg = "*"
    elif _NAME.match(key):
        seg = key
    else:
        return path + "[" + orjson.dumps(key).decode() + "]"
    return f"{path}.{seg}" if path else seg


_ORDER = [("ts", "ascending"), ("session_id", "ascending"), ("seq", "ascending")]


class Walker:
    """The partial rows of one batch of ws_event rows (READ_COLUMNS): its event frames, walked in frame order.

    In that order a path's first frame and first distinct values are the first met, so the walk keeps no
    frame keys per value: a path holding EXAMPLES examples is settled, and one that is not yet skips the values
    it has seen (``_Node.seen``) without formatting them again.
    """

    def __init__(self, rows: pa.Table | pa.RecordBatch) -> None:
        self.roots: dict[str, _Node] = {}
        events = rows.filter(pc.equal(rows["frame_kind"], "event"))
        events = events.take(pc.sort_indices(events, _ORDER))
        self.frame_keys: list[tuple] = []  # (ts in µs, session_id, seq) by frame index
        self._pos = 0  # examples' position: increasing in walk order, so within a frame too
        ts = events["ts"].cast(pa.int64()).to_pylist()
        for t, session, seq, raw, name in zip(ts, events["session_id"].to_pylist(), events["seq"].to_pylist(),
                                              events["raw_json"].to_pylist(), events["event_name"].to_pylist()):
            try:
                payload = payload_of(raw)
            except ValueError:  # landing's framing parsed it as an event: only a hand-built row gets here
                continue
            frame = len(self.frame_keys)
            self.frame_keys.append((t, session, seq))
            root = self.roots.get(name)
            if root is None:
                root = self.roots[name] = _Node("")
            self._walk(root, [payload], -1, frame)

    @property
    def frames(self) -> int:
        """Event frames catalogued."""
        return len(self.frame_keys)

    def _walk(self, node: _Node, value, depth: int, frame: int) -> None:
        """Count the members or elements of ``value`` (at ``node``, ``depth``), walking into containers.

        The hot loop: one call per object or array, scalars (most values) inline. The payload comes in as the
        one element of a list at depth -1 whose node is its event's root.
        """
        if depth < 0:
            pairs = None
            child = node
        elif type(value) is dict:
            pairs = value.items()
            keys = node.keys
        else:
            pairs = None
            child = node.items or node.element()
        depth += 1
        for item in pairs if pairs is not None else value:
            if pairs is not None:
                k, v = item
                child = keys.get(k) or node.child(k)
            else:
                v = item
            if child.last != frame:
                child.last = frame
                child.frames += 1
                if child.first < 0:
                    child.first = frame
            tv = type(v)
            if tv is dict or tv is list:
                child.counts[0 if tv is dict else 1] += 1
                if v and depth < MAX_DEPTH:
                    self._walk(child, v, depth, frame)
            elif v is None:
                child.counts[5] += 1
            else:
                child.counts[_TYPE_INDEX[tv]] += 1
                if not child.done:
                    self._offer(child, v, tv, frame)

    def _offer(self, node: _Node, value, tv: type, frame: int) -> None:
        key = None if tv is float else value if tv is str else (tv, value)  # True == 1: keyed by type
        if key is not None and key in node.seen:
            return
        text = _example(value)
        examples = node.examples
        if all(t != text for _, _, t in examples):
            self._pos += 1
            examples.append((frame, self._pos, text))
            if len(examples) == EXAMPLES:
                node.done, node.seen = True, set()
                return
        if key is not None and len(node.seen) < SEEN_MAX:
            node.seen.add(key)

    def _nodes(self):
        """((event, path), node) of every path seen."""
        for event, root in self.roots.items():
            stack = [root]
            while stack:
                node = stack.pop()
                yield (event, node.path), node
                stack.extend(node.keys.values())
                stack.extend(n for n in (node.items, node.digits) if n is not None)

    def part(self) -> pa.Table:
        """The partial rows (PART_SCHEMA), sorted by (event_name, path)."""
        cols: dict[str, list] = {f.name: [] for f in PART_SCHEMA}
        keys = self.frame_keys
        for (event, path), acc in sorted(self._nodes()):
            cols["event_name"].append(event)
            cols["path"].append(path)
            for t, n in zip(TYPES, acc.counts):
                cols[f"n_{t}"].append(n)
            cols["frames"].append(acc.frames)
            for end, frame in (("first", acc.first), ("last", acc.last)):
                cols[f"{end}_ts"].append(keys[frame][0])
                cols[f"{end}_session_id"].append(keys[frame][1])
                cols[f"{end}_seq"].append(keys[frame][2])
            cols["examples"].append([{"value": text, "ts": keys[frame][0], "session_id": keys[frame][1],
                                      "seq": keys[frame][2], "pos": pos} for frame, pos, text in acc.examples])
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
    parts, n = [], 0
    for batch in batches:
        walker = Walker(batch)
        parts.append(walker.part())
        n += walker.frames
    return (parts[0] if len(parts) == 1 else combine_parts(parts)), n


_COMBINE = f"""
WITH agg AS (
  SELECT event_name, path, {", ".join(f"sum(n_{t})::BIGINT AS n_{t}" for t in TYPES)}, sum(frames)::BIGINT AS frames,
         min((first_ts, first_session_id, first_seq)) AS f, max((last_ts, last_session_id, last_seq)) AS l
  FROM parts GROUP BY event_name, path
), ex AS (
  SELECT event_name, path, e.value AS value, min((e.ts, e.session_id, e.seq, e.pos)) AS k
  FROM (SELECT event_name, path, unnest(examples) AS e FROM parts)
  GROUP BY event_name, path, e.value
), top AS (
  SELECT event_name, path,
         list({{'value': value, 'ts': k[1], 'session_id': k[2], 'seq': k[3], 'pos': k[4]}} ORDER BY k) AS examples
  FROM (SELECT * FROM ex QUALIFY row_number() OVER (PARTITION BY event_name, path ORDER BY k) <= {EXAMPLES})
  GROUP BY event_name, path
)
SELECT agg.event_name, agg.path, {", ".join(f"n_{t}" for t in TYPES)}, frames,
       f[1] AS first_ts, f[2] AS first_session_id, f[3] AS first_seq, l[1] AS last_ts, l[2] AS last_session_id,
       l[3] AS last_seq, top.examples
FROM agg LEFT JOIN top USING (event_name, path)
ORDER BY agg.event_name, agg.path
"""

_FINAL = f"""
SELECT event_name, path, CASE WHEN path = '' THEN 'event' ELSE 'field' END AS kind,
       map_from_entries(list_filter([{", ".join(f"{{'k': '{t}', 'v': n_{t}}}" for t in TYPES)}], lambda x: x.v > 0)) AS types,
       ({" + ".join(f"n_{t}" for t in TYPES)})::BIGINT AS occurrences, n_null AS nulls, frames,
       coalesce(list_transform(examples, lambda e: e.value), []::VARCHAR[]) AS examples,
       first_ts, last_ts, first_session_id AS sample_session_id, first_seq AS sample_seq
FROM parts
ORDER BY event_name, path
"""


def _run(sql: str, parts: pa.Table) -> pa.Table:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("parts", parts)
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def combine_parts(parts: Iterable[pa.Table]) -> pa.Table:
    """One partial catalog (PART_SCHEMA) from partial catalogs of disjoint sets of frames."""
    return _run(_COMBINE, pa.concat_tables([PART_SCHEMA.empty_table(), *parts])).cast(PART_SCHEMA)


def finish(part: pa.Table) -> pa.Table:
    """The catalog rows (CATALOG_SCHEMA) of a partial catalog."""
    return _run(_FINAL, part).cast(CATALOG_SCHEMA)


def merge_parts(parts: Iterable[pa.Table]) -> pa.Table:
    """The catalog (CATALOG_SCHEMA) from partial catalogs of disjoint sets of frames."""
    return finish(combine_parts(parts))


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
_STATE_KEY = b"rugs_catalog_files"  # the state's metadata: {file name: [stamp, {frame_kind: rows}]}
READ_BATCH_ROWS = 4096  # bounded memory: a compacted file's state frames are GBs of text


@dataclass
class DayCatalog:
    table: pa.Table
    path: object
    frames: int  # event frames catalogued
    other_frames: dict[str, int] = field(default_factory=dict)  # rows not catalogued, by frame_kind
    files: int = 0
    walked: int = 0  # files walked this time (the others were in the day's state already)


def catalog_path(store: Store, day: str):
    return store.root / CATALOG_DIR / f"date={day}" / CATALOG_FILE


def state_path(store: Store, day: str):
    """The day's partial catalog (PART_SCHEMA) and the files it covers: the next run adds only new files."""
    return store.root / CATALOG_DIR / "state" / f"date={day}" / "part.parquet"


def _parquet_bytes(table: pa.Table, metadata: dict[bytes, bytes] | None = None) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table.replace_schema_metadata(metadata) if metadata else table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _read_state(store: Store, day: str) -> tuple[pa.Table, dict] | None:
    try:
        table = pq.read_table(str(state_path(store, day)), filesystem=store.filesystem)
    except (FileNotFoundError, OSError):
        return None
    covered = orjson.loads((table.schema.metadata or {}).get(_STATE_KEY, b"{}"))
    return table.replace_schema_metadata(None), covered


def _still_covered(store: Store, covered: dict, files: list, stamps: dict) -> dict | None:
    """What the day's state covers among ``files`` now; None when it no longer describes them.

    A covered file rewritten in place (a migration) invalidates it. Covered files gone are what compaction
    merged: the state carries over to the new merged files when they hold exactly as many rows (compaction
    only moves rows; nothing else deletes a day's file), else it is invalid.
    """
    if any(name in stamps and stamps[name] != entry[0] for name, entry in covered.items()):
        return None
    gone = {name: entry for name, entry in covered.items() if name not in stamps}
    if not gone:
        return covered
    merged = [f for f in files if f.name not in covered and merged_version(f) is not None]
    rows = sum(pq.read_metadata(str(f), filesystem=store.filesystem).num_rows for f in merged)
    if not merged or rows != sum(sum(kinds.values()) for _, kinds in gone.values()):
        return None
    kinds: Counter[str] = Counter()
    for _, counts in gone.values():
        kinds.update(counts)
    kept = {name: entry for name, entry in covered.items() if name in stamps}
    # the frame kinds of the merged rows, kept on the first merged file (the day's totals are what is reported)
    kept.update({f.name: [stamps[f.name], dict(kinds) if i == 0 else {}] for i, f in enumerate(merged)})
    return kept


def build_day(store: Store, day: str) -> DayCatalog:
    """Catalogue ``day``'s ws_event files and write ``catalog/date=<day>/event_catalog.parquet`` atomically.

    The day's partial catalog is kept in ``catalog/state/date=<day>/`` with the files it covers and their
    stamps (size and mtime, or ETag). Only files it does not cover are walked and combined with it: those
    landed since the last run (a live day's), none after compaction merged covered files (``_still_covered``);
    every file when a covered file was rewritten (a migration).
    """
    with store.partition_lock("ws_event", day, shared=True):
        files = store.partition_files("ws_event", day)
        stamps = {f.name: store.files.stamp(f) for f in files}
        state = _read_state(store, day)
        covered = _still_covered(store, state[1], files, stamps) if state is not None else None
        parts = [state[0]] if covered is not None else []
        covered = covered or {}
        new = [f for f in files if f.name not in covered]
        for f in new:
            source = pq.ParquetFile(str(f), filesystem=store.filesystem)
            part, _ = part_of(source.iter_batches(batch_size=READ_BATCH_ROWS, columns=READ_COLUMNS))
            kinds = {r["values"]: r["counts"] for r in source.read(columns=["frame_kind"])["frame_kind"]
                     .value_counts().to_pylist()}
            parts.append(part)
            covered[f.name] = [stamps[f.name], kinds]
    combined = combine_parts(parts) if len(parts) != 1 or new else parts[0]
    if new or state is None or covered != state[1]:
        store.files.write_bytes(state_path(store, day), _parquet_bytes(combined, {_STATE_KEY: orjson.dumps(covered)}))
    table = finish(combined)
    other: Counter[str] = Counter()
    for _, kinds in covered.values():
        other.update({str(kind): n for kind, n in kinds.items()})
    frames = other.pop("event", 0)
    path = catalog_path(store, day)
    store.files.write_bytes(path, _parquet_bytes(table))
    return DayCatalog(table, path, frames, dict(sorted(other.items())), len(files), len(new))


def catalog_days(store: Store) -> list[str]:
    """Days with a catalog file."""
    return store.files.days(store.root / CATALOG_DIR)


def read_catalog(store: Store, day: str) -> pa.Table | None:
    try:
        return pq.read_table(str(catalog_path(store, day)), filesystem=store.filesystem)
    except (FileNotFoundError, OSError):
        return None
