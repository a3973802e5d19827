"""Helpers shared by the Audio-to-Motion flows (waveforms, summaries)."""

from __future__ import annotations

from typing import Any

import numpy as np

from edtalk.audio2motion.data import ClipData
from edtalk.data.media import read_audio
from edtalk.train.resumable import LoopResult
from pipeline.common import announce_summary


def clip_waves(clips: list[ClipData]) -> list[np.ndarray]:
    """Each clip's 16 kHz mono waveform."""
    return [read_audio(c.audio_path) for c in clips]


def summarize(stage: str, result: LoopResult, **extra: Any) -> dict[str, Any]:
    summary = {"steps": result.step, "resumed_from": result.resumed_from,
               "seconds": round(result.seconds, 2), **extra,
               **{f"first_{k.split('/')[-1]}": round(v, 4) for k, v in result.first.items()},
               **{f"last_{k.split('/')[-1]}": round(v, 4) for k, v in result.last.items()}}
    announce_summary(stage, summary)
    return summary
