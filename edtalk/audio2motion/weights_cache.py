"""Ground-truth navigation weights for the audio stages (§3.3): W^m, W^p, W^e per frame.

The frozen video-driven model gives, for every frame I of the corpus,
``W^m = MLN(E(I))``, ``W^p = PLN(E(I))`` and ``W^e = ELN(E(I))`` (Eq. 1's weights, the
targets of Eqs. 11, 13 and the expression loss). ``extract`` runs E -> trunk -> heads
in batches under ``torch.inference_mode``; the result is a table in the ``WEIGHTS``
schema, one row per frame, so the audio stages train without touching pixels except
where a loss needs them. ``clip_arrays`` turns it back into per-clip sequences.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from edtalk.data import atomic
from edtalk.data.pixel_cache import PixelCache
from edtalk.model import EDTalk

from .config import N_EXP, N_MOUTH, N_POSE

WEIGHTS = pa.schema([
    ("clip_id", pa.string()),
    ("frame", pa.int32()),
    ("split", pa.string()),
    ("w_mouth", pa.list_(pa.float32(), N_MOUTH)),   # W^m = MLN(E(I))
    ("w_pose", pa.list_(pa.float32(), N_POSE)),     # W^p = PLN(E(I))
    ("w_exp", pa.list_(pa.float32(), N_EXP)),       # W^e = ELN(E(I))
])
COLUMNS = {"mouth": "w_mouth", "pose": "w_pose", "exp": "w_exp"}


def to_images(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B,S,S,3) RGB -> float (B,3,S,S) in [-1, 1] (the networks' convention)."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.inference_mode()
def frame_weights(model: EDTalk, images: torch.Tensor) -> dict[str, np.ndarray]:
    """W^m, W^p, W^e of a batch of images (B,3,S,S) as float32 arrays."""
    images = images.contiguous(memory_format=torch.channels_last)   # ~2x faster on CPU (oneDNN)
    w = model.weights(model.encode(images)[0])
    if w.exp is None:
        raise ValueError("the model has no expression bank (ELN); extract from the train_expression model")
    return {"mouth": w.mouth.float().numpy(), "pose": w.pose.float().numpy(),
            "exp": w.exp.float().numpy()}


def extract(model: EDTalk, frames: pd.DataFrame, pixels: PixelCache, batch_size: int = 64,
            progress: Iterable | None = None) -> pd.DataFrame:
    """Weights of every row of ``frames`` (clip_id, frame, split, pixel_index), in row order.

    The model is put in eval mode; ``progress`` optionally wraps the batch range (tqdm).
    """
    model.eval()
    if (model.cfg.n_mouth, model.cfg.n_pose, model.cfg.n_exp) != (N_MOUTH, N_POSE, N_EXP):
        raise ValueError(f"bank sizes {model.cfg.n_mouth}/{model.cfg.n_pose}/{model.cfg.n_exp} "
                         f"differ from the cache schema {N_MOUTH}/{N_POSE}/{N_EXP}")
    index = frames["pixel_index"].to_numpy(np.int64)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in COLUMNS}
    starts = range(0, len(index), batch_size)
    for s in (progress(starts) if progress else starts):
        w = frame_weights(model, to_images(pixels[index[s:s + batch_size]]))
        for k in COLUMNS:
            parts[k].append(w[k])
    out = frames[["clip_id", "frame", "split"]].reset_index(drop=True).copy()
    for k, col in COLUMNS.items():
        arr = np.concatenate(parts[k]) if parts[k] else np.zeros((0, 1), np.float32)
        out[col] = list(arr)
    return out


def write(table: pd.DataFrame, path: str | Path) -> pa.Table:
    """Atomically write the cache with exactly the ``WEIGHTS`` schema."""
    t = pa.Table.from_pandas(table[WEIGHTS.names], schema=WEIGHTS, preserve_index=False)
    with atomic.atomic_path(path) as tmp:
        pq.write_table(t, tmp)
    return t


def read(path: str | Path, splits: Iterable[str] | None = None) -> pd.DataFrame:
    """The cache (optionally only some splits), sorted by clip and frame."""
    filters = [("split", "in", list(splits))] if splits is not None else None
    df = pq.read_table(path, schema=WEIGHTS, filters=filters).to_pandas()
    return df.sort_values(["clip_id", "frame"]).reset_index(drop=True)


def clip_arrays(table: pd.DataFrame) -> dict[str, dict[str, np.ndarray]]:
    """clip_id -> {"mouth": (T,20), "pose": (T,6), "exp": (T,10), "frame": (T,)} in frame order."""
    out = {}
    for clip_id, part in table.sort_values(["clip_id", "frame"]).groupby("clip_id", sort=True):
        out[str(clip_id)] = {k: np.stack(part[col].to_numpy()).astype(np.float32)
                             for k, col in COLUMNS.items()}
        out[str(clip_id)]["frame"] = part["frame"].to_numpy(np.int64)
    return out
