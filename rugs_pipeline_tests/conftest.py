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

REPO_ROOT = Path(__file__).resolve().parent.parent


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
