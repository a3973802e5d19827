"""Pixel cache: every crop frame of the corpus as one memory-mapped uint8 array.

Layout
------
- ``<shards>/<clip_id>.npy``: one clip's frames (T, S, S, 3) uint8, written atomically by
  the per-clip task. A crashed stage keeps finished shards and redoes only the rest.
- ``pixels.npy``: all shards concatenated in a fixed clip order, shape (N, S, S, 3)
  uint8, written through ``np.lib.format.open_memmap`` (never fully in memory) to a
  temporary file and renamed into place.
- ``pixels_index.parquet``: clip_id, start, count: the clip's rows are start..start+count-1.
  FRAMES' ``pixel_index`` is the global row, so a frame's pixels are ``cache[pixel_index]``.

Why this layout
---------------
A plain ``.npy`` opened with ``np.load(mmap_mode="r")`` gives zero-copy random access:
the OS page cache is shared by every DataLoader worker (no per-worker copy, no decode),
a random batch costs one gather of S*S*3 bytes per frame, and the file needs nothing but
numpy to read. Decoding mp4 for random frames costs a seek to the previous keyframe and
a decode of every frame in between; per-frame PNGs cost a file open and a zlib inflate
per frame and put 10^5-10^6 small files under DVC. The price is disk space (raw pixels:
12 KiB per 64 px frame, 192 KiB per 256 px frame) and one copy at assembly, both cheap
next to training time. A single file (rather than only the shards) keeps one DVC output
and lets a batch mixing clips be one fancy-index read.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from edtalk.data import atomic

INDEX = pa.schema([("clip_id", pa.string()), ("start", pa.int64()), ("count", pa.int64())])


def shard_path(shard_dir: str | Path, clip_id: str) -> Path:
    """Where one clip's frames live before assembly."""
    return Path(shard_dir) / f"{clip_id}.npy"


def index_path(pixels_path: str | Path) -> Path:
    """The clip index stored beside ``pixels.npy``."""
    p = Path(pixels_path)
    return p.with_name(f"{p.stem}_index.parquet")


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"pixel cache holds uint8 (T, S, S, 3) frames, got {frames.dtype} {frames.shape}")
    return frames


def write_shard(shard_dir: str | Path, clip_id: str, frames: np.ndarray) -> Path:
    """Atomically save one clip's frames as ``<shard_dir>/<clip_id>.npy``."""
    frames = _check_frames(frames)
    target = shard_path(shard_dir, clip_id)
    with atomic.atomic_path(target) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.ascontiguousarray(frames), allow_pickle=False)
    return target


def assemble(shard_dir: str | Path, clip_ids: Sequence[str], out_path: str | Path,
             frame_shape: tuple[int, int, int] | None = None) -> pd.DataFrame:
    """Concatenate the shards of ``clip_ids`` (in that order) into ``out_path``.

    Returns (and writes beside ``out_path``) the index: clip_id, start, count.
    ``frame_shape`` (S, S, 3) is needed only when ``clip_ids`` is empty.
    """
    shards = [np.load(shard_path(shard_dir, c), mmap_mode="r") for c in clip_ids]
    shapes = {s.shape[1:] for s in shards}
    if len(shapes) > 1:
        raise ValueError(f"shards disagree on frame shape: {sorted(shapes)}")
    if shards:
        frame_shape = tuple(shards[0].shape[1:])  # type: ignore[assignment]
    elif frame_shape is None:
        raise ValueError("no shards: give frame_shape for the empty cache")
    counts = np.array([len(s) for s in shards], dtype=np.int64)
    starts = np.cumsum(counts) - counts
    total = int(counts.sum())
    with atomic.atomic_path(out_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                        shape=(total, *frame_shape))
        for start, shard in zip(starts, shards):
            out[start:start + len(shard)] = shard
        out.flush()
        del out
    index = pd.DataFrame({"clip_id": list(clip_ids), "start": starts, "count": counts})
    with atomic.atomic_path(index_path(out_path)) as tmp:
        pq.write_table(pa.Table.from_pandas(index, schema=INDEX, preserve_index=False), tmp)
    return index


class PixelCache:
    """Read-only random access to ``pixels.npy`` (memory-mapped; nothing is loaded upfront).

    Safe to hand to DataLoader workers: pickling sends only the path and each process
    maps the file itself.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._array: np.ndarray | None = None
        idx = index_path(self.path)
        self.index = (pq.read_table(idx).to_pandas() if idx.exists()
                      else pd.DataFrame({"clip_id": [], "start": [], "count": []}))
        self._rows = {c: (int(s), int(n)) for c, s, n in
                      zip(self.index["clip_id"], self.index["start"], self.index["count"])}

    @property
    def array(self) -> np.ndarray:
        """The memory-mapped (N, S, S, 3) uint8 array (opened on first use per process)."""
        if self._array is None:
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape[1:])

    def __getitem__(self, rows: Any) -> np.ndarray:
        """Frames at ``rows`` (int, slice or integer array) as an in-memory uint8 array."""
        return np.array(self.array[rows], dtype=np.uint8, copy=True)

    def clip_rows(self, clip_id: str) -> np.ndarray:
        """Global rows of one clip's frames, in frame order."""
        if clip_id not in self._rows:
            raise KeyError(f"clip {clip_id!r} is not in the pixel cache {self.path}")
        start, count = self._rows[clip_id]
        return np.arange(start, start + count, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_array"] = None  # a memmap would pickle its whole contents
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
