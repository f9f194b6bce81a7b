"""Readers for recordings made by earlier recorders (decoded events, not wire frames).

``read_recording(path, tz)`` yields a ``RecordedEvent`` for each readable event and a
``BadLine`` for each unreadable one, in file order. The format is recognised from the
content, never the file name (the recorders named their files inconsistently):

- ``seq-jsonl``: one ``{seq, ts, event, data}`` object a line.
- ``cdp-jsonl``: the same plus ``source`` and ``direction`` (sent / received).
- ``event-type-jsonl``: one ``{timestamp, event_type, data}`` object a line.
- ``seq-json``: a single ``{seq, ts, event, data}`` object, pretty-printed (one event a file).
- ``seq-json-array``: a JSON array of ``{seq, ts, event, data}`` objects (``direction`` optional),
  compact or pretty-printed; read element by element, never loaded whole.
- ``keysamples-json``: one object ``{sample_name: {_meta, event_type, timestamp_ms, data}}``;
  its events come ordered by ``timestamp_ms`` then by name (the file is ordered by name).

Text timestamps without an offset are read in ``tz`` (the recorders wrote local time);
every timestamp comes out timezone-aware UTC. ``timestamp_ms`` is taken as the epoch it
states, even where that recorder's clock is known to be skewed: correcting it is the
caller's decision, not the reader's.

Memory is bounded by the frame limit (``max_bytes``, by default the recorder's
``MAX_FRAME_BYTES``): a line or array element longer than it is read past in chunks, never
held whole, and comes out as a ``BadLine`` holding its first 500 characters. A single-document
file over four limits is refused rather than parsed whole. A ``line`` is
the 1-based line number, or the index of the array element or key-sample.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import IO, Any, Callable, Iterator

import orjson

from rugs_pipeline.errors import RugsError
from rugs_pipeline.formats.spool import MAX_FRAME_BYTES

FORMAT_SEQ = "seq-jsonl"
FORMAT_CDP = "cdp-jsonl"
FORMAT_EVENT_TYPE = "event-type-jsonl"
FORMAT_SEQ_JSON = "seq-json"
FORMAT_SEQ_ARRAY = "seq-json-array"
FORMAT_KEYSAMPLES = "keysamples-json"

# Detection looks at this many non-blank lines for a known envelope, so it stays cheap
# on multi-GB files; a file whose first 100 lines are all unreadable is not a recording.
_SNIFF_LINES = 100
_TEXT_LIMIT = 500
_CHUNK = 2**20  # bytes read at a time of a line or an array
_BLANK = frozenset(b" \t\r\n")
# A single-document file (one event, key samples) is parsed whole: up to this many frame limits.
_DOCUMENT_FRAMES = 4
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


class RecordingError(RugsError, ValueError):
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
    FORMAT_SEQ_ARRAY: _SEQ,
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


@dataclass(frozen=True)
class _Item:
    """A line or array element: its bytes, or None and why it was not read (then its first bytes)."""

    number: int
    data: bytes | bytearray | None
    head: bytes = b""
    unread: str = ""

    def parse(self, envelope: _Envelope, tz: tzinfo) -> RecordedEvent | BadLine:
        if self.data is None:
            return BadLine(self.number, self.unread, _clip(self.head))
        try:
            obj = orjson.loads(self.data)
        except orjson.JSONDecodeError as exc:
            return BadLine(self.number, f"not JSON: {exc}", _clip(self.data))
        result = _to_event(obj, envelope, self.number, tz)
        return result if isinstance(result, RecordedEvent) else BadLine(self.number, result, _clip(self.data))


def _over_limit(size: int, max_bytes: int) -> str:
    return f"{size} bytes, over the frame limit of {max_bytes} bytes (--max-frame-mb): not read"


def _lines(fh: IO[bytes], max_bytes: int) -> Iterator[_Item]:
    """Non-blank lines, stripped; one over ``max_bytes`` is read past in chunks, never held whole."""
    for number in itertools.count(1):
        line, head, size = bytearray(), b"", 0
        while piece := fh.readline(_CHUNK):
            size += len(piece)
            if size <= max_bytes + 2:  # room for the line's own "\r\n"
                line += piece
            elif line:  # past the limit: keep its head only
                head, line = bytes(line[:_TEXT_LIMIT]), bytearray()
            if piece.endswith(b"\n"):
                break
        if not size:
            return
        content = size - (len(piece) - len(piece.rstrip(b"\r\n")))
        if content > max_bytes:
            yield _Item(number, None, (head or bytes(line[:_TEXT_LIMIT])).lstrip(), _over_limit(content, max_bytes))
            continue
        while line and line[-1] in _BLANK:
            line.pop()  # in place: a long line is not copied to strip its newline
        if line[:1].isspace():
            line = line.lstrip()
        if line:
            yield _Item(number, line)  # blank lines carry nothing to keep


# The bytes that change JSON's nesting or quoting.
_STRUCTURE = re.compile(rb'[\\"\[\]{},]')
_QUOTE, _BACKSLASH, _COMMA = b'"'[0], b"\\"[0], b","[0]
_OPEN = frozenset(b"[{")


class _Element:
    """The bytes of one array element as they arrive; past ``max_bytes`` only its head and size."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.data, self.head, self.size = max_bytes, bytearray(), b"", 0

    def add(self, piece: bytes) -> None:
        if not self.size:
            piece = piece.lstrip()  # the whitespace after a comma is not the element's
        if self.size <= self.max_bytes:
            self.data += piece
            if len(self.data) > self.max_bytes:
                self.head, self.data = bytes(self.data[:_TEXT_LIMIT]), bytearray()
        self.size += len(piece)

    def item(self, number: int) -> _Item | None:
        if self.size > self.max_bytes:
            return _Item(number, None, self.head, _over_limit(self.size, self.max_bytes))
        return _Item(number, self.data) if self.data else None


