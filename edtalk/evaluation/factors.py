"""Ground-truth factor measures for the synthetic corpus (every factor of a source is known).

A generated video is driven by up to four sources: identity, mouth, pose, expression.
Given the generated video's landmarks (T x 68 x 2, e.g. detected, or the generator's
own) and the sources' stored ground truth, these measure how well each factor was
transferred. Frames are paired with the ``linspace`` rule. All are lower-is-better
except ``emo_agree``.

* ``mouth_err`` — mouth shape against the mouth source: the 20 mouth points centred on
  their own mean and divided by the face's inter-ocular distance (outer eye corners 36,
  45), so that identities with different face sizes compare; mean point distance, in
  inter-ocular units.
* ``pose_err`` — head pose against the pose source, from pose values (T x k, e.g.
  yaw/pitch/roll in degrees): mean absolute difference per component and overall.
  ``roll_from_landmarks`` gives the in-plane angle (degrees) of generated landmarks.
* ``emo_agree`` — fraction of videos whose predicted emotion is the expression source's.
* ``id_drift`` — identity against the identity source's reference frame: the
  non-mouth points (0..47) of each generated frame aligned to the reference by a
  similarity transform (Procrustes: translation, rotation, scale removed), residual
  mean point distance in inter-ocular units. Pose out of plane and brow motion add to
  it, so compare methods, not absolute values.
"""

from __future__ import annotations

import numpy as np

from metrics.align import pair_indices

HIGHER_IS_BETTER = {"mouth_err": False, "pose_err": False, "emo_agree": True, "id_drift": False}
MOUTH = slice(48, 68)
NON_MOUTH = slice(0, 48)
EYE_CORNERS = (36, 45)


def _lm(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (68, 2):
        raise ValueError(f"{name} landmarks must be T x 68 x 2 (or 68 x 2), got {x.shape}")
    return x


def interocular(lm: np.ndarray) -> np.ndarray:
    """Outer-eye-corner distance per frame (T,).

    >>> lm = np.zeros((1, 68, 2)); lm[0, 45] = [30.0, 40.0]
    >>> interocular(lm).tolist()
    [50.0]
    """
    lm = _lm("lm", lm)
    d = np.linalg.norm(lm[:, EYE_CORNERS[1]] - lm[:, EYE_CORNERS[0]], axis=-1)
    if (d <= 0).any():
        raise ValueError("degenerate landmarks: eye corners coincide")
    return d


def mouth_err(generated: np.ndarray, mouth_source: np.ndarray) -> float:
    """Mean mouth-point distance (inter-ocular units) after centring and scale division.

    >>> rng = np.random.default_rng(0); lm = rng.normal(size=(3, 68, 2)) * 10
    >>> round(mouth_err(lm, 2 * lm + 7), 12)   # same shape, other size and place
    0.0
    """
    g, s = _lm("generated", generated), _lm("mouth source", mouth_source)
    gi, si = pair_indices(len(g), len(s))
    g, s = g[gi], s[si]

    def norm(x: np.ndarray) -> np.ndarray:
        m = x[:, MOUTH] - x[:, MOUTH].mean(axis=1, keepdims=True)
        return m / interocular(x)[:, None, None]

    return float(np.linalg.norm(norm(g) - norm(s), axis=-1).mean())


def pose_err(generated_pose: np.ndarray, source_pose: np.ndarray) -> dict[str, float]:
    """Mean absolute pose difference: ``{"pose_err": overall, "pose_err_0": ..., ...}``.

    >>> pose_err(np.array([[1.0, 2.0], [3.0, 4.0]]), np.zeros((2, 2)))
    {'pose_err': 2.5, 'pose_err_0': 2.0, 'pose_err_1': 3.0}
    """
    g, s = np.asarray(generated_pose, np.float64), np.asarray(source_pose, np.float64)
    if g.ndim == 1:
        g = g[:, None]
    if s.ndim == 1:
        s = s[:, None]
    if g.ndim != 2 or s.ndim != 2 or g.shape[1] != s.shape[1]:
        raise ValueError(f"poses must be T x k with equal k, got {g.shape} and {s.shape}")
    gi, si = pair_indices(len(g), len(s))
    err = np.abs(g[gi] - s[si]).mean(axis=0)
    out = {"pose_err": float(err.mean())}
    out.update({f"pose_err_{i}": float(e) for i, e in enumerate(err)})
    return out


def roll_from_landmarks(lm: np.ndarray) -> np.ndarray:
    """In-plane head angle in degrees from the outer eye corners (T,), image y down.

    >>> lm = np.zeros((1, 68, 2)); lm[0, 45] = [10.0, 10.0]
    >>> roll_from_landmarks(lm).tolist()
    [45.0]
    """
    lm = _lm("lm", lm)
    v = lm[:, EYE_CORNERS[1]] - lm[:, EYE_CORNERS[0]]
    return np.degrees(np.arctan2(v[:, 1], v[:, 0]))


def emo_agree(predicted: list[str] | np.ndarray, expression_source: list[str] | np.ndarray) -> float:
    """Fraction of videos whose predicted emotion equals the expression source's.

    >>> emo_agree(["happy", "sad"], ["happy", "angry"])
    0.5
    """
    p, e = np.asarray(predicted), np.asarray(expression_source)
    if p.shape != e.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(f"need equal non-empty 1-D label lists, got {p.shape} and {e.shape}")
    return float(np.mean(p == e))


def _procrustes_residual(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-frame mean point distance after the best similarity map of x onto ref."""
    xc = x - x.mean(axis=1, keepdims=True)
    rc = ref - ref.mean(axis=0)
    xr = xc[..., 0] + 1j * xc[..., 1]                 # 2-D similarity = complex scale
    rr = rc[:, 0] + 1j * rc[:, 1]
    a = (np.conj(xr) * rr).sum(axis=1) / (np.abs(xr) ** 2).sum(axis=1)
    return np.abs(a[:, None] * xr - rr).mean(axis=1)


def id_drift(generated: np.ndarray, identity_reference: np.ndarray) -> float:
    """Mean Procrustes residual of non-mouth points vs the identity reference (IOD units).

    >>> rng = np.random.default_rng(1); ref = rng.normal(size=(68, 2)) * 20
    >>> th = np.radians(30); R = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    >>> round(id_drift((1.5 * ref @ R.T + 4)[None], ref), 12)   # rotated, scaled, moved
    0.0
    """
    g = _lm("generated", generated)
    ref = _lm("identity reference", identity_reference)[0]
    res = _procrustes_residual(g[:, NON_MOUTH], ref[NON_MOUTH])
    return float(res.mean() / interocular(ref[None])[0])
