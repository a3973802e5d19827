"""Generator G (paper §3.1, Eq. 2): StyleGAN2 synthesis with flow-warped identity skips.

At every level 8..size px: modulated up-conv, modulated conv, then ToFlow predicts a
flow offset and a mask from the features; the identity skip f^id of that level (after
EEM when an expression latent is given) is warped by the flow, mixed into the features
by the mask and turned into RGB, which accumulates over levels. The style (driving
latent f^{i->d}) is the same at every layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EDTalkConfig
from .eem import EmotionEnhancement
from .layers import ConstantInput, ConvLayer, ModulatedConv2d, StyledConv, Upsample


def identity_grid(size: int, like: torch.Tensor) -> torch.Tensor:
    """(1, size, size, 2) grid of (x, y) in linspace(-1, 1) -- np.meshgrid 'xy' order as released."""
    t = torch.linspace(-1.0, 1.0, size, dtype=torch.float64).to(like.dtype)
    gy, gx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack((gx, gy), dim=-1).unsqueeze(0).to(like.device)


class ToRGB(nn.Module):
    """1x1 conv + fused leaky ReLU (on RGB, as released) + bias + upsampled previous RGB."""

    def __init__(self, in_ch: int, upsample: bool = True, blur_kernel=(1, 3, 3, 1)) -> None:
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ConvLayer(in_ch, 3, 1, blur_kernel=blur_kernel)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x) + self.bias
        return out if skip is None else out + self.upsample(skip)


class ToFlow(nn.Module):
    """Modulated 1x1 conv (no demodulation) -> 3 channels: flow offset (2, tanh) and mask (1, sigmoid)."""

    def __init__(self, in_ch: int, style_dim: int, blur_kernel=(1, 3, 3, 1)) -> None:
        super().__init__()
        self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, feat: torch.Tensor,
                skip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raw = self.conv(x, style) + self.bias
        if skip is not None:
            raw = raw + self.upsample(skip)
        grid = torch.tanh(raw[:, 0:2]).permute(0, 2, 3, 1) + identity_grid(x.shape[2], x)
        mask = torch.sigmoid(raw[:, 2:3])
        if feat.shape[0] != x.shape[0]:                      # one identity, many frames
            feat = feat.expand(x.shape[0], -1, -1, -1)
        warped = F.grid_sample(feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False) * mask
        return warped, warped + x * (1.0 - mask), raw


class Generator(nn.Module):
    """``dec``: constant 4x4 input -> levels 8..size -> RGB (unbounded; clamp for display)."""

    def __init__(self, cfg: EDTalkConfig) -> None:
        super().__init__()
        ch, d, bk = cfg.channels, cfg.latent_dim, cfg.blur_kernel
        self.input = ConstantInput(ch(4))
        self.conv1 = StyledConv(ch(4), ch(4), 3, d, blur_kernel=bk)
        self.to_rgb1 = ToRGB(ch(4), upsample=False, blur_kernel=bk)  # unused, kept for the layout
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_ch = ch(4)
        for res in cfg.levels:
            out_ch = ch(res)
            self.convs.append(StyledConv(in_ch, out_ch, 3, d, upsample=True, blur_kernel=bk))
            self.convs.append(StyledConv(out_ch, out_ch, 3, d, blur_kernel=bk))
            self.to_rgbs.append(ToRGB(out_ch, blur_kernel=bk))
            self.to_flows.append(ToFlow(out_ch, d, blur_kernel=bk))
            in_ch = out_ch
        if cfg.with_expression:
            self.fineadainresblock = nn.ModuleList(
                EmotionEnhancement(ch(res), d, cfg.eem_hidden) for res in cfg.levels)
        else:
            self.fineadainresblock = None

    def eem_cache(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        """IN(conv2(f^id)) per level: the identity-only part of every EEM (see eem.py)."""
        if self.fineadainresblock is None:
            raise ValueError("this generator has no EEM (lip/pose layout)")
        return [eem.normalized_residual(f) for eem, f in zip(self.fineadainresblock, skips)]

    def forward(self, latent: torch.Tensor, skips: list[torch.Tensor], exp: torch.Tensor | None = None,
                eem_cache: list[torch.Tensor] | None = None) -> torch.Tensor:
        """latent f^{i->d} (B,D); skips f^id coarse->fine (B or 1, C, l, l); exp f^{r->e} (B,D) or None."""
        cl = skips[-1].dim() == 4 and skips[-1].is_contiguous(memory_format=torch.channels_last) \
            and not skips[-1].is_contiguous()
        fmt = torch.channels_last if cl else torch.contiguous_format   # follow the identity's layout
        out = self.conv1(self.input(latent.shape[0]).contiguous(memory_format=fmt), latent)
        rgb = flow = None
        for lvl, feat in enumerate(skips):
            out = self.convs[2 * lvl](out, latent)
            out = self.convs[2 * lvl + 1](out, latent)
            if exp is not None:                                            # Eq. 8
                eem = self.fineadainresblock[lvl]
                feat = eem(feat, exp) if eem_cache is None else eem.modulate(feat, eem_cache[lvl], exp)
            warped, out, flow = self.to_flows[lvl](out, latent, feat, flow)
            rgb = self.to_rgbs[lvl](warped, rgb)
        return rgb
