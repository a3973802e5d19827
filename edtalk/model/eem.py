"""Emotion Enhancement Module EEM (paper §3.2, Eq. 8).

EEM(f^id, f^{r->e}) = f^id + AdaIN(conv2(f^id); f^{r->e}), AdaIN(x; e) = IN(x) (1 + gamma(e)) + beta(e).

The release also computes conv1 -> AdaIN1 -> leaky ReLU and then overwrites it; that
branch never reaches the output, so ``forward`` skips it and ``forward_as_released``
keeps it for the reference check. Because conv2 and IN only see the identity features,
``normalized_residual`` can be computed once per identity and ``modulate`` applied per
frame (the fast inference path).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AdaIN(nn.Module):
    """Instance norm (no affine, eps 1e-5) modulated by an MLP of the expression latent."""

    def __init__(self, channels: int, style_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(style_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def affine(self, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.mlp_shared(e.flatten(1))
        return self.mlp_gamma(h)[:, :, None, None], self.mlp_beta(h)[:, :, None, None]

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        return F.instance_norm(x, eps=1e-5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.affine(e)
        return self.normalize(x) * (1 + gamma) + beta


class EmotionEnhancement(nn.Module):
    def __init__(self, channels: int, style_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)  # dead branch as released
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.norm1 = AdaIN(channels, style_dim, hidden)          # dead branch as released
        self.norm2 = AdaIN(channels, style_dim, hidden)

    def normalized_residual(self, feat: torch.Tensor) -> torch.Tensor:
        """IN(conv2(f^id)): depends on the identity only."""
        return AdaIN.normalize(self.conv2(feat))

    def modulate(self, feat: torch.Tensor, norm_res: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """Eq. 8 given the precomputed IN(conv2(f^id)); broadcasts identity over frames."""
        gamma, beta = self.norm2.affine(e)
        return feat + norm_res * (1 + gamma) + beta

    def forward(self, feat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        return self.modulate(feat, self.normalized_residual(feat), e)

    def forward_as_released(self, feat: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        dead = F.leaky_relu(self.norm1(self.conv1(feat), e), 0.01)  # computed, then overwritten
        del dead
        return feat + self.norm2(self.conv2(feat), e)
