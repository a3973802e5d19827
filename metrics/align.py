"""The length-pairing rule every paired metric shares (EAT's ``linspace`` rule).

With ``n = min(T_gt, T_pred)`` the k-th pair takes frame ``int(k * T / n)`` of each
video, i.e. ``np.linspace(0, T, n, endpoint=False).astype(int)``.
"""

from __future__ import annotations

import numpy as np


def pair_indices(t_gt: int, t_pred: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices pairing a ``t_gt``-frame video with a ``t_pred``-frame one.

    >>> g, p = pair_indices(5, 3)
    >>> g.tolist(), p.tolist()
    ([0, 1, 3], [0, 1, 2])
    """
    if int(t_gt) < 1 or int(t_pred) < 1:
        raise ValueError(f"both videos need at least one frame, got {t_gt} and {t_pred}")
    n = min(int(t_gt), int(t_pred))
    gi = np.linspace(0, int(t_gt), n, endpoint=False).astype(int)
    pi = np.linspace(0, int(t_pred), n, endpoint=False).astype(int)
    return gi, pi


def pair(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sequences (first axis = time) cut to paired frames of equal length.

    >>> a, b = pair(np.arange(4), np.arange(2))
    >>> a.tolist(), b.tolist()
    ([0, 2], [0, 1])
    """
    gi, pi = pair_indices(len(gt), len(pred))
    return np.asarray(gt)[gi], np.asarray(pred)[pi]
