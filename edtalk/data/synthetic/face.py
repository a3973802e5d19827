"""Face geometry: a parametric 3D 68-point template (iBUG order), shaped by identity,
expression, mouth and blink, then rotated and projected (weak perspective).

Coordinates of the template: x to the image's right, y down, z towards the camera;
the unit is about half the face's width. Besides the 68 landmarks the renderer needs
a few extra points (skull outline, hairline, ears, eyeball centres); they are carried
through the same rotation and projection, so pixels and landmarks always agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edtalk.data.schema import EMOTIONS, N_LANDMARKS
from edtalk.data.synthetic.identity import Identity
from edtalk.data.synthetic.levels import level_scale

# Landmark groups (iBUG 68).
JAW = np.arange(0, 17)
BROW_R, BROW_L = np.arange(17, 22), np.arange(22, 27)
NOSE_BRIDGE, NOSE_BASE = np.arange(27, 31), np.arange(31, 36)
EYE_R, EYE_L = np.arange(36, 42), np.arange(42, 48)
MOUTH_OUTER, MOUTH_INNER = np.arange(48, 60), np.arange(60, 68)
_SKULL_N, _HAIRLINE_N = 15, 11

SCALE = 0.23        # template unit in frame sizes (puts the head in the middle ~60 %)
CENTRE = (0.5, 0.47)  # where the template origin lands, as fractions of the frame
_PIVOT = np.array([0.0, 0.25, -0.6])  # rotation centre, roughly the top of the neck


@dataclass(frozen=True)
class Geometry:
    """One frame's projected face (pixels) plus the extra points the renderer uses."""

    landmarks: np.ndarray   # (68, 2)
    depth: np.ndarray       # (68,) z after rotation (larger = nearer the camera)
    skull: np.ndarray       # (_SKULL_N, 2) from above point 16 over the top to above point 0
    hairline: np.ndarray    # (_HAIRLINE_N, 2) from the right temple to the left
    ears: np.ndarray        # (2, 2) right ear (image left), left ear
    eyeballs: np.ndarray    # (2, 2) centres of the irises
    scale: float            # pixels per template unit
    origin: np.ndarray      # (2,) the projected template origin (head centre)


def _superellipse(theta: np.ndarray, rx: float, ry: float, n: float) -> tuple[np.ndarray, np.ndarray]:
    c, s = np.cos(theta), np.sin(theta)
    return rx * np.sign(c) * np.abs(c) ** (2 / n), ry * np.sign(s) * np.abs(s) ** (2 / n)


