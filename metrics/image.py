"""PSNR and SSIM on RGB uint8 frames, EAT's MEAD convention (scikit-image, range 255).

Both are higher-is-better. ``psnr``/``ssim`` score one frame pair; the ``*_frames``
variants score paired videos frame by frame (after the ``linspace`` pairing) and
return per-frame values so that a dataset score can pool all frames of all videos.
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity

from metrics.align import pair

HIGHER_IS_BETTER = {"psnr": True, "ssim": True}


def _check_frame(gt: np.ndarray, pred: np.ndarray, ndim: int) -> None:
    for name, a in (("gt", gt), ("pred", pred)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
            raise ValueError(f"{name} must be a uint8 numpy array, got {getattr(a, 'dtype', type(a))}")
        if a.ndim != ndim or a.shape[-1] != 3:
            want = "H x W x 3" if ndim == 3 else "T x H x W x 3"
            raise ValueError(f"{name} must be {want} RGB, got shape {a.shape}")
    if gt.shape[-3:] != pred.shape[-3:]:
        raise ValueError(f"frame sizes differ: gt {gt.shape[-3:]} vs pred {pred.shape[-3:]}")


def psnr(gt: np.ndarray, pred: np.ndarray) -> float:
    """PSNR in dB with data range 255 (inf for identical frames).

    >>> a = np.zeros((2, 2, 3), np.uint8); b = a.copy(); b[0, 0, 0] = 12  # MSE = 144/12 = 12
    >>> round(psnr(a, b), 4)   # 10 log10(255^2 / 12)
    37.339
    """
    _check_frame(gt, pred, 3)
    return float(_psnr_batch(gt[None], pred[None])[0])


def _psnr_batch(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    diff = gt.astype(np.float64) - pred.astype(np.float64)
    mse = np.mean(diff * diff, axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10((255.0 ** 2) / mse)


def ssim(gt: np.ndarray, pred: np.ndarray) -> float:
    """scikit-image SSIM, channel axis last, data range 255, defaults otherwise.

    >>> a = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    >>> ssim(a, a)
    1.0
    """
    _check_frame(gt, pred, 3)
    return float(structural_similarity(gt, pred, data_range=255, channel_axis=-1))


def psnr_frames(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-pair PSNR of two videos (T x H x W x 3 uint8) after the linspace pairing."""
    _check_frame(gt, pred, 4)
    g, p = pair(gt, pred)
    return _psnr_batch(g, p)


def ssim_frames(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Per-pair SSIM of two videos (T x H x W x 3 uint8) after the linspace pairing."""
    _check_frame(gt, pred, 4)
    g, p = pair(gt, pred)
    return np.array([structural_similarity(a, b, data_range=255, channel_axis=-1)
                     for a, b in zip(g, p)], dtype=np.float64)
