"""Fréchet distance between feature sets, numerically as pytorch-fid 0.3.0.

``statistics`` and ``frechet_distance`` follow pytorch-fid 0.3.0 step by step (float64,
``np.cov(rowvar=False)``, the 1e-6 diagonal fallback, the 1e-3 imaginary tolerance)
but call SciPy's ``sqrtm`` in a way that works before and after SciPy removed its
``disp`` argument. Lower is better.

Two feature backends:

* ``InceptionFeatures`` — pytorch-fid's InceptionV3 pool3 (2048-d) built from a local
  ``pt_inception-2015-12-05-6726825d.pth`` (never downloads); its scores are "FID".
* ``PooledPixels`` — an offline stand-in: RGB frames average-pooled to a small grid.
  Its scores are a Fréchet distance on those features, labelled ``fd[rgb-pool8]``,
  never "FID".
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import torch
from scipy import linalg

HIGHER_IS_BETTER = False


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (``np.cov(rowvar=False)``) of an N x D feature matrix, float64.

    >>> mu, sigma = statistics(np.array([[0.0, 1.0], [2.0, 3.0]]))
    >>> mu.tolist(), sigma.tolist()
    ([1.0, 2.0], [[2.0, 2.0], [2.0, 2.0]])
    """
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"features must be N x D with N >= 2, got shape {feats.shape}")
    if not np.isfinite(feats).all():
        raise ValueError("features contain NaN or inf")
    return np.mean(feats, axis=0), np.cov(feats, rowvar=False)


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """Matrix square root; NaNs on failure (what old SciPy returned with disp=False)."""
    try:
        out = linalg.sqrtm(m)
    except (linalg.LinAlgError, ValueError):
        return np.full_like(m, np.nan)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray, eps: float = 1e-6) -> float:
    """||mu1-mu2||^2 + tr(S1) + tr(S2) - 2 tr sqrtm(S1 S2), as pytorch-fid 0.3.0.

    >>> frechet_distance(np.zeros(2), np.eye(2), np.ones(2), 4 * np.eye(2))  # 2 + 2*(2-1)^2
    4.0
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1 = np.atleast_2d(sigma1).astype(np.float64)
    sigma2 = np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean vectors differ in length: {mu1.shape} vs {mu2.shape}")
    if sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"covariances must both be {mu1.size}x{mu1.size}, "
                         f"got {sigma1.shape} and {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"Imaginary component {np.max(np.abs(covmean.imag))}")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class FeatureBackend(Protocol):
    """Anything mapping RGB uint8 frames (N x H x W x 3) to an N x D float64 matrix."""

    label: str

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...


def _check_frames(frames: np.ndarray) -> None:
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 N x H x W x 3, got "
                         f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")


class PooledPixels:
    """Offline stand-in features: frames in [0, 1] area-averaged to ``grid`` x ``grid`` RGB.

    >>> PooledPixels()(np.full((1, 16, 16, 3), 255, np.uint8)).shape
    (1, 192)
    """

    def __init__(self, grid: int = 8) -> None:
        if grid < 1:
            raise ValueError(f"grid must be >= 1, got {grid}")
        self.grid = grid
        self.label = f"fd[rgb-pool{grid}]"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        _check_frames(frames)
        x = torch.from_numpy(frames).permute(0, 3, 1, 2).to(torch.float64) / 255.0
        x = torch.nn.functional.adaptive_avg_pool2d(x, self.grid)
        return x.reshape(len(frames), -1).numpy()


class InceptionFeatures:
    """pytorch-fid's InceptionV3 pool3 features from a local weight file (no download).

    Raises ``edtalk.weights.MissingWeights`` when the file is not found.
    """

    label = "fid"

    def __init__(self, weights: str | os.PathLike | None = None, device: str = "cpu",
                 batch_size: int = 50, cache_dir: str | os.PathLike | None = None) -> None:
        from pytorch_fid import inception as pfi

        from edtalk import weights as registry

        path = weights or registry.locate("inception_fid", cache_dir)
        state = registry.load_state_dict(path)
        original = pfi.load_state_dict_from_url
        pfi.load_state_dict_from_url = lambda *a, **k: state  # build offline from our file
        try:
            self.model = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]])
        finally:
            pfi.load_state_dict_from_url = original
        self.model.eval().to(device)
        self.device, self.batch_size = device, batch_size

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        _check_frames(frames)
        out = []
        for i in range(0, len(frames), self.batch_size):
            x = torch.from_numpy(frames[i:i + self.batch_size]).permute(0, 3, 1, 2)
            x = x.to(self.device, torch.float32) / 255.0
            out.append(self.model(x)[0].squeeze(-1).squeeze(-1).cpu().double().numpy())
        return np.concatenate(out)


def default_backend(device: str = "cpu", cache_dir: str | os.PathLike | None = None
                    ) -> FeatureBackend:
    """InceptionFeatures when its weight file is present, else the labelled PooledPixels."""
    from edtalk import weights as registry

    if registry.is_available("inception_fid", cache_dir):
        return InceptionFeatures(device=device, cache_dir=cache_dir)
    return PooledPixels()


def frame_set_distance(gt_features: np.ndarray, pred_features: np.ndarray) -> float:
    """Fréchet distance between two pooled frame-feature sets (N x D each)."""
    return frechet_distance(*statistics(gt_features), *statistics(pred_features))
