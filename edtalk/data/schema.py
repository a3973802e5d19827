"""Declared pyarrow schemas for every table the data stages write.

These are the contracts between stages: a stage writes exactly these columns (extra
columns are not allowed), a later stage reads them by name. ``conform`` checks and
casts a pandas frame before it is written.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

EMOTIONS: tuple[str, ...] = (
    "angry", "disgusted", "contempt", "fear", "happy", "neutral", "sad", "surprised",
)
"""The eight MEAD emotion classes, in MEAD's order; class index = position here."""

SPLITS: tuple[str, ...] = ("train", "val", "test")
FPS = 25
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640: 16 kHz audio per 25 fps video frame
N_LANDMARKS = 68
MOUTH = slice(48, 68)
"""iBUG 68-point order: points 48..67 are the mouth (outer 48..59, inner 60..67)."""

# One row per clip (ingest's manifest.parquet).
MANIFEST = pa.schema([
    ("clip_id", pa.string()),        # unique, filesystem-safe
    ("identity", pa.string()),       # speaker / synthetic identity; splits are by identity
    ("emotion", pa.string()),        # one of EMOTIONS, or "unknown"
    ("intensity", pa.int8()),        # 1..3 (MEAD levels), 0 when unknown
    ("split", pa.string()),          # one of SPLITS
    ("fps", pa.float32()),
    ("frames", pa.int32()),
    ("duration", pa.float32()),      # seconds
    ("transcript", pa.string()),     # "" when unknown
    ("source", pa.string()),         # synthetic | hdtf | mead | folder
    ("checksum", pa.string()),       # sha256 of the clip's video file
    ("video_path", pa.string()),     # relative to the stage's output directory
    ("audio_path", pa.string()),     # 16 kHz mono PCM wav, "" when the clip has no audio
])

# One row per rejected clip, per stage (each stage's quarantine.parquet).
QUARANTINE = pa.schema([
    ("clip_id", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),         # short code, see edtalk.data.quarantine.Reason
    ("detail", pa.string()),         # human-readable explanation
])

# Per-frame synthetic ground truth (ingest, synthetic source only).
GROUNDTRUTH = pa.schema([
    ("clip_id", pa.string()),
    ("frame", pa.int32()),
    ("landmarks", pa.list_(pa.float32(), 2 * N_LANDMARKS)),  # x0,y0,x1,y1,... in pixels
    ("yaw", pa.float32()),           # degrees
    ("pitch", pa.float32()),
    ("roll", pa.float32()),
    ("tx", pa.float32()),            # translation, fraction of image size
    ("ty", pa.float32()),
    ("mouth_open", pa.float32()),    # 0 (closed) .. 1 (widest)
    ("mouth_width", pa.float32()),   # relative spread (-1 rounded .. 1 spread)
    ("viseme", pa.string()),         # viseme class of the phoneme at this frame ("sil" in silence)
    ("emotion", pa.string()),
    ("intensity", pa.int8()),
])

# Per-frame crop boxes (crop's boxes.parquet), in source-frame pixels, after smoothing.
BOXES = pa.schema([
    ("clip_id", pa.string()),
    ("frame", pa.int32()),
    ("x0", pa.float32()),
    ("y0", pa.float32()),
    ("x1", pa.float32()),
    ("y1", pa.float32()),
    ("detector", pa.string()),
])

# Per-frame features (features' frames.parquet), aligned to 25 fps video frames.
FRAMES = pa.schema([
    ("clip_id", pa.string()),
    ("frame", pa.int32()),
    ("split", pa.string()),
    ("identity", pa.string()),
    ("emotion", pa.string()),
    ("intensity", pa.int8()),
    ("landmarks", pa.list_(pa.float32(), 2 * N_LANDMARKS)),  # in crop pixels
    ("landmarks_valid", pa.bool_()),  # False where the detector found no single face
    ("mfcc", pa.list_(pa.float32(), 4 * 13)),   # 4 MFCC steps (10 ms) x 13 coeffs for this frame
    ("mel", pa.list_(pa.float32(), 4 * 80)),    # 4 mel steps (10 ms) x 80 bands for this frame
    ("pixel_index", pa.int64()),      # row in the pixel cache (pixels.npy)
])


def conform(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Return ``df`` as a table with exactly ``schema``'s columns, or raise ValueError."""
    missing = [n for n in schema.names if n not in df.columns]
    extra = [c for c in df.columns if c not in schema.names]
    if missing or extra:
        raise ValueError(f"table does not match schema: missing {missing}, unexpected {extra}")
    return pa.Table.from_pandas(df[schema.names], schema=schema, preserve_index=False)
