"""Talking-head metrics computed as the community computes them.

One module per metric family (pure functions, NumPy/torch in, numbers out), the suite
that runs them over paired ground-truth/generated videos, the choice of scoring networks
(``backends``), and table/diff/report writers. Scoring only: the networks that score
(SyncNet, the emotion classifier, the landmark regressor) are ``edtalk.experts``, their
training ``edtalk.train.experts``, the experiments ``edtalk.evaluation``.
Every metric declares its direction in :data:`HIGHER_IS_BETTER`. The protocol facts
these follow are in ``shared/reference/metrics-protocol.md``.

This package never imports Prefect, DVC or the generator (scoring works on files and arrays).
"""

from __future__ import annotations

HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True,
    "ssim": True,
    "m_lmd": False,
    "f_lmd": False,
    "fid": False,
    "fd": False,
    "lse_c": True,
    "lse_d": False,
    "sync_offset_abs": False,
    "acc_emo": True,
    "mouth_err": False,
    "pose_err": False,
    "emo_agree": True,
    "id_drift": False,
    "csim": True,                     # identity cosine similarity to the GT face
    "lpips": False,                   # learned perceptual distance
    "cpbd": True,                     # no-reference sharpness (blur lowers it)
    "head_motion_diversity": True,    # spread of head motion (a still head scores 0)
    "beat_align": True,               # head-motion beats near audio onsets
}
"""Declared direction of every metric (base name, without a ``[backend]`` suffix)."""


def base_name(key: str) -> str:
    """Metric name without its backend label.

    >>> base_name("lse_c[syncnet_v2]")
    'lse_c'
    """
    return key.split("[", 1)[0]


def higher_is_better(key: str) -> bool:
    """Direction of a metric key such as ``"fd[rgb-pool8]"``; ValueError when unknown.

    >>> higher_is_better("psnr"), higher_is_better("fd[rgb-pool8]")
    (True, False)
    """
    name = base_name(key)
    if name not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric {key!r}; known: {sorted(HIGHER_IS_BETTER)}")
    return HIGHER_IS_BETTER[name]
