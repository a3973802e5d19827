"""Held-out checks of the expert networks trained here, scored with the metrics.

* :func:`offset_accuracy` — does a SyncNet recover known audio delays (LSE offsets)?
* :func:`emotion_accuracy` — video-level accuracy of the emotion classifier per split.

The ``train_syncnet`` and ``train_emotion`` stages write these into
``reports/evaluators/*.json`` next to the training summaries.
"""

from __future__ import annotations

import numpy as np

from edtalk.data.schema import EMOTIONS, SAMPLE_RATE, SAMPLES_PER_FRAME
from edtalk.experts import emotion_net
from edtalk.experts.syncnet import SyncNet
from edtalk.train.experts.corpus import Clip
from metrics import emotion as emotion_metric
from metrics import sync

def shift_audio(audio: np.ndarray, frames: int) -> np.ndarray:
    """Delay the audio by ``frames`` video frames (negative: advance), same length, zero-filled.

    >>> shift_audio(np.arange(1, 1281, dtype=np.int16), 1)[638:642].tolist()
    [0, 0, 1, 2]
    """
    n = frames * SAMPLES_PER_FRAME
    out = np.zeros_like(audio)
    if n >= 0:
        out[n:] = audio[:len(audio) - n]
    else:
        out[:n] = audio[-n:]
    return out


def offset_accuracy(net: SyncNet, items: list[tuple[np.ndarray, np.ndarray]],
                    shifts: tuple[int, ...] = (0, -2, 2, -5, 5)) -> dict:
    """Recover known delays: for every (frames, int16 audio) and every shift d, score the
    clip with its audio delayed by d frames; correct when the reference offset is -d
    (``metrics.sync``: audio lagging by d gives offset -d). Returns overall and per-shift
    accuracy, the mean LSE-C of aligned clips, every trial, and with shift 0 among
    ``shifts``: the share of clips whose own audio is placed within one frame
    (``aligned_within_1``) and, per other shift, the share of clips whose own audio lies
    closer at zero offset than the shifted audio does (``separated``: the expert tells
    in-sync from out-of-sync speech without searching offsets)."""
    trials = []
    for k, (frames, audio) in enumerate(items):
        for d in shifts:
            s = sync.score(frames, shift_audio(audio, d), SAMPLE_RATE, net)
            trials.append({"item": k, "shift": d, "offset": s.offset, "lse_c": s.lse_c,
                           "lse_d": s.lse_d, "correct": s.offset == -d,
                           "zero_offset_distance": s.mdist[len(s.mdist) // 2]})
    if not trials:
        raise ValueError("no clips to score")
    per = {str(d): float(np.mean([t["correct"] for t in trials if t["shift"] == d])) for d in shifts}
    aligned = {t["item"]: t for t in trials if t["shift"] == 0}
    out = {"offset_accuracy": float(np.mean([t["correct"] for t in trials])),
           "per_shift": per, "lse_c_aligned": float(np.mean([t["lse_c"] for t in aligned.values()]))
           if aligned else None, "clips": len(items)}
    if aligned:
        out["aligned_within_1"] = float(np.mean([abs(t["offset"]) <= 1 for t in aligned.values()]))
        out["separated"] = {str(d): float(np.mean([
            aligned[t["item"]]["zero_offset_distance"] < t["zero_offset_distance"]
            for t in trials if t["shift"] == d])) for d in shifts if d}
    return {**out, "trials": trials}


def emotion_accuracy(net: emotion_net.FrameAttentionNet, clips: list[Clip],
                     max_frames: int | None = 64) -> dict:
    """Video-level accuracy on labelled ``clips``, chance level and the confusion pairs."""
    clips = [c for c in clips if c.label >= 0]
    if not clips:
        raise ValueError("no clip with a known emotion label")
    pred = [emotion_net.predict_video(c.frames, net, max_frames) for c in clips]
    labels = [c.label for c in clips]
    return {"accuracy": emotion_metric.video_accuracy(pred, labels), "chance": 1.0 / len(EMOTIONS),
            "clips": len(clips),
            "predictions": [{"clip_id": c.clip_id, "label": EMOTIONS[y], "pred": EMOTIONS[p]}
                            for c, y, p in zip(clips, labels, pred)]}
