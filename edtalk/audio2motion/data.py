"""Audio-to-Motion training data: clips joined with the weight cache, the per-emotion mean
W^e and the frozen transcript embeddings."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from edtalk.data import atomic
from edtalk.data.schema import EMOTIONS

from . import weights_cache


@dataclass
class ClipData:
    """One clip's aligned audio features, cached weights and labels."""
    clip_id: str
    split: str
    emotion: str
    transcript: str
    mfcc: np.ndarray          # (T, 4, 13)
    mel: np.ndarray           # (T, 4, 80)
    mouth: np.ndarray         # (T, 20) W^m
    pose: np.ndarray          # (T, 6)  W^p
    exp: np.ndarray           # (T, 10) W^e
    pixel_index: np.ndarray   # (T,) rows of the pixel cache
    audio_path: str = ""
    identity: str = ""        # speaker / synthetic identity ("" when the manifest has none)

    def __len__(self) -> int:
        return len(self.mouth)

    def features(self, kind: str) -> np.ndarray:
        return self.mfcc if kind == "mfcc" else self.mel

    @property
    def label(self) -> int:
        return EMOTIONS.index(self.emotion) if self.emotion in EMOTIONS else -1


def load_clips(features_dir: str | Path, weights_path: str | Path,
               splits: Sequence[str] = ("train",), crop_dir: str | Path | None = None) -> list[ClipData]:
    """Clips of ``splits``: FRAMES features joined with the weight cache, sorted by clip id."""
    root = Path(features_dir)
    frames = pd.read_parquet(root / "frames.parquet",
                             columns=["clip_id", "frame", "split", "mfcc", "mel", "pixel_index"],
                             filters=[("split", "in", list(splits))])
    weights = weights_cache.read(weights_path, splits)
    df = frames.merge(weights.drop(columns="split"), on=["clip_id", "frame"], how="inner")
    manifest = pd.read_parquet(root / "clips.parquet").set_index("clip_id")
    out = []
    for clip_id, part in df.sort_values(["clip_id", "frame"]).groupby("clip_id", sort=True):
        meta = manifest.loc[clip_id]
        n = len(part)
        audio = str(Path(crop_dir) / meta["audio_path"]) if crop_dir is not None and meta["audio_path"] else ""
        out.append(ClipData(
            clip_id=str(clip_id), split=str(part["split"].iloc[0]), emotion=str(meta["emotion"]),
            transcript=str(meta["transcript"] or ""),
            mfcc=np.stack(part["mfcc"].to_numpy()).astype(np.float32).reshape(n, 4, 13),
            mel=np.stack(part["mel"].to_numpy()).astype(np.float32).reshape(n, 4, -1),
            mouth=np.stack(part["w_mouth"].to_numpy()).astype(np.float32),
            pose=np.stack(part["w_pose"].to_numpy()).astype(np.float32),
            exp=np.stack(part["w_exp"].to_numpy()).astype(np.float32),
            pixel_index=part["pixel_index"].to_numpy(np.int64), audio_path=audio,
            identity=str(meta["identity"]) if pd.notna(meta.get("identity")) else ""))
    if not out:
        raise ValueError(f"no clips of split(s) {list(splits)} in {root} joined with {weights_path}")
    return out


def clip_expressions(clips: Sequence[ClipData]) -> torch.Tensor:
    """(N, 10) each clip's mean W^e: the expression predictor's target, the pose offset's covariate."""
    return torch.from_numpy(np.stack([c.exp.mean(0) for c in clips]))


def emotion_means(clips: Sequence[ClipData]) -> torch.Tensor:
    """(8, 10) mean of the per-clip mean W^e for each emotion (NaN rows for absent classes)."""
    out = torch.full((len(EMOTIONS), clips[0].exp.shape[1]), float("nan"))
    for k, name in enumerate(EMOTIONS):
        rows = [c.exp.mean(0) for c in clips if c.emotion == name]
        if rows:
            out[k] = torch.from_numpy(np.mean(rows, axis=0))
    return out


def transcript_embeddings(texts: Sequence[str], encode: Callable[[list[str]], torch.Tensor],
                          backend: str, cache: str | Path | None = None) -> torch.Tensor:
    """E_T(T) of each transcript (frozen), reusing rows cached in ``cache`` (npz) for this backend."""
    known: dict[str, np.ndarray] = {}
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["backend"]) == backend:
                known = dict(zip(z["texts"].tolist(), z["emb"]))
    todo = sorted({t for t in texts if t not in known})
    if todo:
        for t, e in zip(todo, encode(todo).numpy()):
            known[t] = e
        if cache is not None:
            keys = sorted(known)
            with atomic.atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, backend=np.array(backend), texts=np.array(keys),
                         emb=np.stack([known[k] for k in keys]).astype(np.float32))
    return torch.from_numpy(np.stack([known[t] for t in texts]).astype(np.float32))
