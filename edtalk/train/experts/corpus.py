"""The features stage's output as per-clip arrays for evaluator training.

``load_corpus`` reads ``frames.parquet`` (FRAMES schema) and the pixel cache and returns
one :class:`Clip` per clip of the requested splits: frames (T x S x S x 3 RGB uint8),
MFCC (13 x 4T, the SyncNet MFCC steps in time order), landmarks (T x 68 x 2 crop px),
their validity mask, and the clip's labels.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from edtalk.data.pixel_cache import PixelCache
from edtalk.data.schema import EMOTIONS, N_LANDMARKS
from edtalk.experts.syncnet import mfcc_from_rows

# The features stage's files the corpus is read from (a training run's fingerprint hashes them).
CORPUS_FILES = ("frames.parquet", "pixels.npy")


@dataclass
class Clip:
    clip_id: str
    split: str
    identity: str
    emotion: str
    frames: np.ndarray         # T x S x S x 3 uint8 RGB
    mfcc: np.ndarray           # 13 x 4T float32
    landmarks: np.ndarray      # T x 68 x 2 float32, crop pixels
    landmarks_valid: np.ndarray  # T bool

    @property
    def label(self) -> int:
        """Emotion class index (``EMOTIONS`` order), -1 when unknown."""
        return EMOTIONS.index(self.emotion) if self.emotion in EMOTIONS else -1


def load_corpus(features_dir: str | os.PathLike, splits: Iterable[str] = ("train",)) -> list[Clip]:
    """Clips of ``splits`` from a features stage output folder, sorted by clip id."""
    features_dir = Path(features_dir)
    splits = tuple(splits)
    cols = ["clip_id", "frame", "split", "identity", "emotion", "landmarks",
            "landmarks_valid", "mfcc", "pixel_index"]
    frames_file, pixels_file = (features_dir / name for name in CORPUS_FILES)
    df = pd.read_parquet(frames_file, columns=cols,
                         filters=[("split", "in", list(splits))])
    if df.empty:
        raise ValueError(f"no frames of split(s) {splits} in {frames_file}")
    cache = PixelCache(pixels_file)
    clips = []
    for clip_id, part in df.sort_values(["clip_id", "frame"]).groupby("clip_id", sort=True):
        first = part.iloc[0]
        clips.append(Clip(
            clip_id=str(clip_id), split=str(first["split"]), identity=str(first["identity"]),
            emotion=str(first["emotion"]),
            frames=cache[part["pixel_index"].to_numpy()],
            mfcc=mfcc_from_rows(np.stack(part["mfcc"].to_numpy()).astype(np.float32)),
            landmarks=np.stack(part["landmarks"].to_numpy()).astype(np.float32)
            .reshape(len(part), N_LANDMARKS, 2),
            landmarks_valid=part["landmarks_valid"].to_numpy(bool)))
    return clips


def valid_landmark_frames(clips: list[Clip]) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of ``clips`` with valid landmarks, and those landmarks (crop pixels)."""
    frames = np.concatenate([c.frames[c.landmarks_valid] for c in clips])
    points = np.concatenate([c.landmarks[c.landmarks_valid] for c in clips])
    if not len(frames):
        raise ValueError("no frame with valid landmarks")
    return frames, points


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch; return a NumPy generator for sampling."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def audio_paths(crop_dir: str | os.PathLike, features_dir: str | os.PathLike) -> dict[str, Path]:
    """clip id -> its 16 kHz wav (the features stage's clips.parquet, paths under ``crop_dir``)."""
    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet", columns=["clip_id", "audio_path"])
    return {c: Path(crop_dir) / p for c, p in zip(manifest["clip_id"], manifest["audio_path"]) if p}
