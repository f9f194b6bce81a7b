"""Small local-filesystem helpers every floor shares: atomic writes (temp + fsync + rename), fsync of a folder.

A local temp file (``.<name>.<pid>.tmp``) is flocked by its writer from its creation until after
its rename, so ``remove_stale_temps`` tells a live writer's temp from one left by a writer that
was killed mid-write: the kernel drops the lock when a process dies, however it dies. (A pid or
an age cannot tell: pids are reused, and writers on other machines share an NFS lake.)
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


TEMP_GLOB = ".*.tmp"


@contextmanager
def writer_temp(path: Path) -> Iterator[int]:
    """A new temp file beside ``path``, created and flocked; yields its descriptor.

    The lock is released only when the ``with`` ends (after the caller's rename) or the process dies. Write
    through this descriptor (``open(fd, closefd=False)``), never another: on NFS a flock is a POSIX lock,
    which closing any descriptor of the file releases.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    while True:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_nlink:
            break
        os.close(fd)  # a sweep removed the name between our open and our lock: create it again
    try:
        yield fd
    except BaseException:
        tmp.unlink(missing_ok=True)  # still ours (locked): a failed write leaves nothing behind
        raise
    finally:
        os.close(fd)


def temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temp files in ``folder`` that no live writer holds (see the module docstring)."""
    return [tmp for tmp in (sorted(folder.glob(TEMP_GLOB)) if folder.is_dir() else []) if stale_temp(tmp, remove=True)]


def stale_temp(tmp: Path, *, remove: bool = False) -> bool:
    """Whether no live writer holds ``tmp`` (and, with ``remove``, remove it while that is certain)."""
    try:
        fd = os.open(tmp, os.O_RDONLY)
    except FileNotFoundError:
        return False  # renamed into place meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # its writer may have renamed it into place and let go between our open and our lock
        try:
            same = os.stat(tmp).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False
        if same and remove:
            tmp.unlink()
        return same
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through ``write(file)`` so readers see the old file or the new one, never a part."""
    with writer_temp(path) as fd:
        with open(fd, "wb", closefd=False) as fh:
            write(fh)
        os.fsync(fd)
        os.replace(temp_path(path), path)
    fsync_dir(path.parent)
