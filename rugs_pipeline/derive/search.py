"""The feed catalog's search index: ``$RUGS_DATA_DIR/vectors/events.lance``, table ``events``, for agents.

Rebuilt whole from the catalog Parquet (the truth; the index is derived): one document per event and
one per field path over every catalogued day, with text made for search (names split into words,
types, examples, counts, a description where ``derive.feed_docs`` knows one), LanceDB's native
full-text index on ``text``, and a 256-d ``vector`` from wordllama's weights shipped in its wheel
(nothing is downloaded). Built in a temp folder beside it and swapped in with one
``renameat2(RENAME_EXCHANGE)``: a reader opens the old index or the new one, never a part.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rugs_pipeline.config import ConfigError
from rugs_pipeline.derive import catalog, feed_docs
from rugs_pipeline.store.compaction import _exchange
from rugs_pipeline.store.layout import Store

INDEX_DIR = "vectors/events.lance"
TABLE = "events"
DIMENSIONS = 256


@dataclass(frozen=True)
class IndexReport:
    path: Path
    events: int
    paths: int
    days: list[str]


def index_path(store: Store) -> Path:
    if store.remote:
        raise ConfigError(f"the events search index needs a local folder: RUGS_DATA_DIR={store.root} is an s3 lake "
                          "(build it from a local copy of catalog/)")
    return store.root / INDEX_DIR


def words(name: str) -> str:
    """``standard/newTrade`` -> ``standard new trade``; ``leaderboard[].pnlPercent`` -> ``leaderboard pnl percent``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return " ".join(re.findall(r"[A-Za-z]+|\d+", spaced)).lower()


_embedder = None


def embed(texts: list[str]):
    """256-d vectors from wordllama's bundled weights (loaded once, offline)."""
    global _embedder
    if _embedder is None:
        import wordllama

        _embedder = wordllama.WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__), disable_download=True)
    return _embedder.embed(texts, norm=True)


def _merged(store: Store) -> tuple[dict, list[str]]:
    """(event, path) -> the catalog rows of every day, merged; and the days."""
    days = catalog.catalog_days(store)
    out: dict[tuple[str, str], dict] = {}
    for day in days:
        table = pq.read_table(str(catalog.catalog_path(store, day)), filesystem=store.filesystem)
        for row in table.to_pylist():
            key = (row["event_name"], row["path"])
            m = out.get(key)
            if m is None:
                out[key] = {**row, "types": dict(row["types"]), "days": 1}
                continue
            for t, n in row["types"]:
                m["types"][t] = m["types"].get(t, 0) + n
            for k in ("occurrences", "nulls", "frames"):
                m[k] += row[k]
            m["examples"] = list(dict.fromkeys(m["examples"] + row["examples"]))[:catalog.EXAMPLES]
            if row["first_ts"] < m["first_ts"]:
                m.update(first_ts=row["first_ts"], sample_session_id=row["sample_session_id"],
                         sample_seq=row["sample_seq"])
            m["last_ts"] = max(m["last_ts"], row["last_ts"])
            m["days"] += 1
    return out, days


def documents(merged: dict) -> list[dict]:
    """The index's rows (without vectors): one per event, one per field path."""
    frames_of = {e: r["frames"] for (e, p), r in merged.items() if p == ""}
    fields_of: dict[str, list[str]] = {}
    for (e, p) in sorted(merged):
        if p and "." not in p and "[" not in p:
            fields_of.setdefault(e, []).append(p)
    docs = []
    for (event, path), r in sorted(merged.items()):
        types = catalog.type_names(r["types"])
        examples = ", ".join(r["examples"])
        if path == "":
            fields = fields_of.get(event, [])
            text = (f"event {event} ({words(event)}). {feed_docs.event_description(event)}. "
                    f"fields of {event}: {', '.join(fields)} ({' '.join(words(f) for f in fields)}). "
                    f"payload {'/'.join(types)}; {r['frames']} frames")
        else:
            text = (f"field {path} ({words(path)}) of event {event} ({words(event)}). "
                    f"{feed_docs.field_description(event, path)}. type {'/'.join(types)}"
                    + (f"; examples {examples}" if examples else "")
                    + f"; in {r['frames']} of {frames_of.get(event, r['frames'])} {event} frames, "
                    f"{r['occurrences']} values, {r['nulls']} null")
        docs.append({
            "id": f"{event}:{path}", "event": event, "path": path, "kind": r["kind"], "types": "|".join(types),
            "examples": r["examples"], "occurrences": r["occurrences"], "nulls": r["nulls"], "frames": r["frames"],
            "days": r["days"], "first_ts": r["first_ts"], "last_ts": r["last_ts"],
            "sample_session_id": r["sample_session_id"], "sample_seq": r["sample_seq"], "text": text,
        })
    return docs


def build_index(store: Store) -> IndexReport:
    """Rebuild ``vectors/events.lance`` from every day's catalog, atomically."""
    import lancedb
    from lancedb.index import FTS

    final = index_path(store)
    merged, days = _merged(store)
    docs = documents(merged)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    db = lancedb.connect(str(staging))
    if docs:
        vectors = embed([d["text"] for d in docs])
        table = pa.Table.from_pylist(docs).append_column(
            "vector", pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype("float32").ravel()), DIMENSIONS))
    else:
        table = _empty()
    tbl = db.create_table(TABLE, data=table)
    tbl.create_index("text", config=FTS(with_position=True))
    if final.exists():
        _exchange(staging, final)
        shutil.rmtree(staging)
    else:
        os.rename(staging, final)
    return IndexReport(final, sum(1 for d in docs if d["path"] == ""), sum(1 for d in docs if d["path"]), days)


def _empty() -> pa.Table:
    return pa.table({"id": pa.array([], pa.string()), "event": pa.array([], pa.string()),
                     "path": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                     "vector": pa.array([], pa.list_(pa.float32(), DIMENSIONS))})


def clean_query(question: str) -> str:
    """The question as plain words for the full-text index (its query syntax would read ? : " as operators)."""
    return " ".join(re.findall(r"[A-Za-z0-9_/]+", question)).replace("/", " ")


def search(store: Store, question: str, limit: int = 10) -> list[dict]:
    """Hybrid search: full-text (BM25) and the vector, fused by reciprocal rank."""
    import lancedb

    path = index_path(store)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no search index yet: materialise events_index (or event_catalog first)")
    tbl = lancedb.connect(str(path)).open_table(TABLE)
    text = clean_query(question)
    if not text:
        return []
    vector = embed([question])[0]
    hits = tbl.search(query_type="hybrid").vector(vector).text(text).limit(limit).to_list()
    return [{k: v for k, v in h.items() if k != "vector"} for h in hits]


def show_frame_command(hit: dict) -> str:
    return (f"rugs-pipeline query \"SELECT ts, raw_json FROM ws_event WHERE session_id = "
            f"'{hit['sample_session_id']}' AND seq = {hit['sample_seq']}\"")
