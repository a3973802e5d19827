"""How far below ground truth small image defects put the SyncNet confidence (LSE-C), and
the emotion evaluator's accuracy (Acc_emo).

With the same SyncNet and audio, the ground-truth clips are scored untouched and after
defects much milder than a 64-px CPU generator's: a Gaussian blur of 1 px, one more H.264
pass at CRF 28, and half the motion (every frame blended halfway toward the clip's mean
frame); next to them, the generated videos of the ``generate`` stage (``<method>/<clip_id>.mp4``).
Given a classifier and the clips' labels, every video's emotion is read too (as Table 1's
Acc_emo reads it), so both instruments are calibrated on the same defects.
:func:`score_clips` gives one row per (video, clip); :func:`summary` the table;
:func:`render_markdown` the report.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter

from edtalk.data import media
from edtalk.experts.syncnet import SyncNet
from metrics import sync

DEFECTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ground truth": lambda v: v,
    "ground truth, blurred (Gaussian, sigma 1 px)":
        lambda v: np.stack([gaussian_filter(f.astype(np.float32), (1, 1, 0)) for f in v])
        .round().clip(0, 255).astype(np.uint8),
    "ground truth, re-encoded (H.264, CRF 28)": lambda v: reencode(v, crf=28),
    "ground truth, half the motion (blend with the clip's mean frame)":
        lambda v: (0.5 * v + 0.5 * v.astype(np.float32).mean(0, keepdims=True)).round().astype(np.uint8),
}


def reencode(frames: np.ndarray, crf: int) -> np.ndarray:
    """The frames after one more lossy H.264 pass (as a re-shared video gets)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reencoded.mp4"
        media.write_video(path, frames, crf=crf)
        return media.read_frames(path)[0][:len(frames)]


def generated_methods(generated_dir: str | Path) -> list[str]:
    """The method folders the generate stage wrote (none when the folder is absent)."""
    root = Path(generated_dir)
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def score_clips(clip_ids: list[str], clips_dir: str | Path, generated_dir: str | Path, net: SyncNet,
                classify: Callable[[np.ndarray], str] | None = None, labels: Mapping[str, str] | None = None
                ) -> pd.DataFrame:
    """LSE-C and offset of every clip: ground truth, each defect, each generated method; with
    ``classify`` (frames -> emotion name) and ``labels`` (clip id -> emotion), whether the
    video reads as its clip's emotion (``emotion_read``)."""
    methods = generated_methods(generated_dir)
    rows = []
    for cid in clip_ids:
        video, _ = media.read_frames(Path(clips_dir) / f"{cid}.mp4")
        audio = media.read_audio(Path(clips_dir) / f"{cid}.wav")
        todo = {name: defect(video) for name, defect in DEFECTS.items()}
        for m in methods:
            path = Path(generated_dir) / m / f"{cid}.mp4"
            if path.exists():
                todo[m] = media.read_frames(path)[0]
        for name, frames in todo.items():
            s = sync.score(frames, audio, media.SAMPLE_RATE, net)
            row = dict(video=name, clip_id=cid, lse_c=s.lse_c, offset=s.offset)
            if classify is not None and labels is not None:
                row["emotion_read"] = classify(frames) == labels[cid]
            rows.append(row)
    return pd.DataFrame(rows)


def summary(scores: pd.DataFrame) -> pd.DataFrame:
    """Per video: mean LSE-C, the share of clips whose offset is within one frame and, when
    read, the share that reads as the clip's emotion."""
    columns = {"LSE-C (mean)": ("lse_c", "mean"),
               "share with offset within ±1 frame": ("offset", lambda o: float(np.mean(np.abs(o) <= 1)))}
    if "emotion_read" in scores:
        columns["Acc_emo"] = ("emotion_read", "mean")
    return scores.groupby("video", sort=False).agg(**columns)


def render_markdown(table: pd.DataFrame, backend: str, clips: int, split: str, seconds: float,
                    emotion_backend: str | None = None) -> str:
    """The report: which SyncNet (and emotion evaluator), how many clips, the table."""
    reader = (f" Acc_emo: emotion evaluator `{emotion_backend}`, the share of clips read as their own emotion."
              if emotion_backend else "")
    return "\n".join([
        "# SyncNet and emotion evaluator sensitivity" if emotion_backend else "# SyncNet sensitivity",
        "",
        f"SyncNet `{backend}`; {clips} `{split}` clips, each scored against its own speech.{reader}",
        "",
        table.to_markdown(floatfmt=".3f"),
        "",
        f"({seconds:.0f} s)",
    ]) + "\n"
