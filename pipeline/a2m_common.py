"""Helpers shared by the Audio-to-Motion flows (fingerprints, waveforms, summaries)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edtalk.audio2motion.train import ClipData, LoopResult
from edtalk.data.media import read_audio
from edtalk.data.resume import file_sha256
from pipeline.common import announce_summary


def _file_digest(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        return "absent"
    return file_sha256(p)[:16]


def fingerprint(*parts: Any) -> str:
    """What a training run depends on besides its step count: configs, and input files by content."""
    items = []
    for p in parts:
        if is_dataclass(p):
            items.append(asdict(p) | {"loop": {k: v for k, v in asdict(p)["loop"].items()
                                               if k not in ("steps", "checkpoint_every", "keep_checkpoints",
                                                            "log_every")}})
        elif isinstance(p, (str, Path)) and Path(p).suffix in (".parquet", ".pt"):
            items.append(_file_digest(p))
        else:
            items.append(p)
    return hashlib.sha256(json.dumps(items, sort_keys=True, default=str).encode()).hexdigest()[:16]


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