def _array_elements(fh: IO[bytes], max_bytes: int) -> Iterator[_Item]:
    """The elements of the JSON array in ``fh``, read ``_CHUNK`` bytes at a time.

    Only quoting and nesting are tracked, to find the commas between top-level elements;
    orjson parses each element. A truncated file ends with its partial last element.
    """
    depth, in_string, skip = 0, False, -1
    element, number = _Element(max_bytes), 0
    while chunk := fh.read(_CHUNK):
        start = 0
        for match in _STRUCTURE.finditer(chunk):
            pos = match.start()
            byte = chunk[pos]
            if in_string:
                if pos == skip:
                    continue
                if byte == _BACKSLASH:
                    skip = pos + 1
                elif byte == _QUOTE:
                    in_string = False
            elif byte == _QUOTE:
                in_string = depth > 0
            elif byte in _OPEN:
                depth += 1
                start = pos + 1 if depth == 1 else start
            elif depth > 1:
                depth -= byte != _COMMA
            elif depth == 1:  # a comma or closer of the array itself: the element ends
                element.add(chunk[start:pos].rstrip())
                if item := element.item(number + 1):
                    number += 1
                    yield item
                element, start = _Element(max_bytes), pos + 1
                if byte != _COMMA:
                    yield from _after_array(number + 1, chunk[pos + 1:], fh)
                    return
        if depth:
            element.add(chunk[start:])
        skip = 0 if skip == len(chunk) else -1
    if item := element.item(number + 1):
        yield item  # a truncated file: its partial last element


def _after_array(number: int, rest: bytes, fh: IO[bytes]) -> Iterator[_Item]:
    """What follows the array's end: nothing but whitespace, else one item saying so."""
    while not (rest := rest.lstrip()) and (rest := fh.read(_CHUNK)):
        pass
    if rest:
        yield _Item(number, None, rest[:_TEXT_LIMIT].rstrip(), "text after the end of the JSON array: not read")


