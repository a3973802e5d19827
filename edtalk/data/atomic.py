"""Atomic file writes: write to a temporary sibling, then rename over the target.

A reader (or a re-run after ``kill -9``) therefore sees either the old file or the
complete new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Temporary files are hidden and carry this mark, so that a crash leaves nothing that
# looks like a finished output and ``remove_partials`` can sweep them.
PARTIAL_MARK = ".part-"

# Errors that say the output device is out of room, not that the input was bad.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFull(OSError):
    """An output could not be written for lack of space. Never a clip's fault: stages let
    it fail the run (after removing the partial file) rather than quarantine the clip."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (FFmpeg's errors included) means the output device is full."""
    return isinstance(exc, OSError) and exc.errno in _NO_ROOM


def disk_full(target: str | os.PathLike, exc: BaseException) -> DiskFull:
    """A ``DiskFull`` naming the file, the folder and the space left there."""
    folder = Path(target).parent
    try:
        free = f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB free"
    except OSError:
        free = "free space unknown"
    return DiskFull(errno.ENOSPC, f"no space left to write {Path(target).name} in {folder} "
                                  f"({free}); free some space or point the stage's output "
                                  f"folder at a larger disk, then re-run (finished clips are kept)")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it onto ``target`` on success.

    The temporary name keeps the target's suffix (or ``suffix``) so that writers that
    pick a format from the extension (ffmpeg, numpy, pandas) behave as for the target.
    On an exception the temporary file is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}{PARTIAL_MARK}",
        suffix=suffix if suffix is not None else target.suffix,
        dir=target.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if is_disk_full(exc) and not isinstance(exc, DiskFull):
            raise disk_full(target, exc) from exc
        raise


def write_bytes(target: str | os.PathLike, data: bytes) -> None:
    """Atomically write ``data`` to ``target``."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | os.PathLike, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``target``."""
    write_bytes(target, text.encode("utf-8"))


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    write_text(target, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def remove_partials(directory: str | os.PathLike) -> int:
    """Delete temporary files a killed writer left in ``directory``; return how many."""
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    count = 0
    for path in directory.iterdir():
        if path.name.startswith(".") and PARTIAL_MARK in path.name and path.is_file():
            path.unlink(missing_ok=True)
            count += 1
    return count
