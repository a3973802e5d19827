"""The latent process of phi_p over time (§3.3): its correlation, density and fit.

The latents of one pose sequence follow a Gaussian process over time, per dimension

    z_t = sqrt(a) c + sqrt(1 - a - e) u_t + sqrt(e) eps_t,   c ~ N(0, I) once per sequence,
    eps_t white (the frame-level measurement noise of W^p: the encoder's jitter on real frames),
    u_t stationary, unit variance, lag-1 correlation rho:
        "gaussian" kernel: white noise through a Gaussian filter, corr(k) ~ rho^(k^2)
                           (smooth paths; the default)
        "ar1":             u_t = rho u_{t-1} + sqrt(1 - rho^2) e_t (rough, Markov)

so every z_t is N(0, I) and a whole sequence is N(0, K), K = a 11^T + (1 - a - e) R_rho + e I
per dimension (``process_covariance``, density ``process_log_prob``). ``fit_process`` sets
(rho, a, e) per dimension by maximum likelihood of training sequences; ``smooth_taps`` gives
the filter that draws the "gaussian" u with a given rho.

The dimensions are modelled independently, so ``PoseFlow`` runs the process in the axes
where the training latents' motion within a sequence is uncorrelated
(``within_sequence_axes``); ``ridge_offset`` fits the part of a sequence's offset c that a
per-sequence covariate (the clip's W^e) explains.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

LOG_2PI = math.log(2 * math.pi)
KERNELS = ("gaussian", "ar1")


def gaussian_taps(sigma: float, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Symmetric Gaussian filter taps (radius ceil(4 sigma) + 1) with unit L2 norm."""
    if sigma <= 0:
        return torch.ones(1, dtype=dtype)
    r = int(math.ceil(4 * sigma)) + 1
    j = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (j / sigma) ** 2)
    return (k / k.norm()).to(dtype)


def smooth_taps(rho: float, max_sigma: float = 100.0) -> torch.Tensor:
    """Unit-norm Gaussian taps whose filtered white noise has lag-1 correlation ``rho``.

    Bisection on the filter width (the discrete correlation is increasing in it);
    ``rho`` <= 0 gives a single tap (white noise), ``rho`` is capped at the width ``max_sigma``.
    """
    return _smooth_taps(float(rho), float(max_sigma)).clone()


@functools.lru_cache(maxsize=256)
def _smooth_taps(rho: float, max_sigma: float) -> torch.Tensor:
    if rho <= 1e-6:
        return torch.ones(1, dtype=torch.float64)

    def corr(sigma: float) -> float:
        k = gaussian_taps(sigma)
        return float((k[1:] * k[:-1]).sum())

    lo, hi = math.log(1e-2), math.log(max_sigma)
    if corr(math.exp(hi)) <= rho:
        return gaussian_taps(max_sigma)
    for _ in range(48):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if corr(math.exp(mid)) < rho else (lo, mid)
    return gaussian_taps(math.exp(0.5 * (lo + hi)))


def kernel_correlation(t: int, rho: float, kernel: str = "gaussian") -> torch.Tensor:
    """(t, t) correlation over frames of the unit smooth process u (``sample_latent``'s)."""
    lags = torch.arange(t, dtype=torch.float64)
    if kernel == "ar1":
        r = torch.as_tensor(float(rho), dtype=torch.float64) ** lags
    else:                     # white noise through unit-norm taps: their autocorrelation
        k = smooth_taps(float(rho))
        r = torch.zeros(t, dtype=torch.float64)
        n = min(t, len(k))
        r[:n] = torch.stack([(k[j:] * k[:len(k) - j]).sum() for j in range(n)])
    idx = (lags[:, None] - lags[None]).abs().long()
    return r[idx]


def process_covariance(t: int, rho: torch.Tensor, shared: torch.Tensor, white: torch.Tensor,
                       kernel: str = "gaussian") -> torch.Tensor:
    """(d, t, t): a 11^T + (1 - a - e) R_rho + e I per latent dimension."""
    eye, ones = torch.eye(t, dtype=torch.float64), torch.ones(t, t, dtype=torch.float64)
    return torch.stack([float(a) * ones + max(1.0 - float(a) - float(e), 0.0) * kernel_correlation(t, float(r), kernel)
                        + float(e) * eye for r, a, e in zip(rho, shared, white)])


RHO_GRID = (0.0, *(1.0 - torch.logspace(math.log10(0.5), -4, 29, dtype=torch.float64)).tolist())
SHARED_GRID = torch.linspace(0.0, 0.99, 34, dtype=torch.float64)
WHITE_GRID = torch.logspace(-4, math.log10(0.9), 25, dtype=torch.float64)


