"""Readers for recordings made by earlier recorders (decoded events, not wire frames).

``read_recording(path, tz)`` yields a ``RecordedEvent`` for each readable event and a
``BadLine`` for each unreadable one, in file order. The format is recognised from the
content, never the file name (the recorders named their files inconsistently):

- ``seq-jsonl``: one ``{seq, ts, event, data}`` object a line.
- ``cdp-jsonl``: the same plus ``source`` and ``direction`` (sent / received).
- ``event-type-jsonl``: one ``{timestamp, event_type, data}`` object a line.
- ``seq-json``: a single ``{seq, ts, event, data}`` object, pretty-printed (one event a file).
- ``keysamples-json``: one object ``{sample_name: {_meta, event_type, timestamp_ms, data}}``;
  its events come ordered by ``timestamp_ms`` then by name (the file is ordered by name).

Text timestamps without an offset are read in ``tz`` (the recorders wrote local time);
every timestamp comes out timezone-aware UTC. ``timestamp_ms`` is taken as the epoch it
states, even where that recorder's clock is known to be skewed: correcting it is the
caller's decision, not the reader's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

FORMAT_SEQ = "seq-jsonl"
FORMAT_CDP = "cdp-jsonl"
FORMAT_EVENT_TYPE = "event-type-jsonl"
FORMAT_SEQ_JSON = "seq-json"
FORMAT_KEYSAMPLES = "keysamples-json"

# Detection looks at this many non-blank lines for a known envelope, so it stays cheap
# on multi-GB files; a file whose first 100 lines are all unreadable is not a recording.
_SNIFF_LINES = 100
_TEXT_LIMIT = 500
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True)
class RecordedEvent:
    ts: datetime  # timezone-aware UTC receive time as the recording states it
    name: str  # Socket.IO event name
    args: tuple[Any, ...]  # event arguments as on the wire (a trace header first where recorded)
    direction: str = "received"  # received | sent
    line: int = 0  # 1-based line (or sample index) in the file


@dataclass(frozen=True)
class BadLine:
    line: int
    reason: str
    text: str  # the offending text (truncated to 500 characters)


class RecordingError(ValueError):
    """The file cannot be read as a recording at all (missing, unreadable, unknown format)."""


def _iso_ts(value: Any, tz: tzinfo) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"timestamp is {type(value).__name__}, not ISO text")
    ts = datetime.fromisoformat(value)
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=tz)
    return ts.astimezone(timezone.utc)


def _epoch_ms_ts(value: Any, tz: tzinfo) -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"timestamp_ms is {type(value).__name__}, not a number")
    # timedelta arithmetic is exact; fromtimestamp(ms / 1000) would go through a float.
    return _EPOCH + timedelta(milliseconds=value)


@dataclass(frozen=True)
class _Envelope:
    name_key: str
    time_key: str
    parse_time: Callable[[Any, tzinfo], datetime]
    direction_required: bool = False


_SEQ = _Envelope("event", "ts", _iso_ts)
_ENVELOPES = {
    FORMAT_SEQ: _SEQ,
    FORMAT_SEQ_JSON: _SEQ,
    FORMAT_CDP: _Envelope("event", "ts", _iso_ts, direction_required=True),
    FORMAT_EVENT_TYPE: _Envelope("event_type", "timestamp", _iso_ts),
    FORMAT_KEYSAMPLES: _Envelope("event_type", "timestamp_ms", _epoch_ms_ts),
}


def _line_format(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if "event" in obj and "ts" in obj:
        return FORMAT_CDP if "direction" in obj else FORMAT_SEQ
    if "event_type" in obj and "timestamp" in obj:
        return FORMAT_EVENT_TYPE
    return None


def _is_sample(obj: Any) -> bool:
    return isinstance(obj, dict) and "event_type" in obj and "timestamp_ms" in obj


def _document_format(doc: Any) -> str | None:
    if isinstance(doc, dict) and "event" in doc and "ts" in doc:
        return FORMAT_SEQ_JSON
    if isinstance(doc, dict) and any(_is_sample(v) for v in doc.values()):
        return FORMAT_KEYSAMPLES
    return None


def _args(data: Any) -> tuple[Any, ...]:
    """The wire arguments: recorders stored ``[trace_header, payload]`` for traced events."""
    if data is None:
        return ()
    if isinstance(data, list) and len(data) == 2 and isinstance(data[0], dict) and data[0].get("__trace") is True:
        return (data[0], data[1])
    return (data,)


def _to_event(obj: Any, envelope: _Envelope, line: int, tz: tzinfo) -> RecordedEvent | str:
    """The event, or the reason it cannot be read."""
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    required = [envelope.name_key, envelope.time_key, "data"] + (["direction"] if envelope.direction_required else [])
    missing = [key for key in required if key not in obj]
    if missing:
        return "missing field " + ", ".join(repr(key) for key in missing)
    name = obj[envelope.name_key]
    if not isinstance(name, str) or not name:
        return f"event name is not a non-empty string: {name!r}"[:200]
    direction = obj.get("direction", "received")
    if direction not in ("received", "sent"):
        return f"direction is neither 'sent' nor 'received': {direction!r}"[:200]
    try:
        ts = envelope.parse_time(obj[envelope.time_key], tz)
    except (ValueError, TypeError, OverflowError) as exc:
        return f"bad timestamp: {exc}"
    return RecordedEvent(ts=ts, name=name, args=_args(obj["data"]), direction=direction, line=line)


def _clip(text: str | bytes) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return text[:_TEXT_LIMIT]


def _detect(path: Path) -> tuple[str, Any]:
    """(format, the parsed document for whole-file formats else None); raises RecordingError."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with fh:
        seen = 0
        for raw in fh:
            text = raw.strip()
            if not text:
                continue
            seen += 1
            if seen > _SNIFF_LINES:
                break
            try:
                fmt = _line_format(orjson.loads(text))
            except orjson.JSONDecodeError:
                continue  # a corrupt line, or a line of a pretty-printed document
            if fmt:
                return fmt, None
        if not seen:
            raise RecordingError(f"{path}: unrecognised format: the file is empty")
        fh.seek(0)
        try:
            doc = orjson.loads(fh.read())
        except orjson.JSONDecodeError:
            doc = None
    fmt = _document_format(doc)
    if fmt is None:
        raise RecordingError(
            f"{path}: unrecognised format: no {{seq, ts, event, data}} or {{timestamp, event_type, data}} line "
            f"among the first {_SNIFF_LINES}, and not a single event or key-samples JSON document"
        )
    return fmt, doc


