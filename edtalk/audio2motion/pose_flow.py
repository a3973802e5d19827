"""phi_p: flow-based probabilistic pose generation (§3.3, Eq. 13-14).

A conditional normalizing flow over the 6 pose weights W^p of one frame, conditioned on
the audio feature of that frame *in its temporal context*:

    h_{1:N}   = G_s * C(f^a_{1:N})            temporal context: linear + residual 1-D convs,
                                              then a fixed Gaussian low-pass G_s over frames
    z_t       = phi_p^{-1}(w_t, h_t)          data -> latent (Eq. 13)
    phi_p^{-1} = M o K_K o ... o K_1 o A o S  S: fixed per-dimension standardisation
                                                 (w - m) / sigma
                                              A: conditional affine, (x - mu(h)) e^{-s(h)}
                                              K_k: affine couplings over a fixed random
                                                   permutation, conditioned on h
                                              M: learned lower-triangular linear map
                                                 (positive diagonal): decorrelates
    log p(w_t | f^a) = log N(z_t; 0, I) + log |det dz_t / dw_t|   (exact)

``fit_normalization`` sets m, sigma and M from the training W^p so that, with A and every
K_k at the identity (zero last layers), the untrained flow *is* the full-covariance
Gaussian N(m, Sigma) of the training W^p (M = L^{-1}, L L^T the correlation matrix):
training can only add (conditional, non-Gaussian) structure on top of that baseline, and
the couplings work in the axes of W^p itself, where its per-weight nonlinearity lives.
Shrinking Sigma by ``noise``^2 diag(Sigma) is the Gaussian counterpart of training with
that much dequantisation noise.

Sequences: the latents of one sequence follow a Gaussian process over time
(``latent_process``: a shared offset per sequence, a smooth unit process u with lag-1
correlation rho, white measurement noise), so every z_t is N(0, I) (the flow's per-frame
density is kept) and a whole sequence has the exact density ``sequence_log_prob`` =
log N(z_{1:T}; 0, K) + sum_t log-det. ``fit_temporal_correlation`` sets the process's
(rho, a, e) per dimension by maximum likelihood of the training sequences (``fit_process``).

The process runs in fixed axes of z (``axes``: by default those where the training
latents' motion within a sequence is uncorrelated, so that modelling the dimensions
independently keeps the motion's cross-correlations), and a sequence's offset may be
regressed on the clip's expression W^e (``fit_temporal_correlation(..., exp=...)``): in
process coordinates y = z axes, y_t = m(W^e) + spread * r_t with r_t the process above and
m(W^e) = offset + (W^e - exp_center) exp_map. Unfitted, axes = I, m = 0 and spread = 1.
Why W^e: where PLN also carries expression (on the default corpus a clip's mean W^p is
87.5 % predictable from its mean W^e), the mean W^p of a clip depends on its emotion.

Sampling (inference): w-hat_t = phi_p(z_t, h_t) with z drawn from that process *without*
the measurement noise eps (the noise-free motion; seeds differ through c and u); the
temperature scales the random part spread * r about m(W^e). ``calibrate_temporal_correlation``
only ever raises rho, until sampled jitter is at most ``target_ratio`` x the ground truth's.
Temperature 0 gives the deterministic "mean path" phi_p(m(W^e) axes^T, h_t), smooth because
h is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .config import PoseFlowConfig
from .latent_process import (KERNELS, LOG_2PI, fit_process, gaussian_taps, process_log_prob, ridge_offset,
                             smooth_taps, within_sequence_axes)

LATENT_AXES = ("within", "identity")
OFFSET_RIDGE = 1.0       # ridge of the offset's regression on W^e (W^e's own units)
# every buffer the sampling process is made of (fitted together, saved and restored together)
PROCESS_BUFFERS = ("rho", "shared", "white", "axes", "exp_center", "exp_map", "offset", "spread")

COV_EPS = 1e-6           # ridge on the fitted covariance (the same as ``gaussian_nll``'s)


class TemporalContext(nn.Module):
    """f^a (B, T, C_a) -> h (B, T, H): per-frame projection + residual temporal convs + low-pass."""

    def __init__(self, cfg: PoseFlowConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.cond_dim, cfg.context_dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.context_dim, cfg.context_dim, cfg.context_kernel,
                      padding=cfg.context_kernel // 2, padding_mode="replicate")
            for _ in range(cfg.context_layers))
        # fixed (not learned, not saved: a function of the config) unit-sum Gaussian low-pass
        taps = gaussian_taps(cfg.context_smooth, torch.float32)
        self.register_buffer("smooth", taps / taps.sum(), persistent=False)

    def forward(self, fa: torch.Tensor) -> torch.Tensor:
        h = self.proj(fa).transpose(1, 2)                              # (B, H, T)
        for conv in self.convs:
            h = h + F.gelu(conv(h))
        b, c, t = h.shape
        return _filter_time(h.reshape(b * c, t), self.smooth).reshape(b, c, t).transpose(1, 2)


class Decorrelate(nn.Module):
    """M: z = M y, M lower triangular with a positive (exp-parametrised) diagonal.

    log|det dz/dy| = sum log_diag; the generative direction solves the triangular system.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lower = nn.Parameter(torch.zeros(dim, dim))      # only the strict lower part is used
        self.log_diag = nn.Parameter(torch.zeros(dim))
        self.register_buffer("mask", torch.tril(torch.ones(dim, dim), -1), persistent=False)

    def matrix(self) -> torch.Tensor:
        return self.lower * self.mask + torch.diag(torch.exp(self.log_diag))

    @torch.no_grad()
    def set_matrix(self, m: torch.Tensor) -> None:
        """Set M to a lower-triangular matrix with a positive diagonal."""
        self.lower.copy_(torch.tril(m, -1))
        self.log_diag.copy_(torch.log(torch.diagonal(m)))

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y @ self.matrix().T, self.log_diag.sum()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.reshape(-1, z.shape[-1]).T
        return torch.linalg.solve_triangular(self.matrix(), flat, upper=False).T.reshape(z.shape)


