#!/usr/bin/env python
"""Regenerate the golden day (rugs_pipeline_tests/golden/): the recording and its expected rows.

    .venv/bin/python scripts/golden_day.py

The same seed gives the same bytes (see rugs_pipeline/tools/bench/golden.py). Run it after a change to the
simulator or to the row-at-a-time deriver, then review the diff of the expected rows and commit both.
"""

import tempfile
from pathlib import Path

from rugs_pipeline.tools.bench import golden

FOLDER = Path(__file__).resolve().parent.parent / "rugs_pipeline_tests" / "golden"

if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as work:
        path, rows = golden.write_golden(FOLDER, Path(work))
    print(f"{path} ({path.stat().st_size:,} bytes); expected rows: "
          + ", ".join(f"{doc_type} {n}" for doc_type, n in rows.items()))
