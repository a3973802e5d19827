"""A small CNN 68-point landmark regressor for low-resolution faces, and its suite landmarker.

dlib's detector finds no face in 64 px crops (let alone generated ones), so M-/F-LMD at
the corpus' resolution need a landmarker that works there. ``LandmarkNet`` regresses
the 68 iBUG points (coordinates as fractions of the frame side) from one RGB crop; it is
trained in-pipeline (``edtalk.train.experts.landmark_train``). ``NetLandmarker`` wraps a
trained net as the callable ``metrics.suite`` expects, frames -> (T x 68 x 2 pixels,
T-bool valid mask), labelled ``landmarks:trained-here@<sha256[:8]>``. A regressor always
answers, so every frame is marked valid. dlib stays the backend for real data at 256 px.
``LandmarkNet.forward`` ([0, 1] images -> points) is the differentiable entry point.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edtalk.data.schema import N_LANDMARKS


@dataclass(frozen=True)
class LandmarkConfig:
    image_size: int = 64
    width: int = 16


class LandmarkNet(nn.Module):
    """N x 3 x S x S in [0, 1] -> N x 68 x 2 coordinates in [0, 1] of the frame side.

    >>> LandmarkNet(LandmarkConfig(32, 4))(torch.zeros(2, 3, 32, 32)).shape
    torch.Size([2, 68, 2])
    """

    def __init__(self, config: LandmarkConfig = LandmarkConfig()) -> None:
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        c_in = 3
        for mult in (1, 2, 4, 8):
            c = config.width * mult
            layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                       nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Linear(4 * c_in, 2 * N_LANDMARKS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (0.5 + self.head(self.trunk(x))).reshape(len(x), N_LANDMARKS, 2)


def to_input(frames: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 T x H x W x 3 -> T x 3 x size x size float in [0, 1] (bilinear)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[-1] != 3:
        raise ValueError("frames must be uint8 T x H x W x 3 RGB")
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-2:] != (size, size):
        x = nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x


def save(net: LandmarkNet, path: str | os.PathLike) -> None:
    """Save as ``{"config": {...}, "state_dict": {...}}`` (weights_only-safe), atomically."""
    from edtalk.data import atomic

    buf = io.BytesIO()   # in memory: a file's archive name would make the bytes (and hash) vary
    torch.save({"config": asdict(net.config), "state_dict": net.state_dict()}, buf)
    atomic.write_bytes(path, buf.getvalue())


class NetLandmarker:
    """The suite's landmark callable around a trained :class:`LandmarkNet`, or around any
    network with ``config.image_size`` whose ``points`` method maps [0, 1] images to
    N x 68 x 2 fractions of the frame side (the emotion net's heatmap head)."""

    def __init__(self, net: nn.Module, label: str = "landmarks:trained-here@unhashed",
                 batch_size: int = 256, device: str | torch.device = "cpu",
                 points: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.net = net.eval().to(device)
        self.points = points or self.net
        self.label, self.batch_size, self.device = label, batch_size, device

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = to_input(frames, self.net.config.image_size)
        out = torch.cat([self.points(x[i:i + self.batch_size].to(self.device)).cpu()
                         for i in range(0, len(x), self.batch_size)])
        scale = np.array([frames.shape[2], frames.shape[1]], dtype=np.float64)   # (W, H)
        return out.double().numpy() * scale, np.ones(len(frames), dtype=bool)


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> NetLandmarker:
    """A landmarker from a :func:`save` file, labelled ``landmarks:trained-here@<sha256[:8]>``."""
    from edtalk.data.resume import file_sha256
    from edtalk.weights import load_state_dict

    obj = load_state_dict(path)
    if not ("config" in obj and "state_dict" in obj):
        raise ValueError(f"{path} is not a landmark regressor saved by edtalk.experts.landmark_net.save")
    net = LandmarkNet(LandmarkConfig(**dict(obj["config"])))
    net.load_state_dict(obj["state_dict"])
    return NetLandmarker(net, f"landmarks:trained-here@{file_sha256(path)[:8]}", device=device)
