"""Resumable per-clip work: a clip is done when its outputs and a matching stamp exist.

A stage writes each clip's outputs atomically, then a small stamp file recording a
fingerprint of everything the result depends on (input checksum, stage parameters,
code version). A re-run after a crash skips clips whose stamp matches and redoes the
rest; a parameter change alters the fingerprint, so stale results are never reused.

``fingerprint`` and ``file_sha256`` are the project's one config fingerprint and one file
hash: training runs key their checkpoints with them too (``edtalk.train.resumable``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from edtalk.data import atomic


def fingerprint(*parts: Any) -> str:
    """Stable sha256 of JSON-serialisable parts (dict keys sorted)."""
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_key(path: str | Path) -> str:
    """A file as a ``fingerprint`` part: the sha256 of its bytes, or "absent"."""
    return file_sha256(path) if Path(path).is_file() else "absent"


class StampDir:
    """Stamps for one stage, stored as ``<dir>/.stamps/<clip_id>.json``."""

    def __init__(self, directory: str | Path) -> None:
        self.root = Path(directory) / ".stamps"

    def _path(self, clip_id: str) -> Path:
        return self.root / f"{clip_id}.json"

    def is_done(self, clip_id: str, key: str, outputs: list[Path] | None = None) -> bool:
        """True when the clip's stamp matches ``key`` and every listed output exists."""
        path = self._path(clip_id)
        if not path.exists():
            return False
        try:
            stamp = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            return False
        return stamp.get("key") == key and all(Path(p).exists() for p in (outputs or []))

    def load(self, clip_id: str) -> dict[str, Any]:
        """The payload stored with a clip's stamp (e.g. its quarantine record)."""
        return json.loads(self._path(clip_id).read_text()).get("payload", {})

    def mark(self, clip_id: str, key: str, payload: dict[str, Any] | None = None) -> None:
        """Atomically record that ``clip_id`` finished with fingerprint ``key``."""
        atomic.write_json(self._path(clip_id), {"key": key, "payload": payload or {}})

    def prune(self, keep: set[str]) -> None:
        """Forget stamps of clips no longer in the stage's input."""
        if self.root.is_dir():
            for path in self.root.glob("*.json"):
                if path.stem not in keep:
                    path.unlink(missing_ok=True)


def code_digest(*packages: str | Path) -> str:
    """sha256 over the Python sources of ``packages`` (directories or files).

    Part of every stage fingerprint, so that changed code never reuses stale per-clip
    results even though each clip's outputs persist across runs.
    """
    digest = hashlib.sha256()
    for package in packages:
        package = Path(package)
        files = sorted(package.rglob("*.py")) if package.is_dir() else [package]
        for path in files:
            digest.update(str(path.relative_to(package.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def array_digest(array: Any) -> str:
    """sha256 of an array's bytes (C order)."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


# Per-clip files are named <clip_id><one of these>; longest first so ".gt.parquet" wins.
CLIP_SUFFIXES = (".gt.parquet", ".parquet", ".mp4", ".wav", ".npy", ".json")


def clip_id_of(path: Path) -> str | None:
    """The clip id a per-clip file belongs to, or None for other files."""
    for suffix in CLIP_SUFFIXES:
        if path.name.endswith(suffix):
            return path.name[: -len(suffix)]
    return None


def prune_clip_files(directory: str | Path, keep: set[str]) -> int:
    """Delete per-clip files in ``directory`` whose clip is not in ``keep``; return the count."""
    directory = Path(directory)
    removed = 0
    if directory.is_dir():
        for path in directory.iterdir():
            clip = clip_id_of(path)
            if path.is_file() and clip is not None and clip not in keep:
                path.unlink(missing_ok=True)
                removed += 1
    return removed