def template(ident: Identity) -> dict[str, np.ndarray]:
    """The neutral, frontal 3D shape of ``ident``: 68 landmarks plus extra points."""
    p = np.zeros((N_LANDMARKS, 3))
    yc, rx, ry = -0.25, 1.0 * ident.jaw_width, 1.45 * ident.face_length
    # Jaw: lower half of a superellipse, from the right ear (image left) via the chin.
    th = np.pi - np.pi * np.arange(17) / 16
    x, y = _superellipse(th, rx, ry, ident.jaw_square)
    p[JAW, 0], p[JAW, 1] = x, yc + y
    p[JAW, 2] = -0.55 + 0.9 * np.abs(np.sin(th)) ** 1.5
    # Brows: arcs above the eyes; 17..21 image left (outer -> inner), 22..26 inner -> outer.
    t = np.linspace(0, 1, 5)
    bx = -0.86 + 0.68 * t
    by = -0.60 - 0.09 * np.sin(np.pi * (0.15 + 0.75 * t)) - ident.brow_height
    bz = 0.30 + 0.18 * t
    p[BROW_R] = np.stack([bx * ident.eye_spacing, by, bz], 1)
    p[BROW_L] = np.stack([-bx[::-1] * ident.eye_spacing, by[::-1], bz[::-1]], 1)
    # Nose bridge (27..30) down to the tip, then the base (31..35).
    nl = ident.nose_length
    p[NOSE_BRIDGE] = np.stack([np.zeros(4), -0.42 + np.array([0, 0.18, 0.36, 0.54]) * nl,
                               np.array([0.42, 0.52, 0.63, 0.78])], 1)
    nw = 0.2 * ident.nose_width
    base_y = -0.42 + 0.64 * nl
    p[NOSE_BASE] = np.stack([np.array([-1, -0.5, 0, 0.5, 1]) * nw,
                             base_y + np.array([-0.03, 0.0, 0.02, 0.0, -0.03]),
                             np.array([0.48, 0.56, 0.62, 0.56, 0.48])], 1)
    # Eyes: 36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid.
    a, b = 0.19 * ident.eye_size, 0.075 * ident.eye_size
    for idx, cx in ((EYE_R, -0.42 * ident.eye_spacing), (EYE_L, 0.42 * ident.eye_spacing)):
        # Both eyes list their points left to right along the upper lid, then back
        # along the lower lid: that is outer->inner for 36..41, inner->outer for 42..47.
        ex = np.array([-a, -a / 3, a / 3, a, a / 3, -a / 3])
        ey = np.array([0.0, -b, -b, 0.0, 0.85 * b, 0.85 * b])
        p[idx] = np.stack([cx + ex, -0.32 + ey, np.full(6, 0.3)], 1)
    # Mouth: 48 and 54 corners, 49..53 upper lip, 55..59 lower lip (right -> left).
    mw, my, lt = 0.36 * ident.mouth_width, 0.62 * ident.face_length, ident.lip_thickness
    ux = np.array([-0.6, -0.25, 0.0, 0.25, 0.6])
    upper = np.stack([ux * mw, my - lt * np.array([0.08, 0.115, 0.095, 0.115, 0.08])], 1)
    lower = np.stack([-ux * mw, my + lt * np.array([0.10, 0.135, 0.14, 0.135, 0.10])], 1)
    outer = np.concatenate([[[-mw, my]], upper, [[mw, my]], lower])
    p[MOUTH_OUTER, :2] = outer
    p[MOUTH_OUTER, 2] = 0.52 - 0.12 * np.abs(outer[:, 0] / mw) ** 2
    ix = np.array([-0.85, -0.35, 0.0, 0.35, 0.85, 0.35, 0.0, -0.35]) * mw
    p[MOUTH_INNER] = np.stack([ix, np.full(8, my), 0.5 - 0.1 * np.abs(ix / mw) ** 2], 1)
    # Skull: upper half of the same superellipse family, over the top of the head.
    th = np.linspace(0.0, -np.pi, _SKULL_N)
    sx, sy = _superellipse(th, rx * 1.0, 1.18, 2.2)
    skull = np.stack([sx, yc + sy, -0.55 + 0.8 * np.abs(np.sin(th))], 1)
    # Hairline: from the right temple (image right) over the forehead to the left.
    th = np.linspace(-0.3, -np.pi + 0.3, _HAIRLINE_N)
    hx, hy = _superellipse(th, rx * 0.93, 0.72, 2.4)
    hairline = np.stack([hx, yc - 0.05 + hy, -0.4 + 0.8 * np.abs(np.sin(th))], 1)
    ears = np.array([[-rx * 1.0, -0.3, -0.45], [rx * 1.0, -0.3, -0.45]])
    eyeballs = np.array([[-0.42 * ident.eye_spacing, -0.32, 0.3], [0.42 * ident.eye_spacing, -0.32, 0.3]])
    return {"landmarks": p, "skull": skull, "hairline": hairline, "ears": ears, "eyeballs": eyeballs}