def _mlp(n_in: int, hidden: int, n_out: int) -> nn.Sequential:
    """Two hidden layers; the last layer starts at zero so the flow starts as identity."""
    net = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden),
                        nn.GELU(), nn.Linear(hidden, n_out))
    nn.init.zeros_(net[-1].weight)
    nn.init.zeros_(net[-1].bias)
    return net


class ConditionalAffine(nn.Module):
    """z = (w - mu(h)) exp(-s(h)) elementwise; log|det dz/dw| = -sum s(h)."""

    def __init__(self, cfg: PoseFlowConfig) -> None:
        super().__init__()
        self.net = _mlp(cfg.context_dim, cfg.hidden, 2 * cfg.dim)
        self.clamp = cfg.scale_clamp

    def _params(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, s = self.net(h).chunk(2, dim=-1)
        return mu, self.clamp * torch.tanh(s / self.clamp)

    def inverse(self, w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, s = self._params(h)
        return (w - mu) * torch.exp(-s), -s.sum(-1)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        mu, s = self._params(h)
        return z * torch.exp(s) + mu


class AffineCoupling(nn.Module):
    """Real-NVP coupling on a permuted vector: the first half conditions the second.

    Generative direction: y = x[perm]; y_b <- y_b exp(s(y_a, h)) + t(y_a, h); inverse
    divides; log|det dz/dw| = -sum s. The permutation is fixed (seeded by layer index).
    """

    def __init__(self, cfg: PoseFlowConfig, index: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(1000 + index)
        perm = torch.randperm(cfg.dim, generator=g) if index > 0 else torch.arange(cfg.dim)
        if index % 2 == 1:
            perm = perm.flip(0)
        self.register_buffer("perm", perm)
        self.register_buffer("inv_perm", torch.argsort(perm))
        self.n_keep = cfg.dim // 2
        self.net = _mlp(self.n_keep + cfg.context_dim, cfg.hidden, 2 * (cfg.dim - self.n_keep))
        self.clamp = cfg.scale_clamp

    def _params(self, keep: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self.net(torch.cat([keep, h], dim=-1)).chunk(2, dim=-1)
        return self.clamp * torch.tanh(s / self.clamp), t

    def inverse(self, w: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = w[..., self.perm]
        a, b = y[..., :self.n_keep], y[..., self.n_keep:]
        s, t = self._params(a, h)
        z = torch.cat([a, (b - t) * torch.exp(-s)], dim=-1)[..., self.inv_perm]
        return z, -s.sum(-1)

    def forward(self, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        y = z[..., self.perm]
        a, b = y[..., :self.n_keep], y[..., self.n_keep:]
        s, t = self._params(a, h)
        return torch.cat([a, b * torch.exp(s) + t], dim=-1)[..., self.inv_perm]


class PoseFlow(nn.Module):
    """phi_p: bijection between pose weights w_t and latents z_t given the audio context.

    All tensors are sequences: ``w``/``z`` (B, T, dim), ``fa`` (B, T, cond_dim).
    """

    def __init__(self, cfg: PoseFlowConfig = PoseFlowConfig()) -> None:
        super().__init__()
        if cfg.dim < 2:
            raise ValueError("a coupling flow needs dim >= 2")
        if cfg.temporal_kernel not in KERNELS:
            raise ValueError(f"temporal_kernel must be one of {KERNELS}, got {cfg.temporal_kernel!r}")
        if cfg.latent_axes not in LATENT_AXES:
            raise ValueError(f"latent_axes must be one of {LATENT_AXES}, got {cfg.latent_axes!r}")
        self.cfg = cfg
        self.context = TemporalContext(cfg)
        self.affine = ConditionalAffine(cfg)
        self.couplings = nn.ModuleList(AffineCoupling(cfg, k) for k in range(cfg.n_couplings))
        self.decorrelate = Decorrelate(cfg.dim)
        self.register_buffer("mean", torch.zeros(cfg.dim))
        self.register_buffer("std", torch.ones(cfg.dim))          # per-dim std of the data
        self.register_buffer("scale", torch.ones(cfg.dim))        # sigma of S (std, shrunk)
        self.register_buffer("rho", torch.full((cfg.dim,), float(cfg.temporal_rho)))
        self.register_buffer("shared", torch.full((cfg.dim,), float(cfg.temporal_shared)))
        self.register_buffer("white", torch.zeros(cfg.dim))       # observation-noise fraction e
        # the process's coordinates y = z axes and its W^e-dependent offset (module docstring)
        self.register_buffer("axes", torch.eye(cfg.dim))
        self.register_buffer("exp_center", torch.zeros(cfg.exp_dim))
        self.register_buffer("exp_map", torch.zeros(cfg.exp_dim, cfg.dim))
        self.register_buffer("offset", torch.zeros(cfg.dim))
        self.register_buffer("spread", torch.ones(cfg.dim))

    def _check(self, x: torch.Tensor, fa: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"expected (B, T, {self.cfg.dim}) pose tensor, got {tuple(x.shape)}")
        if fa.shape[:2] != x.shape[:2] or fa.shape[-1] != self.cfg.cond_dim:
            raise ValueError(f"f^a {tuple(fa.shape)} does not match pose {tuple(x.shape)} "
                             f"with cond_dim {self.cfg.cond_dim}")

    @torch.no_grad()
    def fit_normalization(self, w: torch.Tensor, noise: float = 0.0) -> None:
        """Set S and M from training pose weights (any leading shape): N(m, Sigma) at init.

        Sigma is the unbiased covariance + 1e-6 I (exactly ``gaussian_nll``'s Gaussian, so
        the untrained flow reproduces that baseline), plus ``noise``^2 diag(Sigma): the
        covariance of the data after Gaussian dequantisation noise of ``noise`` x the
        per-dimension std (a shrinkage of Sigma towards its diagonal). S divides by
        sigma = sqrt(diag Sigma); M = L^{-1} with L L^T = Sigma / (sigma sigma^T).
        """
        flat = w.reshape(-1, self.cfg.dim).double()
        cov = shrunk_covariance(flat, noise)
        scale = torch.diagonal(cov).sqrt()
        chol = torch.linalg.cholesky(cov / torch.outer(scale, scale))
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp(min=1e-4))
        self.scale.copy_(scale)
        eye = torch.eye(self.cfg.dim, dtype=chol.dtype)
        self.decorrelate.set_matrix(torch.linalg.solve_triangular(chol, eye, upper=False))

    def covariance(self) -> torch.Tensor:
        """Sigma of the flow's Gaussian part (S and M; A, K_k at the identity)."""
        m_inv = torch.linalg.inv(self.decorrelate.matrix())
        return (self.scale[:, None] * m_inv) @ (self.scale[:, None] * m_inv).T

    def _standardise(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (w - self.mean) / self.scale, -torch.log(self.scale).sum()

    def inverse(self, w: torch.Tensor, fa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 13: z_t = phi_p^{-1}(w_t, f^a_t); returns (z, log|det dz/dw|) with shapes (B,T,d), (B,T)."""
        self._check(w, fa)
        h = self.context(fa)
        z, ld = self._standardise(w)
        logdet = ld.expand(w.shape[:2])
        z, ld = self.affine.inverse(z, h)
        logdet = logdet + ld
        for layer in self.couplings:
            z, ld = layer.inverse(z, h)
            logdet = logdet + ld
        z, ld = self.decorrelate.inverse(z)
        return z, logdet + ld

    def forward(self, z: torch.Tensor, fa: torch.Tensor) -> torch.Tensor:
        """w-hat_t = phi_p(z_t, f^a_t) (the generative direction)."""
        self._check(z, fa)
        h = self.context(fa)
        z = self.decorrelate(z)
        for layer in reversed(self.couplings):
            z = layer(z, h)
        return self.affine(z, h) * self.scale + self.mean

    def log_prob(self, w: torch.Tensor, fa: torch.Tensor) -> torch.Tensor:
        """Exact log p(w_t | f^a) per frame, (B, T), in nats: log N(z; 0, I) + log-det."""
        z, logdet = self.inverse(w, fa)
        return _std_normal_logpdf(z) + logdet

    def base_latent(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log|det dz/dw|) through the flow's Gaussian part alone (S, M; A, K_k = id)."""
        x, ld = self._standardise(w)
        z, ld_m = self.decorrelate.inverse(x)
        return z, ld + ld_m

    def base_log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """log N(w_t; m, Sigma) per frame (..., ): the flow's Gaussian part alone (S, M; A, K_k = id)."""
        z, ld = self.base_latent(w)
        return _std_normal_logpdf(z) + ld

    def sample_latent(self, shape: tuple[int, int], temperature: float = 1.0,
                      rho: float | torch.Tensor | None = None,
                      generator: torch.Generator | None = None,
                      shared: float | torch.Tensor | None = None,
                      exp: torch.Tensor | None = None) -> torch.Tensor:
        """z (B, T, dim) = (m(exp) + temperature * spread * r) axes^T with r = sqrt(a) c +
        sqrt(1 - a - e) u: the latent process without its measurement noise e (``white``).
        Unfitted (axes = I, m = 0, spread = 1): z_t ~ N(0, (1 - e) temperature^2 I).

        c ~ N(0, I) once per sequence; u a unit-variance process over time with lag-1
        correlation ``rho`` (kernel ``cfg.temporal_kernel``). ``rho`` / ``shared`` (= a)
        None use the module's fitted or configured buffers; an explicit ``shared`` also
        sets e = 0 (rho = 0 and a = 0 then give independent N(0, I) frames). ``exp``
        (B, exp_dim): each sequence's W^e for the offset m (None: the training mean's).
        """
        b, t = shape
        d = self.cfg.dim
        dtype = self.mean.dtype

        def per_dim(v: float | torch.Tensor | None, buf: torch.Tensor) -> torch.Tensor:
            v = buf if v is None else torch.as_tensor(v, dtype=dtype)
            return v.to("cpu", dtype).expand(d)

        r = per_dim(rho, self.rho).clamp(0.0, 1.0 - 1e-6)
        a = per_dim(shared, self.shared).clamp(0.0, 1.0)
        if self.cfg.temporal_kernel == "gaussian":
            taps = [smooth_taps(float(ri)) for ri in r]
            rad = max(len(k) for k in taps) // 2
            bank = torch.zeros(d, 1, 2 * rad + 1, dtype=torch.float64)
            for i, k in enumerate(taps):
                bank[i, 0, rad - len(k) // 2: rad + len(k) // 2 + 1] = k
            eps = torch.randn(b, t + 2 * rad, d, generator=generator, device="cpu", dtype=dtype)
            u = F.conv1d(eps.transpose(1, 2), bank.to(dtype), groups=d).transpose(1, 2)
        else:
            eps = torch.randn(b, t, d, generator=generator, device="cpu", dtype=dtype)
            u = torch.empty_like(eps)
            u[:, 0] = eps[:, 0]
            innov = torch.sqrt(1 - r.pow(2))
            for i in range(1, t):
                u[:, i] = r * u[:, i - 1] + innov * eps[:, i]
        c = torch.randn(b, 1, d, generator=generator, device="cpu", dtype=dtype)
        e = self.white.to("cpu", dtype).clamp(0.0, 1.0) if shared is None else torch.zeros(d, dtype=dtype)
        r = a.sqrt() * c + (1 - a - e).clamp(min=0.0).sqrt() * u
        return self.from_process(r.to(self.mean.device), exp, temperature)

    # --- the process's coordinates ---------------------------------------------------------
    def process_mean(self, exp: torch.Tensor | None, batch: int) -> torch.Tensor:
        """m(W^e) (B, 1, dim): the offset a sequence's W^e predicts (``offset`` when None)."""
        if exp is None:
            return self.offset.expand(batch, 1, -1)
        exp = torch.as_tensor(exp).to(self.exp_map).reshape(-1, self.cfg.exp_dim)
        if len(exp) not in (1, batch):
            raise ValueError(f"exp has {len(exp)} rows for {batch} sequences")
        return (self.offset + (exp - self.exp_center) @ self.exp_map).expand(batch, -1)[:, None]

    def to_process(self, z: torch.Tensor, exp: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(r, log|det dr/dz| per sequence): latents (B, T, dim) in the process's standard units."""
        m = self.process_mean(exp, z.shape[0]).to(z)
        r = (z @ self.axes.to(z) - m) / self.spread.to(z)
        return r, -z.shape[1] * torch.log(self.spread.to(z)).sum().expand(z.shape[0])

    def from_process(self, r: torch.Tensor, exp: torch.Tensor | None = None,
                     temperature: float = 1.0) -> torch.Tensor:
        """z = (m(exp) + temperature * spread * r) axes^T for process draws r (B, T, dim)."""
        m = self.process_mean(exp, r.shape[0]).to(r)
        return (m + temperature * self.spread.to(r) * r) @ self.axes.to(r).T

    def sample(self, fa: torch.Tensor, temperature: float = 1.0,
               rho: float | torch.Tensor | None = None,
               generator: torch.Generator | None = None,
               shared: float | torch.Tensor | None = None,
               exp: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: w-hat = phi_p(z, f^a) with z from ``sample_latent`` (``exp``: each
        sequence's W^e, for the offset); temperature 0 = the mean path phi_p(m(exp) axes^T, h_t)."""
        z = self.sample_latent(tuple(fa.shape[:2]), temperature, rho, generator, shared, exp)
        return self.forward(z, fa)

    @torch.no_grad()
    def fit_temporal_correlation(self, w: torch.Tensor | Sequence[torch.Tensor],
                                 fa: torch.Tensor | Sequence[torch.Tensor],
                                 max_rho: float = 0.9999,
                                 exp: torch.Tensor | Sequence[torch.Tensor] | None = None) -> torch.Tensor:
        """Set the sampling process (``PROCESS_BUFFERS``) from training sequences; returns rho (dim,).

        ``w`` (B, T, dim) / ``fa`` (B, T, cond_dim), or lists of (1, T_i, .) sequences of
        any lengths. Each latent dimension of z = phi_p^{-1}(w) is modelled over a sequence
        as  sqrt(a) c + sqrt(1 - a - e) u_t + sqrt(e) eps_t  (c per sequence, u the
        kernel's smooth unit process with lag-1 correlation rho, eps white): the exact
        Gaussian sequence likelihood (``process_log_prob``) of the training latents is
        maximised per dimension over a grid of (rho, a, e). eps is the frame-level
        measurement noise of W^p (the encoder's jitter on real frames): it counts in the
        likelihood (``sequence_log_prob``) but is not replayed by ``sample`` -- samples are
        the noise-free motion.

        First the axes (``cfg.latent_axes``); then, with ``exp`` (one W^e per sequence, (B,
        exp_dim) or a list), the offset m(W^e) by ridge regression of the sequences' mean
        latents on their W^e, and ``spread`` as the residual's RMS per axis; the process is
        fitted to the residual in those units. Without ``exp``: m = 0, spread = 1.
        """
        pairs = list(zip(w, fa)) if isinstance(w, (list, tuple)) else list(zip(w[:, None], fa[:, None]))
        latents = []
        for wi, fi in pairs:
            wi = wi if wi.ndim == 3 else wi[None]
            fi = fi if fi.ndim == 3 else fi[None]
            if wi.shape[1] >= 3:
                latents.append(self.inverse(wi, fi)[0][0].double().cpu())
        if not latents:
            raise ValueError("need at least one sequence of >= 3 frames")
        if exp is not None and len(exp) != len(pairs):
            raise ValueError(f"{len(exp)} W^e rows for {len(pairs)} sequences")
        d = self.cfg.dim
        axes = (within_sequence_axes(latents) if self.cfg.latent_axes == "within"
                else torch.eye(d, dtype=torch.float64))
        latents = [z @ axes for z in latents]
        center, weights = torch.zeros(self.cfg.exp_dim), torch.zeros(self.cfg.exp_dim, d)
        offset, spread = torch.zeros(d), torch.ones(d)
        if exp is not None:
            rows = [torch.as_tensor(e).reshape(-1) for e, (wi, _) in zip(exp, pairs) if wi.shape[-2] >= 3]
            if any(len(r) != self.cfg.exp_dim for r in rows):
                raise ValueError(f"W^e rows must have exp_dim = {self.cfg.exp_dim} values")
            center, weights, offset = ridge_offset(torch.stack([z.mean(0) for z in latents]),
                                                   torch.stack(rows), OFFSET_RIDGE)
            latents = [z - offset - (e.double() - center) @ weights for z, e in zip(latents, rows)]
            spread = torch.cat(latents).pow(2).mean(0).sqrt().clamp(min=1e-6)
            latents = [z / spread for z in latents]
        for name, value in zip(("axes", "exp_center", "exp_map", "offset", "spread"),
                               (axes, center, weights, offset, spread)):
            getattr(self, name).copy_(value.to(getattr(self, name)))
        rho, shared, white = fit_process(latents, self.cfg.temporal_kernel, max_rho)
        self.rho.copy_(rho.to(self.rho))
        self.shared.copy_(shared.to(self.shared))
        self.white.copy_(white.to(self.white))
        return self.rho.clone()

    def sequence_log_prob(self, w: torch.Tensor, fa: torch.Tensor,
                          exp: torch.Tensor | None = None) -> torch.Tensor:
        """Exact log p(w_{1:T} | f^a, W^e) of whole sequences, (B,), nats: the latent process's
        Gaussian density of z_{1:T} (``process_log_prob`` in its own units) + every log-det."""
        z, logdet = self.inverse(w, fa)
        r, ld = self.to_process(z, exp)
        ll = process_log_prob(r.cpu(), self.rho.cpu(), self.shared.cpu(), self.white.cpu(),
                              self.cfg.temporal_kernel)
        return ll.to(z) + ld + logdet.sum(1)

    @torch.no_grad()
    def calibrate_temporal_correlation(self, w: torch.Tensor, fa: torch.Tensor,
                                       target_ratio: float = 1.0, temperature: float = 1.0,
                                       seed: int = 0, iters: int = 14, max_rho: float = 0.995,
                                       exp: torch.Tensor | None = None) -> float:
        """Raise ``rho`` (never lower it) until sampled jitter is <= ``target_ratio`` x the ground truth's.

        Bisection over a scalar rho in [current max rho, max_rho] (sampled jitter falls as rho
        grows) with a fixed seed on the given equal-length sequences; keeps the current
        (possibly per-dimension) rho when it already meets the target. Returns max(rho).
        """
        goal = target_ratio * jitter(w)

        def rough(r: float | None) -> float:
            g = torch.Generator().manual_seed(seed)
            return jitter(self.sample(fa, temperature, rho=r, generator=g, exp=exp))

        lo = float(self.rho.max())
        if rough(None) <= goal or lo >= max_rho:
            return lo
        hi = max_rho
        if rough(hi) <= goal:
            for _ in range(iters):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if rough(mid) <= goal else (mid, hi)
        self.rho.fill_(hi)
        return hi


def _filter_time(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (N, T) through the symmetric filter ``kernel`` (K,), edges replicated."""
    if len(kernel) == 1:
        return x * kernel.to(x.dtype)
    r = len(kernel) // 2
    y = F.pad(x[:, None], (r, r), mode="replicate")
    return F.conv1d(y, kernel.to(x.dtype).view(1, 1, -1)).squeeze(1)


def _std_normal_logpdf(z: torch.Tensor) -> torch.Tensor:
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * LOG_2PI)


def shrunk_covariance(x: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
    """Unbiased covariance of rows ``x`` (N, d) + 1e-6 I, + ``noise``^2 diag (float64)."""
    x = x.double()
    cov = torch.cov(x.T).reshape(x.shape[1], x.shape[1]) + COV_EPS * torch.eye(x.shape[1], dtype=x.dtype)
    return cov + noise ** 2 * torch.diag(torch.diagonal(cov))


def select_noise(groups: Sequence[torch.Tensor], candidates: Sequence[float]) -> tuple[float, dict[float, float]]:
    """Leave-one-group-out choice of the dequantisation noise (as a Gaussian shrinkage).

    ``groups``: training W^p (N_g, d) of each group (identity). For each candidate, a
    Gaussian with ``shrunk_covariance(others, noise)`` is scored on every held-out group;
    returns the candidate with the best mean log-likelihood per held-out frame and all
    scores. With fewer than two groups nothing can be held out: the smallest candidate.
    """
    cands = sorted(float(c) for c in candidates)
    if len(groups) < 2:
        return cands[0], {}
    scores = {}
    for noise in cands:
        total, frames = 0.0, 0
        for i, held in enumerate(groups):
            rest = torch.cat([g for j, g in enumerate(groups) if j != i]).double()
            cov = shrunk_covariance(rest, noise)
            dist = torch.distributions.MultivariateNormal(rest.mean(0), covariance_matrix=cov)
            total += float(dist.log_prob(held.double()).sum())
            frames += len(held)
        scores[noise] = total / frames
    best = max(cands, key=lambda c: scores[c])
    return best, scores


# --- losses (Eq. 13-14) and evaluation helpers ---------------------------------------------

def mle_loss(flow: PoseFlow, w: torch.Tensor, fa: torch.Tensor) -> torch.Tensor:
    """Eq. 13, L_MLE = -sum_t log p_Z(z_t) with the flow's log-det, averaged per frame (nats)."""
    return -flow.log_prob(w, fa).mean()


def pose_rec_loss(w_true: torch.Tensor, w_pred: torch.Tensor) -> torch.Tensor:
    """Eq. 14, L^p_rec = ||W^p - W^p-hat||_2 (L2 over the 6 weights, mean over frames)."""
    return (w_true - w_pred).norm(dim=-1).mean()


def temporal_loss(w_true: torch.Tensor, w_pred: torch.Tensor) -> torch.Tensor:
    """Eq. 14, L_tem = 1/(N-1) sum_t ||(w_t - w_{t-1}) - (w-hat_t - w-hat_{t-1})||_2 on (B, N, d)."""
    if w_true.shape != w_pred.shape or w_true.ndim != 3 or w_true.shape[1] < 2:
        raise ValueError(f"expected two equal (B, N>=2, d) sequences, got "
                         f"{tuple(w_true.shape)}, {tuple(w_pred.shape)}")
    return (w_true.diff(dim=1) - w_pred.diff(dim=1)).norm(dim=-1).mean()


def pose_losses(flow: PoseFlow, w: torch.Tensor, fa: torch.Tensor, rec_temperature: float = 0.0,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """L_MLE, L^p_rec and L_tem for one batch of sequences.

    Since phi_p is bijective, phi_p(phi_p^{-1}(w)) = w and a reconstruction through the
    inferred z is trivially exact; W^p-hat is therefore generated from a *sampled* latent
    at ``rec_temperature`` (0 = the mean path, z = 0), which ties the flow's typical
    output and its frame-to-frame motion to the ground truth.
    """
    w_hat = flow.sample(fa, temperature=rec_temperature, generator=generator)
    return {"mle": mle_loss(flow, w, fa), "rec": pose_rec_loss(w, w_hat),
            "tem": temporal_loss(w, w_hat)}


def gaussian_nll(train: torch.Tensor, test: torch.Tensor) -> float:
    """Mean NLL per frame (nats) of ``test`` under a full-covariance Gaussian fitted to ``train``."""
    x = train.reshape(-1, train.shape[-1]).double()
    y = test.reshape(-1, test.shape[-1]).double()
    dist = torch.distributions.MultivariateNormal(x.mean(0), covariance_matrix=shrunk_covariance(x))
    return float(-dist.log_prob(y).mean())


def jitter(w: torch.Tensor) -> float:
    """Mean frame-to-frame step ||w_t - w_{t-1}||_2 of (B, T, d) sequences."""
    return float(w.diff(dim=1).norm(dim=-1).mean())
