"""Does EDTalk-A follow its input audio? (the audio-driven lips of paper §3.3)

For each held-out clip the speech that drives EDTalk-A is delayed by k video frames
(k = 0: the plain EDTalk-A output) and the generated video is scored by a SyncNet against
the clip's *original* audio. With ``metrics.sync``'s convention (audio lagging the video
by d frames gives offset -d), a video generated from audio delayed by k lags the original
audio by k, so its offset should be the k = 0 offset plus k. Reported: the offsets per k,
the share of k = 0 videos within +-1 frame of 0, and the share of (clip, k != 0) trials
whose offset moved by k +- 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edtalk import generate as gen
from edtalk.data import media
from edtalk.data.schema import SAMPLE_RATE
from edtalk.evaluation.experts import shift_audio
from edtalk.experts.syncnet import SyncNet
from metrics import sync


@dataclass(frozen=True)
class SyncItem:
    clip_id: str
    identity: np.ndarray        # RGB uint8 (H, W, 3): the identity frame
    audio: np.ndarray           # float32 mono 16 kHz in [-1, 1]: the clip's speech
    transcript: str | None = None


def audio_shift_offsets(model, driver: gen.MotionPredictor, items: Sequence[SyncItem], net: SyncNet,
                        shifts: Sequence[int] = (0, -3, 3), pose_seed: int = 0, temperature: float = 1.0,
                        batch_size: int = 8, tolerance: int = 1) -> dict:
    """Offsets of EDTalk-A videos driven by delayed speech, scored against the original speech."""
    if 0 not in shifts:
        raise ValueError("shifts must include 0 (the reference offset)")
    trials = []
    for item in items:
        n = gen.frames_for_audio(len(item.audio))
        reference = media.fit_audio(item.audio, n)
        for k in shifts:
            sources = gen.audio_sources(driver, shift_audio(item.audio, k), n,
                                        transcript=item.transcript, pose_seed=pose_seed,
                                        temperature=temperature, factors=gen.model_factors(model))
            frames = gen.generate(model, item.identity, n_frames=n, batch_size=batch_size, **sources).frames
            s = sync.score(frames, reference, SAMPLE_RATE, net)
            trials.append({"clip_id": item.clip_id, "shift": int(k), "offset": int(s.offset),
                           "lse_c": float(s.lse_c), "lse_d": float(s.lse_d)})
    base = {t["clip_id"]: t["offset"] for t in trials if t["shift"] == 0}
    moved = [abs(t["offset"] - base[t["clip_id"]] - t["shift"]) <= tolerance
             for t in trials if t["shift"] != 0]
    aligned = [t for t in trials if t["shift"] == 0]
    return {
        "clips": len(items), "shifts": [int(k) for k in shifts], "tolerance_frames": tolerance,
        "aligned_within_tolerance": float(np.mean([abs(t["offset"]) <= tolerance for t in aligned])),
        "mean_offset_aligned": float(np.mean([t["offset"] for t in aligned])),
        "lse_c_aligned": float(np.mean([t["lse_c"] for t in aligned])),
        "shift_followed": float(np.mean(moved)) if moved else None,
        "mean_offset_per_shift": {str(k): float(np.mean([t["offset"] for t in trials if t["shift"] == k]))
                                  for k in shifts},
        "trials": trials,
    }