# Expression displacements at intensity 3 (template units, -y = up): brows (inner,
# middle, outer), upper and lower eyelids, mouth corners (dx outward, dy), upper lip,
# lower lip, nostrils. Contempt's corner change is applied to one side only.
_EXPRESSIONS: dict[str, dict[str, float]] = {
    "angry": dict(brow_in=0.11, brow_mid=0.06, brow_out=0.0, brow_pull=0.05, lid_up=-0.015,
                  lid_low=-0.03, corner_dx=-0.04, corner_dy=0.03, lip_up=-0.01, lip_low=-0.01),
    "disgusted": dict(brow_in=0.07, brow_mid=0.05, brow_out=0.03, brow_pull=0.03, lid_up=0.02,
                      lid_low=-0.035, corner_dx=-0.02, corner_dy=0.035, lip_up=-0.06, lip_low=0.015,
                      nostril=-0.035),
    "contempt": dict(lid_up=0.015, corner_dx=0.08, corner_dy=-0.12, one_sided=1.0, brow_out=-0.03),
    "fear": dict(brow_in=-0.13, brow_mid=-0.08, brow_out=-0.03, brow_pull=0.03, lid_up=-0.045,
                 lid_low=0.01, corner_dx=0.06, corner_dy=0.025),
    "happy": dict(brow_in=-0.02, brow_mid=-0.02, brow_out=-0.02, lid_up=0.01, lid_low=-0.035,
                  corner_dx=0.07, corner_dy=-0.13, lip_up=-0.015, lip_low=0.02),
    "neutral": dict(),
    "sad": dict(brow_in=-0.11, brow_mid=-0.02, brow_out=0.05, brow_pull=0.02, lid_up=0.03,
                corner_dx=-0.02, corner_dy=0.10, lip_low=-0.02),
    "surprised": dict(brow_in=-0.16, brow_mid=-0.18, brow_out=-0.12, lid_up=-0.06, lid_low=0.015,
                      corner_dx=-0.03),
}
assert set(_EXPRESSIONS) == set(EMOTIONS)


# The upper face (brows, lids, nostrils) moves 1.6 times the table above: the table was
# drawn for the mouth, whose corners move furthest, and the upper face read at under a
# pixel at the 64 px crop. A whole-face expression is what tells the eight classes apart.
UPPER_FACE_GAIN = 1.6
_UPPER_FACE = ("brow_in", "brow_mid", "brow_out", "brow_pull", "lid_up", "lid_low", "nostril")


@lru_cache(maxsize=64)
def expression_offsets(emotion: str, intensity: int) -> np.ndarray:
    """(68, 3) displacement of the landmarks for ``emotion`` at ``intensity`` (0..3).

    Cached (constant within a clip); the returned array is read-only.
    """
    e = _EXPRESSIONS[emotion]
    k = level_scale(intensity)
    d = np.zeros((N_LANDMARKS, 3))
    g = lambda name: k * e.get(name, 0.0) * (UPPER_FACE_GAIN if name in _UPPER_FACE else 1.0)  # noqa: E731
    # Brows: weights from inner to outer end along each brow.
    for brow in (BROW_R[::-1], BROW_L):  # each listed from its inner end
        w = np.linspace(0, 1, 5)  # 0 at the inner end, 1 at the outer end
        dy = g("brow_in") * (1 - w) ** 1.5 + g("brow_mid") * np.sin(np.pi * w) + g("brow_out") * w ** 1.5
        d[brow, 1] += dy
        toward = 1.0 if brow[0] in BROW_R else -1.0  # inward = +x for the image-left brow
        d[brow, 0] += toward * g("brow_pull") * (1 - w)
    for eye in (EYE_R, EYE_L):
        d[eye[[1, 2]], 1] += g("lid_up")
        d[eye[[4, 5]], 1] += g("lid_low")
    d[NOSE_BASE, 1] += g("nostril")
    d[[49, 50, 51, 52, 53, 61, 62, 63], 1] += g("lip_up")
    d[[55, 56, 57, 58, 59, 65, 66, 67], 1] += g("lip_low")
    sides = ((54, 64, 1.0),) if e.get("one_sided") else ((48, 60, -1.0), (54, 64, 1.0))
    for outer, inner, sgn in sides:
        for idx, w in ((outer, 1.0), (inner, 0.9)):
            d[idx, 0] += sgn * g("corner_dx") * w
            d[idx, 1] += g("corner_dy") * w
        # neighbours of the corner follow half-way, so the lip line bends smoothly
        for nb in ((49, 59, 61, 67) if sgn < 0 else (53, 55, 63, 65)):
            d[nb, 1] += 0.45 * g("corner_dy")
            d[nb, 0] += 0.3 * sgn * g("corner_dx")
    d.setflags(write=False)
    return d


