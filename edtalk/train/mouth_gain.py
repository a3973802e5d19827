"""Calibrate how far the trained model opens its mouths (a departure from the paper, README).

Measured with the emotion evaluator's heatmap landmarks, whose inner-lip gap follows the
corpus' true one at r 0.99, the EDTalk-V of the `tiny` model follows the driving mouth's
timing (r 0.95) but opens it only about 0.6 as far: the 64 px generator under-articulates.
The remedy is a gain on the mouth weights' motion over a clip,
W^m_t -> mean(W^m) + g (W^m_t - mean(W^m)) (``edtalk.generate.scale_motion``), with g set
here so that rendered openings have the driving ones' amplitude on train clips. The gain
is stored in the stage's model file and applied wherever the model renders (EDTalk-V and
EDTalk-A alike); a file without one renders at g = 1, as the paper does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Frames = np.ndarray                                   # (T, H, W, 3) uint8
Landmarker = Callable[[Frames], tuple[np.ndarray, np.ndarray]]   # -> (T, 68, 2) points, (T,) valid
Render = Callable[[np.ndarray, Frames, float], Frames]   # (identity frame, driving clip, gain) -> frames

UPPER_INNER_LIP, LOWER_INNER_LIP = 62, 66            # iBUG 68: centres of the inner lips


def inner_lip_gap(points: np.ndarray) -> np.ndarray:
    """(N,) distance between the inner lips' centres of (N, 68, 2) points."""
    return np.linalg.norm(points[:, LOWER_INNER_LIP] - points[:, UPPER_INNER_LIP], axis=-1)


def gap_agreement(read: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """How a landmark instrument reads the inner-lip gap over frames against the true points:
    correlation and spread ratio (1 and 1 for a faithful reader)."""
    g_read, g_true = inner_lip_gap(read), inner_lip_gap(true)
    return {"opening_r": float(np.corrcoef(g_read, g_true)[0, 1]),
            "opening_spread_ratio": float(g_read.std() / g_true.std())}


def opening_spread(frames: Frames, landmarker: Landmarker) -> float:
    """Standard deviation over the clip of the inner-lip gap (pixels)."""
    points, valid = landmarker(frames)
    gap = inner_lip_gap(points)[valid]
    return float(gap.std()) if len(gap) > 1 else float("nan")


@dataclass(frozen=True)
class GainCalibration:
    gain: float                      # the chosen g
    ratios: dict[float, float]       # g -> mean over clips of rendered / driving opening spread
    clips: int

    def to_dict(self) -> dict[str, object]:
        return {"gain": round(self.gain, 4), "clips": self.clips,
                "ratios": {f"{g:g}": round(r, 4) for g, r in sorted(self.ratios.items())}}


def spread_ratio(pairs: Sequence[tuple[np.ndarray, Frames]], render: Render, landmarker: Landmarker,
                 gain: float) -> float:
    """Mean over (identity frame, driving clip) pairs of the rendered clip's opening spread
    over the driving clip's, both read by ``landmarker``."""
    ratios = []
    for identity, video in pairs:
        driving = opening_spread(video, landmarker)
        if np.isfinite(driving) and driving > 0:
            ratios.append(opening_spread(render(identity, video, gain), landmarker) / driving)
    if not ratios:
        raise ValueError("no calibration clip has a moving mouth")
    return float(np.mean(ratios))


def calibrate(pairs: Sequence[tuple[np.ndarray, Frames]], render: Render, landmarker: Landmarker,
              probes: tuple[float, float] = (1.0, 2.0), bounds: tuple[float, float] = (1.0, 3.0)
              ) -> GainCalibration:
    """The gain at which rendered openings spread as far as the driving ones (ratio 1):
    the ratio is close to linear in g, so two probes and one interpolation find it; it is
    kept within ``bounds`` and its own ratio measured."""
    lo, hi = probes
    ratios = {g: spread_ratio(pairs, render, landmarker, g) for g in probes}
    slope = (ratios[hi] - ratios[lo]) / (hi - lo)
    gain = lo + (1.0 - ratios[lo]) / slope if slope > 1e-6 else bounds[0]
    gain = float(np.clip(gain, *bounds))
    if gain not in ratios:
        ratios[gain] = spread_ratio(pairs, render, landmarker, gain)
    return GainCalibration(gain, ratios, len(pairs))