def fit_process(latents: Sequence[torch.Tensor], kernel: str = "gaussian", max_rho: float = 0.9999
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Maximum-likelihood (rho, a, e) per dimension of (T_i, d) latent sequences (grid search).

    For one rho the correlation R = Q diag(lam) Q^T is diagonalised once per length, so
    the covariance s R + e I (s = 1 - a - e) is diagonal in Q; the shared a 11^T is a
    rank-one update (matrix determinant lemma, Sherman-Morrison): the exact likelihood of
    every (a, e) on the grid costs O(T) per sequence.
    """
    d = latents[0].shape[1]
    a = SHARED_GRID[:, None, None]
    e = WHITE_GRID[None, :, None]
    s = (1.0 - a - e)
    valid = (s[..., 0] > 0)
    best = torch.full((d,), -math.inf, dtype=torch.float64)
    out = torch.zeros(3, d, dtype=torch.float64)
    for rho in (r for r in RHO_GRID if r <= max_rho):
        total = torch.zeros(len(SHARED_GRID), len(WHITE_GRID), d, dtype=torch.float64)
        eig: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for z in latents:
            t = len(z)
            if t not in eig:
                lam, q = torch.linalg.eigh(kernel_correlation(t, rho, kernel))
                eig[t] = lam.clamp(min=0.0), q, q.sum(0)                     # oq = Q^T 1
            lam, q, oq = eig[t]
            lam = s.clamp(min=0.0) * lam + e                                 # (A, E, T)
            zq = q.T @ z.double()                                            # (T, d)
            quad_z = torch.einsum("aet,td->aed", 1.0 / lam, zq ** 2)
            quad_o = ((oq ** 2) / lam).sum(-1)                               # (A, E)
            cross = torch.einsum("aet,td->aed", oq / lam, zq)
            denom = 1.0 + a[..., 0] * quad_o                                 # (A, E)
            quad = quad_z - a * cross ** 2 / denom[..., None]
            logdet = torch.log(lam).sum(-1) + torch.log(denom)
            total += -0.5 * (quad + logdet[..., None] + t * LOG_2PI)
        total[~valid] = -math.inf
        flat = total.reshape(-1, d)
        val, idx = flat.max(0)
        better = val > best
        best = torch.where(better, val, best)
        ia, ie = idx // len(WHITE_GRID), idx % len(WHITE_GRID)
        cand = torch.stack([torch.full((d,), rho, dtype=torch.float64), SHARED_GRID[ia], WHITE_GRID[ie]])
        out[:, better] = cand[:, better]
    return out[0], out[1], out[2]


def within_sequence_axes(latents: Sequence[torch.Tensor]) -> torch.Tensor:
    """Orthogonal (d, d) eigenvectors of the frame-weighted mean within-sequence covariance of
    (T_i, d) sequences: in these axes the motion about each sequence's mean is uncorrelated
    across dimensions. Total and offset covariances stay what they were (a rotation), and
    since the latents' marginal is N(0, I) the offsets' covariance, I minus the within part,
    is nearly diagonal in the same axes."""
    d = latents[0].shape[1]
    acc, frames = torch.zeros(d, d, dtype=torch.float64), 0
    for z in latents:
        x = z.double() - z.double().mean(0)
        acc += x.T @ x
        frames += len(z)
    _, vectors = torch.linalg.eigh(acc / max(frames, 1))
    return vectors


def ridge_offset(means: torch.Tensor, covariates: torch.Tensor, ridge: float = 1.0
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ridge regression of per-sequence means (N, d) on covariates (N, k): returns
    (center (k,), map (k, d), offset (d,)) with mean_i ~ offset + (x_i - center) @ map."""
    x, y = covariates.double(), means.double()
    center, offset = x.mean(0), y.mean(0)
    a = x - center
    gram = a.T @ a + ridge * torch.eye(x.shape[1], dtype=torch.float64)
    return center, torch.linalg.solve(gram, a.T @ (y - offset)), offset


def process_log_prob(z: torch.Tensor, rho: torch.Tensor, shared: torch.Tensor, white: torch.Tensor,
                     kernel: str = "gaussian") -> torch.Tensor:
    """Total log N(z_{1:T, d}; 0, K_d) over dimensions of (..., T, d) latent sequences, (...,) float64."""
    cov = process_covariance(z.shape[-2], rho, shared, white, kernel)
    dist = torch.distributions.MultivariateNormal(torch.zeros(cov.shape[:2], dtype=torch.float64),
                                                  covariance_matrix=cov)
    return dist.log_prob(z.double().transpose(-1, -2)).sum(-1)