def detect_format(path: Path) -> str:
    """The recording format name (see the module docstring); raises RecordingError."""
    return _detect(Path(path))[0]


def read_recording(path: Path, tz: tzinfo = timezone.utc) -> Iterator[RecordedEvent | BadLine]:
    """Events and unreadable lines of a recording, in file order.

    Raises RecordingError at once (not on first iteration) when the file is missing or
    not a recording; bad content inside a recording never raises, it yields BadLine.
    """
    path = Path(path)
    fmt, doc = _detect(path)
    envelope = _ENVELOPES[fmt]
    if fmt == FORMAT_KEYSAMPLES:
        return _keysamples(doc, envelope, tz)
    if fmt == FORMAT_SEQ_JSON:
        result = _to_event(doc, envelope, 1, tz)
        return iter([result if isinstance(result, RecordedEvent) else BadLine(1, result, _clip(orjson.dumps(doc)))])
    return _jsonl(path, envelope, tz)


def _jsonl(path: Path, envelope: _Envelope, tz: tzinfo) -> Iterator[RecordedEvent | BadLine]:
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            text = raw.strip()
            if not text:
                continue  # blank lines carry nothing to keep
            try:
                obj = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                yield BadLine(number, f"not JSON: {exc}", _clip(text))
                continue
            result = _to_event(obj, envelope, number, tz)
            yield result if isinstance(result, RecordedEvent) else BadLine(number, result, _clip(text))


def _keysamples(doc: dict, envelope: _Envelope, tz: tzinfo) -> Iterator[RecordedEvent | BadLine]:
    good: list[tuple[datetime, float, str, RecordedEvent]] = []
    bad: list[BadLine] = []
    for index, (name, sample) in enumerate(doc.items(), 1):
        result = _to_event(sample, envelope, index, tz)
        if isinstance(result, RecordedEvent):
            # Samples share milliseconds; `_meta.index` is their position in the original capture.
            meta = sample.get("_meta") if isinstance(sample, dict) else None
            position = meta.get("index") if isinstance(meta, dict) else None
            good.append((result.ts, position if isinstance(position, int) else float("inf"), name, result))
        else:
            # Unreadable samples have no time to sort by: they follow the readable ones.
            bad.append(BadLine(index, f"sample {name!r}: {result}", _clip(orjson.dumps({name: sample}))))
    good.sort(key=lambda item: item[:3])
    yield from (event for *_, event in good)
    yield from bad
