"""Per-frame features of cropped clips: landmarks, audio, labels, and the pixel cache.

Per clip (``clip_features`` / ``process_clip``), from the crop stage's mp4 + wav:

- 68 landmarks in crop pixels: ``groundtruth`` carries the synthetic ground truth
  through the crop mapping (exact); ``dlib`` / ``face_alignment`` run on the crop frames,
  and frames without exactly one face get ``landmarks_valid`` False and NaN points;
- SyncNet MFCC and the 100 Hz log mel, 4 steps (10 ms) per 25 fps frame;
- labels (split, identity, emotion, intensity) from the manifest.

``process_clip`` writes a clip's table and pixel shard atomically (resumable stage);
``assemble`` joins all clips into ``frames.parquet`` (FRAMES schema) and ``pixels.npy``
with ``pixel_index`` = the frame's row in the pixel cache.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from edtalk.data import atomic, media, pixel_cache
from edtalk.data.audio_features import mel_100hz, mfcc_syncnet, per_video_frame
from edtalk.data.crop import CropMapping
from edtalk.data.detect import (
    CROP_SHORT_SIDE, Detector, groundtruth_array, landmarks_of, make_detector,
)
from edtalk.data.schema import FRAMES, N_LANDMARKS, conform

LABELS = ("split", "identity", "emotion", "intensity")
N_MELS = 80  # fixed by the FRAMES schema (4 x 80 values per frame)


def groundtruth_crop_landmarks(gt: pd.DataFrame, boxes: pd.DataFrame, size: int,
                               source_frames: np.ndarray | None = None) -> np.ndarray:
    """One clip's GROUNDTRUTH landmarks carried into crop pixels, (T_out, 68, 2).

    ``boxes`` is the clip's BOXES table; ``source_frames`` maps output to source frames
    (identity for 25 fps sources, which the synthetic corpus is).
    """
    src = groundtruth_array(gt)
    mapping = CropMapping.from_boxes(boxes, size, source_frames)
    return mapping.source_to_crop(src)


def crop_detector(name: str, **kwargs: Any) -> Detector:
    """A ``dlib`` / ``face_alignment`` detector sized for face crops (faster than for raw frames)."""
    if name == "groundtruth":
        raise ValueError("groundtruth landmarks come from groundtruth_crop_landmarks, not a detector")
    return make_detector(name, short_side=kwargs.pop("short_side", CROP_SHORT_SIDE), **kwargs)


def detect_landmarks(frames: np.ndarray, detector: Detector) -> np.ndarray:
    """(T, 68, 2) landmarks per crop frame; NaN where not exactly one face is found."""
    out = np.full((len(frames), N_LANDMARKS, 2), np.nan)
    for i, frame in enumerate(frames):
        lm = landmarks_of(detector, frame, index=i)
        if lm is not None:
            out[i] = lm
    return out


def audio_per_frame(audio: np.ndarray, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(T, 52) MFCC and (T, 320) mel: 4 x 10 ms steps per frame, flattened step-major."""
    mfcc = per_video_frame(mfcc_syncnet(audio), n_frames).reshape(n_frames, -1)
    mel = per_video_frame(mel_100hz(audio, n_mels=N_MELS), n_frames).reshape(n_frames, -1)
    return mfcc.astype(np.float32), mel.astype(np.float32)


def clip_features(
    clip_id: str,
    video_path: str | Path,
    wav_path: str | Path,
    labels: Mapping[str, Any],
    landmarks: str = "groundtruth",
    crop_landmarks: np.ndarray | None = None,
    detector: Detector | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Features of one cropped clip: its FRAMES rows and its (T, S, S, 3) uint8 frames.

    ``landmarks`` = ``groundtruth`` needs ``crop_landmarks`` (T, 68, 2) in crop pixels
    (``groundtruth_crop_landmarks``); other backends need ``detector``. ``pixel_index``
    is the clip-local frame index until ``assemble`` offsets it.
    """
    frames, _ = media.read_frames(video_path)
    n = len(frames)
    if landmarks == "groundtruth":
        if crop_landmarks is None:
            raise ValueError("groundtruth landmarks need crop_landmarks (see groundtruth_crop_landmarks)")
        lms = np.full((n, N_LANDMARKS, 2), np.nan)
        given = np.asarray(crop_landmarks, dtype=np.float64).reshape(-1, N_LANDMARKS, 2)[:n]
        lms[: len(given)] = given
    else:
        if detector is None:
            raise ValueError(f"landmark backend {landmarks!r} needs a detector")
        lms = detect_landmarks(frames, detector)
    valid = np.isfinite(lms).all(axis=(1, 2))

    audio = media.read_audio(wav_path)
    mfcc, mel = audio_per_frame(audio, n)
    flat = lms.reshape(n, -1).astype(np.float32)
    table = pd.DataFrame({
        "clip_id": clip_id,
        "frame": np.arange(n, dtype=np.int32),
        **{k: labels[k] for k in LABELS},
        "landmarks": list(flat),
        "landmarks_valid": valid,
        "mfcc": list(mfcc),
        "mel": list(mel),
        "pixel_index": np.arange(n, dtype=np.int64),
    })[FRAMES.names]
    return table, frames


def table_path(shard_dir: str | Path, clip_id: str) -> Path:
    """Where one clip's FRAMES rows wait for assembly."""
    return Path(shard_dir) / f"{clip_id}.parquet"


def process_clip(shard_dir: str | Path, clip_id: str, video_path: str | Path,
                 wav_path: str | Path, labels: Mapping[str, Any], **kwargs: Any) -> list[Path]:
    """``clip_features`` + atomic writes of the clip's table and pixel shard; returns both paths."""
    table, frames = clip_features(clip_id, video_path, wav_path, labels, **kwargs)
    shard = pixel_cache.write_shard(shard_dir, clip_id, frames)
    target = table_path(shard_dir, clip_id)
    with atomic.atomic_path(target) as tmp:
        pq.write_table(conform(table, FRAMES), tmp)
    return [target, shard]


def assemble(shard_dir: str | Path, clip_ids: Sequence[str], frames_out: str | Path,
             pixels_out: str | Path, frame_shape: tuple[int, int, int] | None = None
             ) -> pd.DataFrame:
    """Join the clips' shards (in ``clip_ids`` order) into ``frames_out`` (FRAMES parquet)
    and ``pixels_out`` (pixel cache); ``pixel_index`` becomes the global row."""
    index = pixel_cache.assemble(shard_dir, clip_ids, pixels_out, frame_shape)
    parts = []
    for clip_id, start in zip(index["clip_id"], index["start"]):
        part = pq.read_table(table_path(shard_dir, clip_id), schema=FRAMES).to_pandas()
        part["pixel_index"] = part["pixel_index"].to_numpy() + int(start)
        parts.append(part)
    table = (pd.concat(parts, ignore_index=True) if parts
             else pd.DataFrame({c: [] for c in FRAMES.names}))
    with atomic.atomic_path(frames_out) as tmp:
        pq.write_table(conform(table, FRAMES), tmp)
    return table
