"""StyleGAN2 building blocks in the layout of the released EDTalk/LIA code.

Every module keeps the parameter and buffer names of the release (``weight``, ``bias``,
``kernel``, ``modulation``) so that its state dict loads unchanged. Equalised learning
rate: weights are stored N(0, 1) and scaled by 1/sqrt(fan_in) at run time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)


def make_kernel(k: Sequence[int]) -> torch.Tensor:
    """Separable FIR kernel k k^T normalised to sum 1."""
    t = torch.tensor(list(k), dtype=torch.float32)
    t = t[None, :] * t[:, None]
    return t / t.sum()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero-insert upsample by ``up``, pad, filter by ``kernel`` (true convolution), subsample.

    Depthwise conv on all channels at once (no reshape to one channel as in the release);
    identical arithmetic.
    """
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    p0, p1 = pad
    x = F.pad(x, [p0, p1, p0, p1])
    weight = torch.flip(kernel, [0, 1]).to(x.dtype)
    if x.dtype in (torch.float32, torch.bfloat16, torch.float16):   # oneDNN depthwise kernel
        x = F.conv2d(x, weight.expand(c, 1, *kernel.shape), groups=c)
    else:                                                            # float64: no fast grouped path
        hp, wp = x.shape[2], x.shape[3]
        x = F.conv2d(x.reshape(b * c, 1, hp, wp), weight[None, None]).reshape(b, c, hp - kernel.shape[0] + 1, -1)
    return x[:, :, ::down, ::down] if down > 1 else x


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, slope: float = 0.2, scale: float = SQRT2) -> torch.Tensor:
    """leaky_relu(x + b) * sqrt(2): StyleGAN2's gain-corrected activation."""
    if bias.dim() == 1:
        bias = bias.view(1, -1, *([1] * (x.dim() - 2)))
    return F.leaky_relu(x + bias, slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[int], pad: tuple[int, int], upsample_factor: int = 1) -> None:
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """x2 zero-insertion + blur (used on the RGB and flow skips)."""

    def __init__(self, kernel: Sequence[int], factor: int = 2) -> None:
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = len(kernel) - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, k: int, stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None
        self.scale = 1.0 / math.sqrt(in_ch * k * k)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)


class EqualLinear(nn.Module):
    """Equalised linear layer; no activation unless ``activation`` (the heads have none)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias)


class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU | ScaledLeakyReLU]; keys ``N.weight`` etc."""

    def __init__(self, in_ch: int, out_ch: int, k: int, downsample: bool = False,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1), bias: bool = True, activate: bool = True) -> None:
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (k - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, k // 2
        layers.append(EqualConv2d(in_ch, out_ch, k, stride, padding, bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Residual down block of E and D: (conv3x3; blur + conv3x3/2) + (blur + 1x1/2), / sqrt 2."""

    def __init__(self, in_ch: int, out_ch: int, blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2


def downsampling_stack(size: int, channels, blur_kernel) -> list[nn.Module]:
    """StyleGAN2's image trunk shared by E and D: a 1x1 conv from RGB, then one residual
    down block per halving from ``size`` to 4 px (``channels(res)`` channels at res)."""
    layers: list[nn.Module] = [ConvLayer(3, channels(size), 1, blur_kernel=blur_kernel)]
    res = size
    while res > 4:
        layers.append(ResBlock(channels(res), channels(res // 2), blur_kernel))
        res //= 2
    return layers


class ModulatedConv2d(nn.Module):
    """StyleGAN2 modulated convolution (optionally transposed x2 + blur).

    The release folds the style into a per-sample weight and runs a grouped conv. Here
    the style scales the *input* channels and demodulation scales the *output* channels,
    which is the same linear map (conv(x * s, w) * d == conv(x, w * s * d)) but lets a
    whole batch share one dense conv. ``reference.py`` keeps the release's form.
    """

    def __init__(self, in_ch: int, out_ch: int, k: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.in_ch, self.out_ch, self.k = in_ch, out_ch, k
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            p = (len(blur_kernel) - 2) - (k - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1), upsample_factor=2)
        self.scale = 1.0 / math.sqrt(in_ch * k * k)
        self.padding = k // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, k, k))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        s = self.modulation(style)                                   # (B, Cin)
        w = self.weight[0] * self.scale                              # (Cout, Cin, k, k)
        x = x * s.view(b, -1, 1, 1)
        if self.upsample:
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
        else:
            out = F.conv2d(x, w, padding=self.padding)
        if self.demodulate:                                          # rsqrt(sum (w s)^2 + 1e-8)
            d = torch.rsqrt(s.square() @ w.square().sum((2, 3)).t() + 1e-8)
            out = out * d.view(b, -1, 1, 1)
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    """Kept for the state-dict layout; EDTalk never injects noise."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class StyledConv(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, k: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, k, style_dim, upsample=upsample, blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style)))


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)
