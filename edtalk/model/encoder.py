"""Encoder E (paper §3.1): image -> latent f^{.->r} and identity skip features f^id."""

from __future__ import annotations

import torch
from torch import nn

from .config import EDTalkConfig
from .layers import EqualConv2d, downsampling_stack


class EncoderApp(nn.Module):
    """1x1 conv, one residual down block per halving down to 4 px, 4x4 valid conv to the latent."""

    def __init__(self, cfg: EDTalkConfig) -> None:
        super().__init__()
        ch = cfg.channels
        convs = downsampling_stack(cfg.size, ch, cfg.blur_kernel)
        convs.append(EqualConv2d(ch(4), cfg.latent_dim, 4, padding=0, bias=False))
        self.convs = nn.ModuleList(convs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        feats = []
        for conv in self.convs:
            x = conv(x)
            feats.append(x)
        # skips coarse -> fine, dropping the 1x1 latent and the 4x4 map: 8, 16, ..., size px
        return x.flatten(1), feats[::-1][2:]


class Encoder(nn.Module):
    """E. Wraps ``net_app`` to keep the release's key prefix ``enc.net_app``."""

    def __init__(self, cfg: EDTalkConfig) -> None:
        super().__init__()
        self.net_app = EncoderApp(cfg)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """img (B,3,H,W) in [-1,1] -> latent (B,D), skips [(B,C_l,l,l) for l = 8..size]."""
        return self.net_app(img)
