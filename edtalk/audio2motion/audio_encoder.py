"""E_a: the audio encoder of §3.3, f^a = E_a(a_{1:N}) for each video frame.

Input: for every 25 fps video frame, a window of 100 Hz audio features (MFCC or mel)
centred on it: ``context_frames`` video frames either side, 4 steps of 10 ms per frame,
so +-2 frames give 20 steps. ``frame_windows`` builds those windows from the per-frame
features stored in FRAMES (``mfcc``: 4x13, ``mel``: 4x80), repeating the edge frames.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import nn

from .config import AudioEncoderConfig

STEPS_PER_FRAME = 4
FEATURE_DIMS = {"mfcc": 13, "mel": 80}      # coefficients per 10 ms step


def feature_encoder_config(base: AudioEncoderConfig, feature: str) -> AudioEncoderConfig:
    """E_a's config for the chosen per-step feature (13 MFCC or 80 mel coefficients)."""
    if feature not in FEATURE_DIMS:
        raise ValueError(f"feature must be 'mfcc' or 'mel', got {feature!r}")
    return replace(base, feature_dim=FEATURE_DIMS[feature])


def frame_windows(per_frame: np.ndarray | torch.Tensor, context_frames: int = 2) -> torch.Tensor:
    """(T, 4, D) per-frame features -> (T, (2c+1)*4, D) windows centred on each frame.

    Frames beyond either end repeat the first / last frame (edge clamping).

    >>> frame_windows(np.zeros((3, 4, 13)), 2).shape
    torch.Size([3, 20, 13])
    """
    x = torch.as_tensor(np.asarray(per_frame) if not torch.is_tensor(per_frame) else per_frame,
                        dtype=torch.float32)
    if x.ndim == 2:  # flattened (T, 4*D) as stored in the FRAMES table
        x = x.reshape(x.shape[0], STEPS_PER_FRAME, -1)
    if x.ndim != 3 or x.shape[1] != STEPS_PER_FRAME:
        raise ValueError(f"expected (T, 4, D) or (T, 4*D) features, got {tuple(x.shape)}")
    t = x.shape[0]
    idx = torch.arange(t)[:, None] + torch.arange(-context_frames, context_frames + 1)[None]
    idx = idx.clamp(0, t - 1)                                  # (T, 2c+1)
    return x[idx].reshape(t, (2 * context_frames + 1) * STEPS_PER_FRAME, x.shape[2])


class AudioEncoder(nn.Module):
    """E_a: (B, steps, D) feature window -> f^a (B, out_dim).

    The input is normalised (``input_norm``: per step, or per coefficient by batch norm),
    then 1-D convs run over time (kernel 3; every conv after the first halves the time
    axis) with GELU, then attention-free pooling by mean and max and a linear projection
    to ``out_dim``.
    """

    def __init__(self, cfg: AudioEncoderConfig = AudioEncoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.input_norm not in ("layer", "batch"):
            raise ValueError(f"input_norm must be 'layer' or 'batch', got {cfg.input_norm!r}")
        self.norm = nn.LayerNorm(cfg.feature_dim) if cfg.input_norm == "layer" else nn.BatchNorm1d(cfg.feature_dim)
        layers: list[nn.Module] = []
        c_in = cfg.feature_dim
        for i, c in enumerate(cfg.channels):
            layers += [nn.Conv1d(c_in, c, 3, stride=1 if i == 0 else 2, padding=1), nn.GELU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        self.drop = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(2 * c_in, cfg.out_dim)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        """f^a for a batch of windows (B, steps, D); also accepts (B, T, steps, D) -> (B, T, out)."""
        if window.ndim == 4:
            b, t = window.shape[:2]
            return self.forward(window.flatten(0, 1)).reshape(b, t, -1)
        if window.ndim != 3 or window.shape[-1] != self.cfg.feature_dim:
            raise ValueError(f"expected (B, steps, {self.cfg.feature_dim}) windows, "
                             f"got {tuple(window.shape)}")
        if self.cfg.input_norm == "layer":
            x = self.norm(window).transpose(1, 2)               # (B, D, steps)
        else:
            x = self.norm(window.transpose(1, 2))
        h = self.convs(x)                                       # (B, C, steps')
        pooled = torch.cat([h.mean(-1), h.amax(-1)], dim=1)
        return self.proj(self.drop(pooled))
