"""Perceptual features Phi and the perceptual loss L_per (paper §3.2).

Phi is VGG19 up to relu1_1, relu2_1, relu3_1, relu4_1, relu5_1. With the torchvision
ImageNet weights (``vgg19-dcbb9e9d.pth`` in ``torch.hub.get_dir()/checkpoints``) it is the
paper's network. Offline, where those weights cannot be had, the documented substitute
is ``random_vgg19``: the same architecture with a fixed seeded He (fan-in) init and zero
biases. Why this substitute: random deep conv + ReLU + max-pool features still encode
local structure, edges and texture statistics at growing receptive fields (random-weight
VGG features suffice to reconstruct images and transfer style, He, Wang & Hopcroft,
NeurIPS 2016; Ulyanov et al., CVPR 2018), so L1 between them compares images
multi-scale and structurally rather than per pixel; the He init keeps every slice at a
comparable magnitude; and code path, cost and loss weights stay those of the real
network, so dropping the ImageNet file in later changes nothing else. A third option,
``image_gradients``, (L1 of the image and its x/y finite differences per scale) is a
cheap, weight-free fallback. The chosen name is logged and exposed as ``.name``.

L_per follows the release: L1 (the paper writes L2) on every slice, weight 10 each,
summed over a 4-scale image pyramid (1, 1/2, 1/4, 1/8, by 2x2 average pooling).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

VGG19_FILE = "vgg19-dcbb9e9d.pth"
SLICE_ENDS = (2, 7, 12, 21, 30)             # relu1_1 .. relu5_1 in torchvision's vgg19.features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_vgg19_path() -> Path | None:
    p = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return p if p.is_file() else None


def _random_init_(features: nn.Sequential, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in features:
        if isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_in))
                m.bias.zero_()


class ImageGradients(nn.Module):
    """Weight-free fallback: the image and its finite differences as 'features'."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [x, x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]]


class PerceptualFeatures(nn.Module):
    """Phi: images in [-1, 1] -> list of feature maps. Frozen (no grads to its weights)."""

    def __init__(self, kind: str = "auto", seed: int = 0) -> None:
        super().__init__()
        if kind == "auto":
            kind = "imagenet_vgg19" if imagenet_vgg19_path() is not None else "random_vgg19"
        if kind == "image_gradients":
            self.net: nn.Module = ImageGradients()
            self.slices = None
        elif kind in ("imagenet_vgg19", "random_vgg19"):
            from torchvision.models import vgg      # here: importing torchvision costs ~2 s per process

            features = vgg.make_layers(vgg.cfgs["E"], batch_norm=False)[: SLICE_ENDS[-1]]  # vgg19.features
            if kind == "imagenet_vgg19":
                path = imagenet_vgg19_path()
                if path is None:
                    raise FileNotFoundError(f"{VGG19_FILE} not found under {torch.hub.get_dir()}/checkpoints")
                state = torch.load(path, map_location="cpu", weights_only=True)
                features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                          if k.startswith("features.") and int(k.split(".")[1]) < SLICE_ENDS[-1]})
            else:
                _random_init_(features, seed)
                kind = f"random_vgg19(seed={seed})"
            self.net = features
            self.slices = SLICE_ENDS
        else:
            raise ValueError(f"unknown perceptual network {kind!r}")
        self.name = kind
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()
        log.info("perceptual network Phi: %s", self.name)

    def train(self, mode: bool = True) -> "PerceptualFeatures":
        return super().train(False)  # always frozen

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        if self.slices is None:
            return self.net(img)
        x = ((img + 1) / 2 - self.mean) / self.std
        feats, start = [], 0
        for end in self.slices:
            if start and min(x.shape[-2:]) < 2:   # small pyramid levels: no room for another pool
                break
            x = self.net[start:end](x)
            feats.append(x)
            start = end
        return feats


class PerceptualLoss(nn.Module):
    """L_per: sum over pyramid scales and Phi slices of weight * mean |Phi(x) - Phi(y)|."""

    def __init__(self, phi: PerceptualFeatures | None = None, scales: int = 4, weight: float = 10.0) -> None:
        super().__init__()
        self.phi = phi if phi is not None else PerceptualFeatures()
        self.scales, self.weight = scales, weight

    @property
    def name(self) -> str:
        return self.phi.name

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = x.new_zeros(())
        for s in range(self.scales):
            if s:
                x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
            with torch.no_grad():
                fy = self.phi(y)
            for a, b in zip(self.phi(x), fy):
                loss = loss + self.weight * (a - b).abs().mean()
        return loss
