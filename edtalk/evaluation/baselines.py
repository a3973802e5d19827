"""Methods to evaluate that need no model, and where every method's videos are found.

* ``GT`` — the test clip itself (the paper's ground-truth row: PSNR inf, SSIM 1, LMD 0).
* ``Still`` — the identity frame (first frame of another clip of the same identity, or
  of the clip itself when the identity has no other clip) repeated for the clip's
  length, with the clip's audio.

Each baseline is a folder ``<clip_id>.mp4`` + ``<clip_id>.wav`` (the driving audio the
suite scores sync against), like a ``generate`` stage's output.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from edtalk.data.media import read_frames, write_video
from metrics.suite import VIDEO_EXT

BASELINES = ("GT", "Still")


def identity_source(manifest: pd.DataFrame, clip_id: str) -> str:
    """The clip whose first frame is ``clip_id``'s identity frame: the first other clip
    (by id) of the same identity, else the clip itself.

    >>> m = pd.DataFrame({"clip_id": ["a1", "a2", "b1"], "identity": ["a", "a", "b"]})
    >>> identity_source(m, "a2"), identity_source(m, "b1")
    ('a1', 'b1')
    """
    identity = manifest.loc[manifest["clip_id"] == clip_id, "identity"].iloc[0]
    others = sorted(c for c in manifest.loc[manifest["identity"] == identity, "clip_id"] if c != clip_id)
    return others[0] if others else clip_id


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_gt(clips_dir: str | os.PathLike, clip_ids: list[str], out_dir: str | os.PathLike) -> Path:
    """``out_dir`` holding the listed ground-truth clips (hard links, else copies) + wavs."""
    src, out = Path(clips_dir), Path(out_dir)
    for cid in clip_ids:
        for ext in (".mp4", ".wav"):
            if (src / f"{cid}{ext}").exists():
                _link_or_copy(src / f"{cid}{ext}", out / f"{cid}{ext}")
    return out


def write_still(clips_dir: str | os.PathLike, manifest: pd.DataFrame, clip_ids: list[str],
                out_dir: str | os.PathLike) -> Path:
    """The Still baseline for ``clip_ids``; ``manifest`` (clip_id, identity, frames) may
    list clips of any split, so the identity frame can come from a non-test clip."""
    src, out = Path(clips_dir), Path(out_dir)
    frames_of = dict(zip(manifest["clip_id"], manifest["frames"]))
    for cid in clip_ids:
        first, _ = read_frames(src / f"{identity_source(manifest, cid)}.mp4", max_frames=1)
        still = np.repeat(first[:1], int(frames_of[cid]), axis=0)
        write_video(out / f"{cid}.mp4", still)
        _link_or_copy(src / f"{cid}.wav", out / f"{cid}.wav")
    return out


def discover(generate_dir: str | os.PathLike | None,
             extra: dict[str, str] | None = None) -> dict[str, Path]:
    """Method name -> folder: every subfolder of ``generate_dir`` holding videos, then the
    user's ``extra`` folders (a missing extra folder is an error, a missing
    ``generate_dir`` is not: the generation stages may not have run)."""
    found: dict[str, Path] = {}
    if generate_dir and Path(generate_dir).is_dir():
        for d in sorted(Path(generate_dir).iterdir()):
            if d.is_dir() and any(p.suffix.lower() in VIDEO_EXT for p in d.iterdir()):
                found[d.name] = d
    for name, path in (extra or {}).items():
        if not Path(path).is_dir():
            raise ValueError(f"evaluate.extra_methods[{name!r}]: {path} is not a folder")
        if name in found or name in BASELINES:
            raise ValueError(f"evaluate.extra_methods: method name {name!r} is already taken")
        found[name] = Path(path)
    return found
