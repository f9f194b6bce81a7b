"""Shared test fixtures.

Real recordings are other people's data: they are read in place from
``$RUGS_REAL_FIXTURES`` (default ``../shared/fixtures/real`` beside the repo), never
copied into the project. Tests that need them skip, saying why, where they are absent.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from rugs_pipeline.capture.importer import import_recordings
from rugs_pipeline.store import landing
from rugs_pipeline.store.layout import Store
from rugs_pipeline.testing import FIXTURES, Run, run_pipeline, tz_of, unpacked_golden

REPO_ROOT = Path(__file__).resolve().parent.parent

# `make test` runs the suite inside make: without this, every `make demo`/`make stop` a test starts would be a
# sub-make (its errors read `make[1]: ...`, and it would share the outer make's flags), not what an operator runs.
for _variable in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
    os.environ.pop(_variable, None)


def real_fixtures_dir() -> Path:
    return Path(os.environ.get("RUGS_REAL_FIXTURES") or REPO_ROOT.parent / "shared" / "fixtures" / "real")


@pytest.fixture(scope="session")
def real_dir() -> Path:
    folder = real_fixtures_dir()
    if not (folder / "README.md").is_file():
        pytest.skip(
            f"real recordings not found at {folder} (set RUGS_REAL_FIXTURES to their folder); "
            "simulator-based tests still run"
        )
    return folder


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "rugs_data"
    monkeypatch.setenv("RUGS_DATA_DIR", str(root))
    return root


# --- the recordings run through the pipeline, once per test module

@pytest.fixture(scope="module")
def real(request, tmp_path_factory):
    """real(name) -> Run of that recording, imported once per module: "golden" in any clone, a real
    recording where ``../shared`` holds it (else the test skips, saying where it looked)."""
    cache: dict[str, Run] = {}

    def get(name: str) -> Run:
        if name not in cache:
            folder = tmp_path_factory.mktemp(name)
            if name == "golden":
                files = [unpacked_golden(folder)]
            else:
                real_dir = request.getfixturevalue("real_dir")
                files = sorted(real_dir.glob(FIXTURES[name][0]))
                assert files, f"no fixture matches {FIXTURES[name][0]} in {real_dir}"
            cache[name] = run_pipeline(files, folder / "data", tz_of(name))
        return cache[name]

    return get


@pytest.fixture(scope="module")
def real_store(real_dir, tmp_path_factory) -> tuple[Store, list[str]]:
    store = Store(tmp_path_factory.mktemp("real") / "rugs_data")
    days = set()
    for pattern, tz in FIXTURES.values():
        reports = import_recordings(sorted(real_dir.glob(pattern)), store.spool_dir, tz=tz)
        days |= {seg.day for rep in reports for seg in rep.segments}
    for day in sorted(days):
        landing.land_day(store, day)
    return store, sorted(days)


# The longest files (each a minute or more of waiting on daemons, subprocesses and a browser) go
# first, so that under `make test`'s two workers (pytest-xdist, --dist loadfile) none of them starts
# last and runs on alone while the other worker idles. Other files keep their collected order.
LONGEST_FIRST = ("test_ui_browser.py", "test_readme.py", "test_consumers.py", "test_s3.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FIRST)))  # stable: file order kept


@pytest.fixture()
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill ({out.stderr.strip()}); needs root")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
