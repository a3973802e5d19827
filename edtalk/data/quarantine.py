"""Per-clip rejection with a reason: bad input is recorded and skipped, never fatal."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from edtalk.data import atomic
from edtalk.data.schema import QUARANTINE, conform


class Reason(str, enum.Enum):
    """Why a clip was quarantined (the ``reason`` column)."""

    CORRUPT = "corrupt"                  # file cannot be opened or decoded
    TRUNCATED = "truncated"              # decoding stops early / fewer frames than declared
    NO_VIDEO = "no_video_stream"
    NO_AUDIO = "no_audio_stream"         # audio required but missing
    NO_FACE = "no_face"
    MULTIPLE_FACES = "multiple_faces"
    TOO_SHORT = "too_short"
    BAD_FPS = "unsupported_fps"
    BAD_SAMPLE_RATE = "unsupported_sample_rate"
    DOWNLOAD_FAILED = "download_failed"
    UNSAFE_ARCHIVE = "unsafe_archive"
    REFUSED_URL = "refused_url"          # a download URL outside the allowed schemes/hosts


class ClipRejected(Exception):
    """Raised by per-clip library code; the stage records it and moves on."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


def record(clip_id: str, stage: str, error: ClipRejected) -> dict[str, str]:
    """One quarantine row for ``clip_id`` rejected at ``stage``."""
    return {"clip_id": clip_id, "stage": stage, "reason": error.reason.value, "detail": error.detail}


def write(path: str | Path, rows: Iterable[dict[str, str]]) -> pd.DataFrame:
    """Atomically write the quarantine table (possibly empty) and return it."""
    df = pd.DataFrame(list(rows), columns=QUARANTINE.names)
    df = df.sort_values(["stage", "clip_id"], kind="stable").reset_index(drop=True)
    with atomic.atomic_path(path) as tmp:
        pq.write_table(conform(df, QUARANTINE), tmp)
    return df


def read(path: str | Path) -> pd.DataFrame:
    """Read a quarantine table; an absent file means nothing was quarantined."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=QUARANTINE.names)
    return pq.read_table(path, schema=QUARANTINE).to_pandas()
