"""Atomic file writes: write to a temporary sibling, then rename over the target.

A reader (or a re-run after ``kill -9``) therefore sees either the old file or the
complete new one, never a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Temporary files are hidden and carry this mark, so that a crash leaves nothing that
# looks like a finished output and ``remove_partials`` can sweep them.
PARTIAL_MARK = ".part-"


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
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
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
