"""Files that are whole or absent, and folders with one writer at a time.

Every output is written to a temporary file in its folder, fsynced, renamed over its name, and the
folder fsynced: after a crash or a power loss a name holds the old content or the new, never a part.
What a crash can leave is a temporary file, which `sweep_temporaries` removes on the next start.
A results folder (an eval run, a store) is held by a lock file while a run writes into it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import MemtokError

logger = logging.getLogger(__name__)
LOCK_NAME = ".memtok.lock"


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Call `write(tmp_path)` and move the result onto `path`, durably; on any failure nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def atomic_dir(target: Path, fill: Callable[[Path], object]) -> None:
    """Call `fill(tmp_folder)` and rename the folder onto `target`, so a crash never leaves half of it;
    if another process got there first, its folder is kept."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        fill(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` survive a power loss."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sweep_temporaries(folder: Path) -> int:
    """Remove what `atomic_write` left behind when a run was killed mid-write; returns how many."""
    stale = list(Path(folder).rglob(".*.tmp")) if Path(folder).is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return len(stale)


def set_aside(path: Path, why: str) -> Path:
    """Rename a damaged file out of the way (kept for inspection, no longer read) and say so."""
    corrupt = path.with_name(path.name + ".corrupt")
    os.replace(path, corrupt)
    fsync_dir(path.parent)
    logger.warning("set aside %s (%s) as %s; what it held is done again", path, why, corrupt.name)
    return corrupt


@contextmanager
def lock_folder(folder: Path) -> Iterator[None]:
    """Hold `folder` for this run; another run on it is refused at once, not queued. The lock is the
    operating system's, so a killed run releases it too."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_NAME))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise MemtokError(f"{folder} is in use by another memtok run; wait for it to end or use another folder") \
            from None
    try:
        yield
    finally:
        lock.release()
