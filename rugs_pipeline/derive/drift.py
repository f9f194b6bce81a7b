"""Protocol drift: what a day's catalog says that the days before it did not (pure, over catalog tables).

The baseline is the union of the ``WINDOW_DAYS`` most recent catalogued days before the day (captured
days, not calendar days: a store that records every day compares with the last week, a sparse one
with its last captures). No earlier day: the day is the baseline, not drift.

Changes, each (kind, event, path, before, now):

- ``new event``: an event name the window never saw;
- ``new path``: a path of a known event the window never saw (only the topmost: ``a`` new, not also ``a.b``);
- ``path not seen``: a path the window saw, of an event seen on the day, absent on the day (topmost too);
- ``event not seen``: an event the window saw, absent on the day (a logged-out recorder misses a few);
- ``type changed``: the day saw a JSON type at a path that the window never saw there (``price``:
  number -> string). A type that merely stops appearing is not a change: a day may see fewer values.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from rugs_pipeline.derive.catalog import type_names

WINDOW_DAYS = 7
KINDS = ("new event", "event not seen", "new path", "path not seen", "type changed")


@dataclass(frozen=True)
class Change:
    kind: str
    event: str
    path: str
    before: str
    now: str


def _types(table: pa.Table) -> dict[tuple[str, str], dict[str, int]]:
    out: dict[tuple[str, str], dict[str, int]] = {}
    for event, path, types in zip(table["event_name"].to_pylist(), table["path"].to_pylist(),
                                  table["types"].to_pylist()):
        seen = out.setdefault((event, path), {})
        for name, n in types:
            seen[name] = seen.get(name, 0) + n
    return out


def _topmost(paths: set[str]) -> dict[str, int]:
    """The paths none of whose ancestors is in ``paths``, each with how many of ``paths`` lie below it."""
    top: dict[str, int] = {}
    for path in sorted(paths):
        parent = next((p for p in top if path.startswith(p) and path[len(p):len(p) + 1] in (".", "[")), None)
        if parent is None:
            top[path] = 0
        else:
            top[parent] += 1
    return top


def compare(day: pa.Table, window: list[pa.Table]) -> list[Change]:
    """The changes from the ``window`` days' catalogs to ``day``'s."""
    now, before = _types(day), _types(pa.concat_tables(window)) if window else {}
    events_now, events_before = {e for e, _ in now}, {e for e, _ in before}
    changes = [Change("new event", e, "", "", _describe(now[(e, "")])) for e in sorted(events_now - events_before)]
    changes += [Change("event not seen", e, "", _describe(before[(e, "")]), "")
                for e in sorted(events_before - events_now)]
    for event in sorted(events_now & events_before):
        paths_now = {p for e, p in now if e == event}
        paths_before = {p for e, p in before if e == event}
        for kind, paths, side in (("new path", paths_now - paths_before, now),
                                  ("path not seen", paths_before - paths_now, before)):
            for path, below in _topmost(paths).items():
                text = _describe(side[(event, path)]) + (f" (+{below} below)" if below else "")
                changes.append(Change(kind, event, path, text if side is before else "", text if side is now else ""))
        for path in sorted(paths_now & paths_before):
            if set(now[(event, path)]) - set(before[(event, path)]):
                changes.append(Change("type changed", event, path, _describe(before[(event, path)]),
                                      _describe(now[(event, path)])))
    return sorted(changes, key=lambda c: (KINDS.index(c.kind), c.event, c.path))


def _describe(types: dict[str, int]) -> str:
    return "|".join(type_names(types))


def markdown(changes: list[Change], limit: int = 200) -> str:
    """The changes as a Markdown table (at most ``limit`` rows, then how many more)."""
    lines = ["| change | event | path | before | now |", "|---|---|---|---|---|"]
    for c in changes[:limit]:
        lines.append(f"| {c.kind} | `{c.event}` | `{c.path or '(payload)'}` | {c.before} | {c.now} |")
    if len(changes) > limit:
        lines.append(f"| ... | {len(changes) - limit} more | | | |")
    return "\n".join(lines)


def summary(changes: list[Change]) -> str:
    counts = {k: sum(c.kind == k for c in changes) for k in KINDS}
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no change"
