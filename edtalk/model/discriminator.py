"""Discriminator D for L_adv: StyleGAN2 residual discriminator in the release's key layout.

``convs`` (1x1 from RGB, residual down blocks to 4 px) -> minibatch standard deviation
(group 4, one feature) -> ``final_conv`` 3x3 -> ``final_linear`` (linear + fused lrelu,
linear to one logit).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import EDTalkConfig
from .layers import ConvLayer, EqualLinear, downsampling_stack


class Discriminator(nn.Module):
    def __init__(self, cfg: EDTalkConfig, stddev_group: int = 4) -> None:
        super().__init__()
        ch, bk = cfg.channels, cfg.blur_kernel
        self.convs = nn.Sequential(*downsampling_stack(cfg.size, ch, bk))
        self.stddev_group = stddev_group
        self.final_conv = ConvLayer(ch(4) + 1, ch(4), 3, blur_kernel=bk)
        self.final_linear = nn.Sequential(EqualLinear(ch(4) * 16, ch(4), activation=True), EqualLinear(ch(4), 1))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img (B,3,H,W) -> realness logits (B,1)."""
        out = self.convs(img)
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        if b % group:
            group = 1
        y = out.view(group, -1, 1, c, h, w)                               # minibatch std
        y = torch.sqrt(y.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        out = torch.cat([out, y.repeat(group, 1, h, w)], 1)
        return self.final_linear(self.final_conv(out).flatten(1))
