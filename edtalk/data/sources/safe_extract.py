"""Listing and extracting user-supplied archives (.tar, .tar.gz, .tgz, .zip) safely.

An archive is checked as a whole before anything is written: one member with an
absolute path, a ``..`` component, a link that points outside the extraction root, or
a device/FIFO entry refuses the entire archive with ``Reason.UNSAFE_ARCHIVE``. The
extraction itself goes to a temporary sibling directory that is renamed into place at
the end, so a crash never leaves a half-extracted tree under the final name, and it
runs under a file lock so that parallel workers (threads or Dask processes) extract
an archive once.
"""

from __future__ import annotations

import posixpath
import shutil
import stat
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from filelock import FileLock

from edtalk.data import atomic
from edtalk.data.quarantine import ClipRejected, Reason

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def is_archive(path: Path) -> bool:
    """True for the archive kinds this module handles (by name)."""
    name = path.name.lower()
    return path.is_file() and name.endswith(ARCHIVE_SUFFIXES)


def archive_stem(path: Path) -> str:
    """``M003.tar.gz`` -> ``M003``."""
    name = path.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


@dataclass(frozen=True)
class Member:
    """One archive entry: its normalised name and what kind of entry it is."""

    name: str
    kind: str          # file | dir | symlink | hardlink | special
    link: str = ""     # link target for symlink/hardlink


def unsafe(archive: Path, detail: str) -> ClipRejected:
    """The rejection for an archive refused as a whole."""
    return ClipRejected(Reason.UNSAFE_ARCHIVE, f"{archive.name}: {detail}")


def read_members(archive: Path) -> list[Member]:
    """Every entry of ``archive`` (headers only, nothing extracted).

    Raises ClipRejected(CORRUPT) when the archive cannot be read.
    """
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                return [_zip_member(info) for info in zf.infolist()]
        with tarfile.open(archive) as tf:
            return [_tar_member(info) for info in tf.getmembers()]
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot read archive {archive.name}: {exc}") from exc


def _tar_member(info: tarfile.TarInfo) -> Member:
    if info.isreg():
        kind = "file"
    elif info.isdir():
        kind = "dir"
    elif info.issym():
        kind = "symlink"
    elif info.islnk():
        kind = "hardlink"
    else:
        kind = "special"  # character/block devices, FIFOs, anything else
    return Member(info.name, kind, info.linkname if kind in ("symlink", "hardlink") else "")


def _zip_member(info: zipfile.ZipInfo) -> Member:
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return Member(info.filename, "symlink", "?")  # target is the entry's data; refused below
    if info.is_dir():
        return Member(info.filename, "dir")
    if mode and not stat.S_ISREG(mode):
        return Member(info.filename, "special")
    return Member(info.filename, "file")


def _escapes(name: str) -> str | None:
    """Why ``name`` (an entry path) would land outside the root, or None if it stays inside."""
    if not name:
        return "an entry has an empty name"
    if name.startswith(("/", "\\")) or PurePosixPath(name).is_absolute() or (
            len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        return f"parent-directory component in {name!r}"
    return None


def member_problem(member: Member) -> str | None:
    """Why ``member`` could write outside the extraction root, or None if it cannot."""
    problem = _escapes(member.name)
    if problem is not None:
        return problem
    if member.kind == "special":
        return f"device or FIFO entry {member.name!r}"
    if member.kind == "symlink":
        if member.link == "?":
            return f"symbolic link {member.name!r} in a zip archive"
        # A symlink's target is relative to the directory holding the link.
        base = posixpath.dirname(member.name.replace("\\", "/"))
        target = posixpath.normpath(posixpath.join(base, member.link))
        if member.link.startswith("/") or target == ".." or target.startswith("../"):
            return f"symbolic link {member.name!r} -> {member.link!r} leaves the archive"
    # A hard link's target is a path from the archive root.
    if member.kind == "hardlink" and _escapes(member.link) is not None:
        return f"hard link {member.name!r} -> {member.link!r} leaves the archive"
    return None


def check_members(archive: Path, members: list[Member]) -> None:
    """Raise ClipRejected(UNSAFE_ARCHIVE) if any member could escape the root.

    Every entry is checked and each unsafe one is named in the detail (the first ten),
    so a user sees the whole problem at once rather than one entry per run.
    """
    problems = [p for m in members if (p := member_problem(m)) is not None]
    if len(problems) == 1:
        raise unsafe(archive, problems[0])
    if problems:
        shown = "; ".join(problems[:10]) + ("; ..." if len(problems) > 10 else "")
        raise unsafe(archive, f"{len(problems)} unsafe entries: {shown}")


def file_names(members: list[Member]) -> list[str]:
    """Normalised names of the regular files (``./a/b`` -> ``a/b``)."""
    return [posixpath.normpath(m.name.replace("\\", "/")) for m in members if m.kind == "file"]


def safe_extract(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` once (checked, atomic, locked); return ``dest``.

    A ``dest`` that already exists is taken as a finished extraction (it only ever
    appears by the final rename).
    """
    if dest.is_dir():
        return dest
    # Checked before anything (even the lock file) is created: a hostile archive leaves no trace.
    check_members(archive, read_members(archive))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(dest) + ".lock"):
        if dest.is_dir():  # another worker finished it while we waited
            return dest
        # Holding the lock, any earlier partial extraction is a crashed run's leftover.
        for stale in dest.parent.glob(f".{dest.name}.part-*"):
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.part-", dir=dest.parent))
        try:
            _extract_into(archive, tmp)
            tmp.rename(dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest


def _extract_into(archive: Path, root: Path) -> None:
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(root)  # names were checked above; zipfile also strips ``..``
        else:
            with tarfile.open(archive) as tf:
                # The stdlib "data" filter repeats the checks (defence in depth) and drops
                # permission bits such as setuid.
                tf.extractall(root, filter="data")
    except tarfile.FilterError as exc:
        raise unsafe(archive, str(exc)) from exc
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        if atomic.is_disk_full(exc):  # the work folder is full: not the archive's fault
            raise atomic.disk_full(root / archive.name, exc) from exc
        raise ClipRejected(Reason.CORRUPT, f"cannot extract {archive.name}: {exc}") from exc
