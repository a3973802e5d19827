"""phi_p: flow-based probabilistic pose generation (§3.3, Eq. 13-14).

A conditional normalizing flow over the 6 pose weights W^p of one frame, conditioned on
the audio feature of that frame *in its temporal context*:

    h_{1:N}   = C(f^a_{1:N})                  temporal context: linear + residual 1-D convs
    z_t       = phi_p^{-1}(w_t, h_t)          data -> latent (Eq. 13)
    phi_p^{-1} = K_K o ... o K_1 o A o S      S: fixed standardisation (fitted statistics)
                                              A: conditional affine, (w - mu(h)) e^{-s(h)}
                                              K_k: affine couplings over a fixed random
                                                   permutation, conditioned on h
    log p(w_t | f^a) = log N(z_t; 0, I) + log |det dz_t / dw_t|   (exact)

Sampling (inference): w-hat_t = phi_p(z_t, h_t), z_t ~ N(0, I) * temperature. With
``rho`` > 0 the latent sequence is an AR(1) process z_t = rho z_{t-1} + sqrt(1 - rho^2) e_t,
whose every z_t is still exactly N(0, I) (so the flow's marginal per frame is kept) but
whose frame-to-frame steps shrink by sqrt(1 - rho). ``fit_temporal_correlation`` sets
rho (per dimension) to the lag-1 autocorrelation of the training latents;
``calibrate_temporal_correlation`` instead picks the rho whose samples have exactly the
ground truth's frame-to-frame jitter. Either way different seeds still give different
sequences (the marginal spread per frame is unchanged).
Temperature 0 gives the deterministic "mean path" phi_p(0, h_t).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import PoseFlowConfig

LOG_2PI = math.log(2 * math.pi)


class TemporalContext(nn.Module):
    """f^a (B, T, C_a) -> h (B, T, H): per-frame projection + residual temporal convs."""

    def __init__(self, cfg: PoseFlowConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.cond_dim, cfg.context_dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(cfg.context_dim, cfg.context_dim, cfg.context_kernel,
                      padding=cfg.context_kernel // 2, padding_mode="replicate")
            for _ in range(cfg.context_layers))

    def forward(self, fa: torch.Tensor) -> torch.Tensor:
        h = self.proj(fa).transpose(1, 2)                              # (B, H, T)
        for conv in self.convs:
            h = h + F.gelu(conv(h))
        return h.transpose(1, 2)


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
        self.cfg = cfg
        self.context = TemporalContext(cfg)
        self.affine = ConditionalAffine(cfg)
        self.couplings = nn.ModuleList(AffineCoupling(cfg, k) for k in range(cfg.n_couplings))
        self.register_buffer("mean", torch.zeros(cfg.dim))
        self.register_buffer("std", torch.ones(cfg.dim))
        self.register_buffer("rho", torch.full((cfg.dim,), float(cfg.temporal_rho)))

    def _check(self, x: torch.Tensor, fa: torch.Tensor) -> None:
        if x.ndim != 3 or x.shape[-1] != self.cfg.dim:
            raise ValueError(f"expected (B, T, {self.cfg.dim}) pose tensor, got {tuple(x.shape)}")
        if fa.shape[:2] != x.shape[:2] or fa.shape[-1] != self.cfg.cond_dim:
            raise ValueError(f"f^a {tuple(fa.shape)} does not match pose {tuple(x.shape)} "
                             f"with cond_dim {self.cfg.cond_dim}")

    @torch.no_grad()
    def fit_normalization(self, w: torch.Tensor) -> None:
        """Set the fixed standardisation S from training pose weights (any leading shape)."""
        flat = w.reshape(-1, self.cfg.dim)
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp(min=1e-4))

    def inverse(self, w: torch.Tensor, fa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 13: z_t = phi_p^{-1}(w_t, f^a_t); returns (z, log|det dz/dw|) with shapes (B,T,d), (B,T)."""
        self._check(w, fa)
        h = self.context(fa)
        z = (w - self.mean) / self.std
        logdet = -torch.log(self.std).sum().expand(w.shape[:2])
        z, ld = self.affine.inverse(z, h)
        logdet = logdet + ld
        for layer in self.couplings:
            z, ld = layer.inverse(z, h)
            logdet = logdet + ld
        return z, logdet

    def forward(self, z: torch.Tensor, fa: torch.Tensor) -> torch.Tensor:
        """w-hat_t = phi_p(z_t, f^a_t) (the generative direction)."""
        self._check(z, fa)
        h = self.context(fa)
        for layer in reversed(self.couplings):
            z = layer(z, h)
        return self.affine(z, h) * self.std + self.mean

    def log_prob(self, w: torch.Tensor, fa: torch.Tensor) -> torch.Tensor:
        """Exact log p(w_t | f^a) per frame, (B, T), in nats: log N(z; 0, I) + log-det."""
        z, logdet = self.inverse(w, fa)
        log_pz = -0.5 * (z.pow(2).sum(-1) + self.cfg.dim * LOG_2PI)
        return log_pz + logdet

    def sample_latent(self, shape: tuple[int, int], temperature: float = 1.0,
                      rho: float | torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """z (B, T, dim) ~ N(0, I) * temperature, AR(1) over time with lag-1 correlation ``rho``.

        ``rho`` None uses the module's (fitted or configured) ``rho`` buffer; 0 gives
        independent frames. Each z_t is marginally N(0, temperature^2 I) for any rho.
        """
        b, t = shape
        r = self.rho if rho is None else torch.as_tensor(rho, dtype=self.mean.dtype).expand(self.cfg.dim)
        r = r.to(self.mean.device)
        eps = torch.randn(b, t, self.cfg.dim, generator=generator, device="cpu").to(self.mean)
        z = torch.empty_like(eps)
        z[:, 0] = eps[:, 0]
        innov = torch.sqrt(1 - r.pow(2))
        for i in range(1, t):
            z[:, i] = r * z[:, i - 1] + innov * eps[:, i]
        return z * temperature

    def sample(self, fa: torch.Tensor, temperature: float = 1.0,
               rho: float | torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Inference: w-hat = phi_p(z, f^a) with z from ``sample_latent``; temperature 0 = mean path."""
        z = self.sample_latent(tuple(fa.shape[:2]), temperature, rho, generator)
        return self.forward(z, fa)

    @torch.no_grad()
    def fit_temporal_correlation(self, w: torch.Tensor, fa: torch.Tensor) -> torch.Tensor:
        """Set ``rho`` to the per-dimension lag-1 autocorrelation of the training latents.

        ``w`` (B, T, dim), ``fa`` (B, T, cond_dim) ground-truth sequences; returns rho,
        clamped to [0, 0.995].
        """
        z, _ = self.inverse(w, fa)
        zc = z - z.mean(dim=(0, 1))
        num = (zc[:, 1:] * zc[:, :-1]).sum(dim=(0, 1))
        den = zc.pow(2).sum(dim=(0, 1)).clamp(min=1e-8)
        self.rho.copy_((num / den).clamp(0.0, 0.995))
        return self.rho.clone()

    @torch.no_grad()
    def calibrate_temporal_correlation(self, w: torch.Tensor, fa: torch.Tensor,
                                       target_ratio: float = 1.0, temperature: float = 1.0,
                                       seed: int = 0, iters: int = 14, max_rho: float = 0.995) -> float:
        """Set a scalar ``rho`` so sampled jitter is ``target_ratio`` x the ground truth's.

        Bisection over rho in [0, max_rho] (sampled jitter falls as rho grows) with a fixed
        seed on the given conditions; returns the chosen rho (the smallest rho whose
        samples are no rougher than the target, or ``max_rho`` if none is).
        """
        goal = target_ratio * jitter(w)
        lo, hi = 0.0, max_rho

        def rough(r: float) -> float:
            g = torch.Generator().manual_seed(seed)
            return jitter(self.sample(fa, temperature, rho=r, generator=g))

        if rough(lo) <= goal:
            hi = lo
        else:
            for _ in range(iters):
                mid = 0.5 * (lo + hi)
                lo, hi = (lo, mid) if rough(mid) <= goal else (mid, hi)
        self.rho.fill_(hi)
        return hi


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
    mean = x.mean(0)
    cov = torch.cov(x.T) + 1e-6 * torch.eye(x.shape[1], dtype=x.dtype)
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return float(-dist.log_prob(y).mean())


def jitter(w: torch.Tensor) -> float:
    """Mean frame-to-frame step ||w_t - w_{t-1}||_2 of (B, T, d) sequences."""
    return float(w.diff(dim=1).norm(dim=-1).mean())
