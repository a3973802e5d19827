"""Video-level emotion accuracy over the 8 MEAD classes (Acc_emo, higher is better).

The classifier that predicts each video's class is ``edtalk.experts.emotion_net``
(``predict_video``); this module scores its predictions against the labels.
"""

from __future__ import annotations

import numpy as np

from edtalk.experts.emotion_net import N_CLASSES

HIGHER_IS_BETTER = True


def video_accuracy(predicted: list[int] | np.ndarray, labels: list[int] | np.ndarray) -> float:
    """Fraction of videos whose predicted class equals the label.

    >>> video_accuracy([0, 1, 2, 3], [0, 1, 0, 0])
    0.5
    """
    p, y = np.asarray(predicted), np.asarray(labels)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(f"need equal non-empty 1-D predictions and labels, got {p.shape}, {y.shape}")
    if ((y < 0) | (y >= N_CLASSES)).any():
        raise ValueError(f"labels must be class indices 0..{N_CLASSES - 1}")
    return float(np.mean(p == y))
