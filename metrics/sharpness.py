"""CPBD: no-reference sharpness (Narvekar & Karam, IEEE TIP 2011), higher is sharper.

The PyPI ``cpbd`` package (1.0.7, last released 2019) imports ``scipy.ndimage.imread``,
which SciPy removed, so it does not import with current SciPy; this is our own
implementation of the published method:

1. Edges: Canny (scikit-image, sigma 1) on the grey image in [0, 1]; Sobel gradients
   give each edge pixel's direction. Only edges within 45 degrees of vertical are
   measured, because widths are taken along the row (Marziliano's edge width).
2. Edge width: from the edge pixel, walk left and right along the row to the nearest
   intensity extrema (a rising edge runs from a local minimum to a local maximum,
   a falling one the other way); width = distance between them, times |cos| of the
   gradient angle so that a slanted edge counts its width across the edge.
3. The image is cut into 64 x 64 blocks; a block with more than 0.2 % edge pixels is an
   edge block and its contrast (grey max - min, 0..255) sets the just-noticeable blur
   width: 5 px when contrast <= 50, else 3 px.
4. Each measured edge of an edge block gets a probability of detected blur
   P = 1 - exp(-(w / w_JNB) ** 3.6); CPBD = the share of edges with P <= 63 % (the
   value of P at w = w_JNB), i.e. the cumulative probability of blur detection there.

For video, ``cpbd`` averages the per-frame values over frames that have edges.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

BACKEND = "cpbd-ours(Narvekar&Karam2011, skimage canny)"
HIGHER_IS_BETTER = {"cpbd": True}

BLOCK = 64
EDGE_BLOCK_SHARE = 0.002
BETA = 3.6
P_JNB = 1.0 - np.exp(-1.0)  # 0.632: the blur probability at exactly the JNB width
WIDTH_JNB_LOW, WIDTH_JNB_HIGH, CONTRAST_SPLIT = 5.0, 3.0, 50.0


def _grey(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] != 3):
        raise ValueError(f"expected a uint8 grey (H, W) or RGB (H, W, 3) frame, got {frame.dtype} {frame.shape}")
    if frame.ndim == 2:
        return frame.astype(np.float64)
    # ITU-R 601 luma, the weights MATLAB's rgb2gray (and so the original code) uses.
    return frame.astype(np.float64) @ np.array([0.2989, 0.5870, 0.1140])


def _run_ends(stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each column j of a row-wise boolean ``stop`` (H x W-1, one per pixel step):
    index of the first stop at or after j, and of the last stop strictly before j
    (W-1 and -1 when there is none)."""
    h, n = stop.shape
    idx = np.broadcast_to(np.arange(n), (h, n))
    nxt = np.where(stop, idx, n)
    nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1]
    prev = np.where(stop, idx, -1)
    prev = np.maximum.accumulate(prev, axis=1)
    prev = np.concatenate([np.full((h, 1), -1), prev[:, :-1]], axis=1)
    return nxt, prev


def edge_widths(grey: np.ndarray, edges: np.ndarray, gx: np.ndarray, gy: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, widths) of the measurable edge pixels of a grey image (step 2)."""
    h, w = grey.shape
    step = np.diff(grey, axis=1)                       # step[:, j] = I[:, j+1] - I[:, j]
    up_next, up_prev = _run_ends(step <= 0)            # rising edges stop where it stops rising
    down_next, down_prev = _run_ends(step >= 0)
    near_vertical = np.abs(gx) >= np.abs(gy)
    rows, cols = np.nonzero(edges & near_vertical & (gx != 0) & (np.arange(w) < w - 1))
    rising = gx[rows, cols] > 0
    # Rising: maximum at the first non-rising step at/after the pixel; minimum one past the
    # last non-rising step before it. Falling edges mirror this.
    right = np.where(rising, up_next[rows, cols], down_next[rows, cols])
    left = np.where(rising, up_prev[rows, cols], down_prev[rows, cols]) + 1
    cos = np.abs(gx[rows, cols]) / np.hypot(gx[rows, cols], gy[rows, cols])
    return rows, cols, (right - left) * cos


def cpbd_frame(frame: np.ndarray) -> float:
    """CPBD of one frame in [0, 1]; NaN when the frame has no measurable edge."""
    from skimage.feature import canny

    grey = _grey(frame)
    edges = canny(grey / 255.0, sigma=1.0)
    gx = ndimage.sobel(grey, axis=1)
    gy = ndimage.sobel(grey, axis=0)
    rows, cols, widths = edge_widths(grey, edges, gx, gy)
    h, w = grey.shape
    by, bx = rows // BLOCK, cols // BLOCK
    nby, nbx = -(-h // BLOCK), -(-w // BLOCK)
    pad = np.pad(grey, ((0, nby * BLOCK - h), (0, nbx * BLOCK - w)), mode="edge")
    tiles = pad.reshape(nby, BLOCK, nbx, BLOCK)
    contrast = tiles.max(axis=(1, 3)) - tiles.min(axis=(1, 3))
    edge_count = np.add.reduceat(np.add.reduceat(edges.astype(np.int64), np.arange(0, h, BLOCK), 0),
                                 np.arange(0, w, BLOCK), 1)
    # Block area counted in real pixels so that border blocks are judged fairly.
    area = np.outer(np.diff(np.r_[np.arange(0, h, BLOCK), h]), np.diff(np.r_[np.arange(0, w, BLOCK), w]))
    edge_block = edge_count > EDGE_BLOCK_SHARE * area
    keep = edge_block[by, bx] & (widths > 0)
    if not keep.any():
        return float("nan")
    jnb = np.where(contrast[by[keep], bx[keep]] > CONTRAST_SPLIT, WIDTH_JNB_HIGH, WIDTH_JNB_LOW)
    p_blur = 1.0 - np.exp(-np.abs(widths[keep] / jnb) ** BETA)
    return float(np.mean(p_blur <= P_JNB))


def cpbd(frames: np.ndarray, max_frames: int | None = 64) -> tuple[float, str]:
    """Mean CPBD over the frames of a clip (T, H, W, 3) uint8, with the backend name.

    ``max_frames`` evenly spaced frames are scored (None: all); frames without edges
    are left out. ValueError when no frame has a measurable edge.

    >>> rng = np.random.default_rng(0)
    >>> sharp = (rng.random((1, 64, 64, 1)) > 0.5).repeat(3, axis=3).astype(np.uint8) * 255
    >>> round(cpbd(sharp)[0], 2)
    1.0
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be (T, H, W, 3) with T >= 1, got {frames.shape}")
    idx = np.arange(len(frames))
    if max_frames is not None and len(frames) > max_frames:
        idx = np.linspace(0, len(frames) - 1, max_frames).round().astype(int)
    values = np.array([cpbd_frame(frames[i]) for i in idx])
    if np.isnan(values).all():
        raise ValueError("CPBD: no frame has a measurable edge (blank or flat video)")
    return float(np.nanmean(values)), BACKEND
