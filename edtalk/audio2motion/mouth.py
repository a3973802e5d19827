"""Audio-driven lip generation (§3.3): E_a + linear MLP^m_A -> W^m, and Eq. 11-12 losses.

L^m_rec needs the frozen generator and is computed by ``train_mouth``; the two losses
here need only weights or SyncNet embeddings and are pure functions.
"""

from __future__ import annotations

import torch
from torch import nn

from .audio_encoder import AudioEncoder
from .config import MouthConfig


class AudioToMouth(nn.Module):
    """W^m-hat = MLP^m_A(E_a(a)): a feature window per frame -> 20 mouth-bank weights."""

    def __init__(self, cfg: MouthConfig = MouthConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = AudioEncoder(cfg.encoder)                         # E_a
        self.head = nn.Linear(cfg.encoder.out_dim, cfg.n_weights)       # MLP^m_A (linear)

    def features(self, window: torch.Tensor) -> torch.Tensor:
        """f^a = E_a(a) for (B, steps, D) or (B, T, steps, D) windows."""
        return self.encoder(window)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """W^m-hat, shape (..., n_weights)."""
        return self.head(self.encoder(window))


def mouth_feature_loss(w_true: torch.Tensor, w_pred: torch.Tensor) -> torch.Tensor:
    """Eq. 11, L^m_fea = ||W^m - W^m-hat||_2: L2 norm over the weights, mean over frames."""
    if w_true.shape != w_pred.shape:
        raise ValueError(f"shape mismatch {tuple(w_true.shape)} vs {tuple(w_pred.shape)}")
    return (w_true - w_pred).norm(dim=-1).mean()


def sync_loss(v: torch.Tensor, s: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Eq. 12, L^m_sync = -log(v.s / max(||v|| ||s||, eps)), mean over the batch.

    ``v``: SyncNet audio embeddings, ``s``: SyncNet video embeddings, both (B, D). As in
    Wav2Lip's expert (ReLU outputs) the cosine is non-negative; it is clamped to
    [eps, 1] before the log so a negative or zero cosine gives a finite, large loss.
    """
    if v.shape != s.shape or v.ndim != 2:
        raise ValueError(f"expected two (B, D) embeddings, got {tuple(v.shape)}, {tuple(s.shape)}")
    denom = torch.clamp(v.norm(dim=1) * s.norm(dim=1), min=eps)
    cos = (v * s).sum(dim=1) / denom
    return -torch.log(cos.clamp(min=eps, max=1.0)).mean()