def _articulate(p: np.ndarray, ident: Identity, opening: float, width: float, blink: float) -> None:
    """Open/spread the mouth and close the eyelids, in place on the 3D landmarks."""
    gap = 0.40 * float(np.clip(opening, 0, 1)) * ident.face_length
    mw = 0.36 * ident.mouth_width
    # Horizontal: spread (+) or round (-) the lips about the mouth centre.
    sx = 1.0 + 0.14 * float(np.clip(width, -1, 1))
    p[MOUTH_OUTER, 0] *= sx
    p[MOUTH_INNER, 0] *= sx
    p[MOUTH_OUTER, 2] += 0.06 * max(0.0, -width)  # rounded lips protrude
    # Vertical: the profile of the opening is widest at the centre, zero at the corners.
    prof = lambda x: np.sqrt(np.clip(1 - (x / (mw * 0.95)) ** 2, 0, 1))  # noqa: E731
    up_idx = np.array([49, 50, 51, 52, 53, 61, 62, 63])
    low_idx = np.array([55, 56, 57, 58, 59, 65, 66, 67])
    p[up_idx, 1] -= 0.22 * gap * prof(p[up_idx, 0])
    p[low_idx, 1] += 0.78 * gap * prof(p[low_idx, 0])
    # The jaw drops with the lower lip; the chin most, the jaw angles barely.
    for idx, w in ((8, 1.0), (7, 0.9), (9, 0.9), (6, 0.65), (10, 0.65), (5, 0.35), (11, 0.35), (4, 0.1), (12, 0.1)):
        p[idx, 1] += 0.7 * gap * w
    if blink > 0:
        for eye in (EYE_R, EYE_L):
            low = p[eye[[5, 4]], 1]  # lower lid points under 37, 38 (41 under 37, 40 under 38)
            p[eye[[1, 2]], 1] += float(np.clip(blink, 0, 1)) * (low - p[eye[[1, 2]], 1]) * 0.95


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation with the PoseTrack sign conventions (degrees)."""
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rp = np.array([[1, 0, 0], [0, np.cos(p), np.sin(p)], [0, -np.sin(p), np.cos(p)]])
    rr = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rr @ rp @ ry


def geometry(ident: Identity, size: int, *, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
             tx: float = 0.0, ty: float = 0.0, opening: float = 0.0, width: float = 0.0,
             emotion: str = "neutral", intensity: int = 0, blink: float = 0.0,
             base: dict[str, np.ndarray] | None = None) -> Geometry:
    """Project one frame of ``ident``'s face into a ``size`` x ``size`` image."""
    base = base if base is not None else template(ident)
    p = base["landmarks"] + expression_offsets(emotion, intensity)
    _articulate(p, ident, opening, width, blink)
    rot = rotation(yaw, pitch, roll)
    s = SCALE * size
    origin = np.array([(CENTRE[0] + tx) * size, (CENTRE[1] + ty) * size])

    def project(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = (q - _PIVOT) @ rot.T + _PIVOT
        return r[:, :2] * s + origin, r[:, 2]

    lm, depth = project(p)
    return Geometry(
        landmarks=lm, depth=depth, skull=project(base["skull"])[0],
        hairline=project(base["hairline"])[0], ears=project(base["ears"])[0],
        eyeballs=project(base["eyeballs"])[0], scale=s,
        origin=project(np.zeros((1, 3)))[0][0],
    )
