"""A query's result for a person or a program: a table readable at any width, or every row as CSV, JSON or
Parquet.

The table never drops a column: a result too wide for the screen is printed one record at a time
(column, value), where only cell text is cut (with "…"); in a table that fits, long text wraps. The files stream in batches, so a result
need not fit in memory; they are written beside their final name and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

BATCH_ROWS = 8192
CELL_CHARS = 12  # the least a column needs beside its header for the horizontal layout to be readable


def render(console: Console, columns: list[str], rows: list[tuple]) -> None:
    """Print ``rows``: as one table when every column fits the console's width, else one record per row."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    need = sum(max(len(c), min(CELL_CHARS, max((len(r[i]) for r in cells), default=0))) + 3
               for i, c in enumerate(columns)) + 1
    if need <= console.width:
        table = Table(*columns)
        for column in table.columns:  # long text wraps within its column; a header is never cut
            column.min_width = len(str(column.header))
        for row in cells:
            table.add_row(*row)
        console.print(table)
        return
    name_width = max(map(len, columns), default=0)
    for number, row in enumerate(cells, 1):
        record = Table(title=f"row {number}", title_justify="left", show_header=False)
        record.add_column(no_wrap=True, min_width=name_width, style="bold")
        # borders and padding take 7 characters
        record.add_column(no_wrap=True, overflow="ellipsis", max_width=max(8, console.width - name_width - 7))
        for name, value in zip(columns, row):
            record.add_row(name, value)
        console.print(record)


def write(rel: duckdb.DuckDBPyRelation, fmt: str, sink: BinaryIO) -> int:
    """Write every row of ``rel`` to ``sink`` as ``fmt``: csv (with a header), json (one object per line,
    DuckDB's JSON for each type) or parquet. Returns the rows written."""
    reader = rel.to_arrow_reader(BATCH_ROWS)
    rows = 0
    if fmt == "json":
        con = duckdb.connect()
        con.register("_result", reader)
        for batch in con.sql("SELECT to_json(_r)::VARCHAR AS line FROM _result _r").to_arrow_reader(BATCH_ROWS):
            sink.write("".join(f"{line}\n" for line in batch.column(0).to_pylist()).encode())
            rows += batch.num_rows
        con.close()
        return rows
    writer = (pa_csv.CSVWriter(sink, reader.schema) if fmt == "csv"
              else pq.ParquetWriter(sink, reader.schema, compression="zstd"))
    with writer:
        for batch in reader:
            writer.write_table(pa.Table.from_batches([batch]))
            rows += batch.num_rows
    return rows


def write_file(rel: duckdb.DuckDBPyRelation, fmt: str, path: Path) -> int:
    """``write`` into ``path``: a temp file beside it, renamed once complete."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as sink:
            rows = write(rel, fmt, sink)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def skipped_note(skipped: dict[str, str]) -> str:
    """One line: the views left out and why (each naming its file)."""
    return ("views not built, the others answer: " + "; ".join(f"{view} ({why})" for view, why in skipped.items())
            + "; run `rugs-pipeline doctor`")


def error_text(exc: duckdb.Error) -> str:
    """DuckDB's message whole: its hints (``Did you mean ...``, candidate bindings) and where in the SQL."""
    return "\n".join(line for line in str(exc).splitlines() if line.strip())
