"""Drawing one frame from a Geometry with OpenCV (anti-aliased, sub-pixel polygons).

Everything drawn is placed by the projected landmarks (or by extra points that went
through the same projection), so the ground truth describes the pixels exactly. The
look aims at what real face detectors key on: a skin-toned face with darker eye
sockets, eyes with whites, iris and pupil, brows, a shaded nose and lips with a dark
mouth interior and teeth.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from edtalk.data.synthetic.face import (BROW_L, BROW_R, EYE_L, EYE_R, JAW, MOUTH_INNER,
                                        MOUTH_OUTER, Geometry)
from edtalk.data.synthetic.identity import Identity

_SHIFT = 4                 # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT
_AA = cv2.LINE_AA


def _pts(xy: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(xy, np.float64) * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _poly(img: np.ndarray, xy: np.ndarray, colour) -> None:
    cv2.fillPoly(img, [_pts(xy)], colour, _AA, _SHIFT)


def _line(img: np.ndarray, xy: np.ndarray, colour, thickness: float, closed: bool = False) -> None:
    cv2.polylines(img, [_pts(xy)], closed, colour, max(1, int(round(thickness))), _AA, _SHIFT)


def _ellipse(img: np.ndarray, centre, axes, angle: float, colour, thickness: int = -1) -> None:
    c = tuple(int(round(v * _ONE)) for v in centre)
    a = tuple(max(1, int(round(v * _ONE))) for v in axes)
    cv2.ellipse(img, c, a, float(angle), 0, 360, colour, thickness, _AA, _SHIFT)


def _shade(colour, factor: float) -> tuple[int, int, int]:
    # plain Python: called ~20 times per frame, numpy's per-call overhead would dominate
    return tuple(min(255, max(0, int(round(c * factor)))) for c in colour)


@lru_cache(maxsize=64)
def _background(top: tuple, bottom: tuple, size: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, size)[:, None, None]
    img = (1 - t) * np.array(top, np.float64) + t * np.array(bottom, np.float64)
    img = np.broadcast_to(img, (size, size, 3))
    # a soft light spot behind the head, as in a studio shot
    yy, xx = np.mgrid[0:size, 0:size] / size
    glow = np.exp(-((xx - 0.5) ** 2 + (yy - 0.4) ** 2) / 0.08)[..., None]
    img = img * (0.85 + 0.25 * glow)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    out.setflags(write=False)
    return out


def _roll_deg(g: Geometry) -> float:
    d = g.landmarks[45] - g.landmarks[36]
    return float(np.degrees(np.arctan2(d[1], d[0])))


def _torso(img: np.ndarray, ident: Identity, g: Geometry, size: int) -> None:
    s, (ox, oy) = g.scale, g.origin
    chin_y = g.landmarks[8, 1]
    neck = np.array([[ox - 0.42 * s, oy + 0.6 * s], [ox + 0.42 * s, oy + 0.6 * s],
                     [ox + 0.48 * s, size + 2], [ox - 0.48 * s, size + 2]])
    shoulders = np.array([[ox - 2.6 * s, size + 2], [ox - 2.2 * s, chin_y + 0.75 * s],
                          [ox - 0.8 * s, chin_y + 0.45 * s], [ox, chin_y + 0.75 * s],
                          [ox + 0.8 * s, chin_y + 0.45 * s], [ox + 2.2 * s, chin_y + 0.75 * s],
                          [ox + 2.6 * s, size + 2]])
    _poly(img, neck, _shade(ident.skin, 0.78))
    _poly(img, shoulders, ident.shirt)
    # collar opening: skin V at the neck
    _poly(img, np.array([[ox - 0.42 * s, chin_y + 0.5 * s], [ox + 0.42 * s, chin_y + 0.5 * s],
                         [ox, chin_y + 1.0 * s]]), _shade(ident.skin, 0.72))


def _hair_back(img: np.ndarray, ident: Identity, g: Geometry) -> None:
    cap = g.origin + (g.skull - g.origin) * 1.07
    if ident.hair_style == 1:  # long hair falls behind the shoulders
        s = g.scale
        down = np.array([[cap[0, 0] + 0.15 * s, g.origin[1] + 1.6 * s],
                         [cap[-1, 0] - 0.15 * s, g.origin[1] + 1.6 * s]])
        _poly(img, np.concatenate([cap, down[::-1]]), _shade(ident.hair, 0.85))
    else:
        _poly(img, cap, ident.hair)


def _face(img: np.ndarray, ident: Identity, g: Geometry) -> None:
    lm, s = g.landmarks, g.scale
    ear = _shade(ident.skin, 0.88)
    for c in g.ears:
        _ellipse(img, c, (0.14 * s, 0.26 * s), _roll_deg(g), ear)
    outline = np.concatenate([lm[JAW], g.skull[1:-1]])
    _poly(img, outline, _shade(ident.skin, 0.86))
    # an inset, lighter copy of the outline: cheap shading towards the face edges
    centre = lm[JAW].mean(0) * 0.3 + lm[30] * 0.7
    _poly(img, centre + (outline - centre) * 0.9, ident.skin)
    # hair fringe: between the skull cap and the hairline
    cap = g.origin + (g.skull - g.origin) * 1.07
    if ident.hair_style == 2:
        line = g.origin + (g.hairline - g.origin) * 1.1
        colour = tuple(int(0.6 * h + 0.4 * k) for h, k in zip(ident.hair, ident.skin))
    else:
        line = g.hairline
        colour = ident.hair
    _poly(img, np.concatenate([cap, line[::-1]]), colour)


def _eyes(img: np.ndarray, ident: Identity, g: Geometry) -> None:
    lm, s = g.landmarks, g.scale
    socket = _shade(ident.skin, 0.8)
    for eye, brow in ((EYE_R, BROW_R), (EYE_L, BROW_L)):
        pts = lm[eye]
        c = pts.mean(0)
        w = np.linalg.norm(pts[3] - pts[0])
        # darker socket between brow and eye (detectors look for dark eye regions)
        _ellipse(img, c + (lm[brow].mean(0) - c) * 0.3, (0.62 * w, 0.34 * w), _roll_deg(g), socket)
    for eye, ball in ((EYE_R, g.eyeballs[0]), (EYE_L, g.eyeballs[1])):
        pts = lm[eye]
        w = np.linalg.norm(pts[3] - pts[0])
        x0, y0 = np.floor(pts.min(0)).astype(int) - 2
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 3
        h_img, w_img = img.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w_img), min(y1, h_img)
        if x1 <= x0 or y1 <= y0:
            continue
        # draw white + iris + pupil into a patch, then keep it inside the eye opening
        patch = img[y0:y1, x0:x1].copy()
        off = np.array([x0, y0])
        _poly(patch, pts - off, (235, 232, 228))
        _ellipse(patch, ball - off, (0.21 * w, 0.21 * w), 0, ident.iris)
        _ellipse(patch, ball - off, (0.09 * w, 0.09 * w), 0, (15, 12, 12))
        _ellipse(patch, ball - off + np.array([0.06, -0.06]) * w, (0.035 * w, 0.035 * w), 0, (250, 250, 250))
        mask = np.zeros(patch.shape[:2], np.uint8)
        _poly(mask, pts - off, 255)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        region = img[y0:y1, x0:x1]
        region[:] = np.round(region * (1 - alpha) + patch * alpha).astype(np.uint8)
        # upper lid and lashes: a dark line along the upper edge, a light one below
        _line(img, pts[[0, 1, 2, 3]], (30, 22, 20), max(1.0, 0.022 * s))
        _line(img, pts[[3, 4, 5, 0]], _shade(ident.skin, 0.7), max(1.0, 0.01 * s))


def _brows(img: np.ndarray, ident: Identity, g: Geometry) -> None:
    lm, s = g.landmarks, g.scale
    colour = _shade(ident.hair, 0.75) if sum(ident.hair) < 450 else _shade(ident.hair, 0.55)
    th = 0.045 * s * ident.brow_thickness
    for brow in (BROW_R, BROW_L):
        pts = lm[brow]
        taper = np.array([0.6, 1.0, 1.0, 0.9, 0.6]) if brow[0] == 22 else np.array([0.6, 0.9, 1.0, 1.0, 0.6])
        upper = pts - np.array([0, 1.0]) * th * taper[:, None]
        lower = pts + np.array([0, 0.8]) * th * taper[:, None]
        _poly(img, np.concatenate([upper, lower[::-1]]), colour)


def _nose(img: np.ndarray, ident: Identity, g: Geometry) -> None:
    lm, s = g.landmarks, g.scale
    shadow = _shade(ident.skin, 0.72)
    # the bridge sides: the side turned away from the camera gets the darker line
    away = 1 if lm[30, 0] >= lm[27, 0] else -1
    for side, shade in ((-away, 0.86), (away, 0.74)):
        bx = 0.09 * s * side
        line = np.array([lm[28] + [bx, 0], lm[29] + [bx * 1.1, 0], lm[31 if side < 0 else 35]])
        _line(img, line, _shade(ident.skin, shade), max(1.0, 0.025 * s))
    _line(img, lm[31:36], shadow, max(1.0, 0.03 * s))                 # underside
    for i in (32, 34):                                                  # nostrils
        _ellipse(img, lm[i] + [0, -0.01 * s], (0.045 * s, 0.025 * s), _roll_deg(g), (60, 35, 30))
    _ellipse(img, lm[30] + [0, -0.03 * s], (0.06 * s, 0.045 * s), 0, _shade(ident.skin, 1.08))


def _mouth(img: np.ndarray, ident: Identity, g: Geometry) -> None:
    lm, s = g.landmarks, g.scale
    _poly(img, lm[MOUTH_OUTER], ident.lips)
    inner = lm[MOUTH_INNER]
    _poly(img, inner, (45, 15, 20))
    # upper teeth hang from the upper inner lip, a fraction of the local gap
    upper = inner[[0, 1, 2, 3, 4]]
    lower = inner[[0, 7, 6, 5, 4]]
    gap = np.clip(lower[:, 1] - upper[:, 1], 0, None)
    if gap.max() > 1.0:
        teeth_low = upper + np.stack([np.zeros(5), np.minimum(0.45 * gap, 0.09 * s)], 1)
        _poly(img, np.concatenate([upper, teeth_low[::-1]]), (228, 226, 215))
    _line(img, inner[[0, 1, 2, 3, 4]], _shade(ident.lips, 0.6), max(1.0, 0.012 * s))
    # a soft shadow under the lower lip
    _line(img, lm[[56, 57, 58]] + [0, 0.05 * s], _shade(ident.skin, 0.85), max(1.0, 0.03 * s))


def render_frame(ident: Identity, g: Geometry, size: int) -> np.ndarray:
    """One RGB uint8 frame of ``ident`` with the projected geometry ``g``."""
    img = _background(ident.background_top, ident.background_bottom, size).copy()
    _torso(img, ident, g, size)
    _hair_back(img, ident, g)
    _face(img, ident, g)
    _eyes(img, ident, g)
    _brows(img, ident, g)
    _nose(img, ident, g)
    _mouth(img, ident, g)
    return img