def _clip(text: str | bytes | bytearray) -> str:
    if isinstance(text, (bytes, bytearray)):
        # At most 4 bytes a character: decode no more than the kept text needs.
        text = bytes(text[: 4 * _TEXT_LIMIT]).decode("utf-8", errors="replace")
    return text[:_TEXT_LIMIT]


def _starts_array(fh: IO[bytes]) -> bool | None:
    """Whether the first non-blank byte opens a JSON array; None when the file is blank."""
    while chunk := fh.read(_CHUNK):
        if text := chunk.lstrip():
            return text.startswith(b"[")
    return None


def _sniff(items: Iterator[_Item]) -> str | None:
    """The line format of the first recognisable one of the first ``_SNIFF_LINES`` items."""
    for item in itertools.islice(items, _SNIFF_LINES):
        try:
            fmt = item.data is not None and _line_format(orjson.loads(item.data))
        except orjson.JSONDecodeError:
            continue  # a corrupt line, or a line of a pretty-printed document
        if fmt:
            return fmt
    return None


def _detect(path: Path, max_bytes: int) -> tuple[str, Any]:
    """(format, the parsed document for whole-file formats else None); raises RecordingError."""
    try:
        fh = open(path, "rb")
    except FileNotFoundError:
        raise RecordingError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordingError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with fh:
        is_array = _starts_array(fh)
        if is_array is None:
            raise RecordingError(f"{path}: unrecognised format: the file is empty")
        fh.seek(0)
        if is_array:
            if _sniff(_array_elements(fh, max_bytes)) in (FORMAT_SEQ, FORMAT_CDP):
                return FORMAT_SEQ_ARRAY, None
            raise RecordingError(f"{path}: unrecognised format: a JSON array, but none of its first {_SNIFF_LINES} "
                                 "elements is a {seq, ts, event, data} object")
        fmt = _sniff(_lines(fh, max_bytes))
        if fmt:
            return fmt, None
        size = fh.seek(0, os.SEEK_END)
        if size > _DOCUMENT_FRAMES * max_bytes:
            raise RecordingError(
                f"{path}: unrecognised format: no {{seq, ts, event, data}} or {{timestamp, event_type, data}} line "
                f"among the first {_SNIFF_LINES}, and at {size} bytes over {_DOCUMENT_FRAMES} times the frame limit "
                "(--max-frame-mb) to be read as a single JSON document")
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


def detect_format(path: Path, max_bytes: int = MAX_FRAME_BYTES) -> str:
    """The recording format name (see the module docstring); raises RecordingError."""
    return _detect(Path(path), max_bytes)[0]


def read_recording(path: Path, tz: tzinfo = timezone.utc,
                   max_bytes: int = MAX_FRAME_BYTES) -> Iterator[RecordedEvent | BadLine]:
    """Events and unreadable lines of a recording, in file order.

    Raises RecordingError at once (not on first iteration) when the file is missing or
    not a recording; bad content inside a recording never raises, it yields BadLine.
    """
    path = Path(path)
    fmt, doc = _detect(path, max_bytes)
    envelope = _ENVELOPES[fmt]
    if fmt == FORMAT_KEYSAMPLES:
        return _keysamples(doc, envelope, tz)
    if fmt == FORMAT_SEQ_JSON:
        result = _to_event(doc, envelope, 1, tz)
        return iter([result if isinstance(result, RecordedEvent) else BadLine(1, result, _clip(orjson.dumps(doc)))])
    return _stream(path, _array_elements if fmt == FORMAT_SEQ_ARRAY else _lines, envelope, tz, max_bytes)


def _stream(path: Path, split: Callable[[IO[bytes], int], Iterator[_Item]], envelope: _Envelope, tz: tzinfo,
            max_bytes: int) -> Iterator[RecordedEvent | BadLine]:
    with open(path, "rb") as fh:
        for item in split(fh, max_bytes):
            yield item.parse(envelope, tz)


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
