"""SyncNet (syncnet_v2): the network, its loaders and the one input convention.

``SyncNet`` has the module and parameter names of the released ``syncnet_v2.model``
(``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``), so ``SyncNet.from_file``
loads that file unchanged. ``SyncConfig`` also describes scaled-down variants (fewer
channels, smaller frames) for the evaluator trained in-pipeline; the full network is
``SyncConfig()`` (width 1, 224 px, 1024-d).

Input convention, shared by the scorer (``metrics.sync``), the SyncNet training and the
audio-to-mouth sync loss: lips are BGR 0-255 frames at the network's size, stacked as
windows of ``SYNC_FRAMES`` frames (N x 3 x 5 x S x S); audio is python_speech_features
MFCC (defaults) of 16 kHz int16 speech, ``MFCC_PER_FRAME`` steps per 25 fps frame, cut
into windows of ``MFCC_STEPS`` steps (N x 1 x 13 x 20) starting at the lip window's
first frame.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np
import python_speech_features
import torch
import torch.nn.functional as F
from torch import nn

from edtalk.data.schema import SAMPLE_RATE

SYNC_FRAMES = 5          # video frames per lip window
MFCC_PER_FRAME = 4       # MFCC steps (10 ms hop) per 25 fps video frame
MFCC_STEPS = SYNC_FRAMES * MFCC_PER_FRAME   # 20 MFCC steps per audio window
N_MFCC = 13


@dataclass(frozen=True)
class SyncConfig:
    """Architecture of a SyncNet: ``width`` scales every channel count; ``image_size``
    is the square frame size (the last lip conv's kernel adapts to it)."""

    width: float = 1.0
    image_size: int = 224
    embed_dim: int = 1024

    def channels(self, c: int) -> int:
        return max(4, int(round(c * self.width)))

    @property
    def is_reference(self) -> bool:
        return self == SyncConfig()

    def lip_final_kernel(self) -> int:
        """Spatial size reaching the last lip conv (6 for 224 px)."""
        s = self.image_size
        s = (s - 7) // 2 + 1          # conv k7 s2
        s = (s - 3) // 2 + 1          # pool k3 s2
        s = (s + 2 - 5) // 2 + 1      # conv k5 s2 p1
        s = (s + 2 - 3) // 2 + 1      # pool k3 s2 p1
        s = (s - 3) // 2 + 1          # pool k3 s2
        if s < 1:
            raise ValueError(f"image_size {self.image_size} is too small for SyncNet (min 51)")
        return s


def _block(conv: nn.Module, bn: nn.Module, pool: nn.Module | None = None) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)] + ([pool] if pool is not None else [])


def _fc(c_in: int, embed: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, c_in), nn.BatchNorm1d(c_in), nn.ReLU(inplace=True),
                         nn.Linear(c_in, embed))


class SyncNet(nn.Module):
    """The syncnet_v2 two-stream network (audio: N x 1 x 13 x 20; lips: N x 3 x 5 x S x S).

    >>> net = SyncNet(SyncConfig(width=0.125, image_size=64, embed_dim=32)).eval()
    >>> net.forward_aud(torch.zeros(2, 1, 13, 20)).shape, net.forward_lip(torch.zeros(2, 3, 5, 64, 64)).shape
    (torch.Size([2, 32]), torch.Size([2, 32]))
    """

    def __init__(self, config: SyncConfig = SyncConfig()) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        c64, c96, c192, c256, c384, c512 = (c(64), c(96), c(192), c(256), c(384), c(512))
        self.netcnnaud = nn.Sequential(
            *_block(nn.Conv2d(1, c64, 3, 1, 1), nn.BatchNorm2d(c64), nn.MaxPool2d(1, 1)),
            *_block(nn.Conv2d(c64, c192, 3, 1, 1), nn.BatchNorm2d(c192), nn.MaxPool2d(3, (1, 2))),
            *_block(nn.Conv2d(c192, c384, 3, padding=1), nn.BatchNorm2d(c384)),
            *_block(nn.Conv2d(c384, c256, 3, padding=1), nn.BatchNorm2d(c256)),
            *_block(nn.Conv2d(c256, c256, 3, padding=1), nn.BatchNorm2d(c256), nn.MaxPool2d(3, 2)),
            *_block(nn.Conv2d(c256, c512, (5, 4), padding=0), nn.BatchNorm2d(c512)),
        )
        self.netfcaud = _fc(c512, config.embed_dim)
        k = config.lip_final_kernel()
        self.netcnnlip = nn.Sequential(
            *_block(nn.Conv3d(3, c96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(c96),
                    nn.MaxPool3d((1, 3, 3), (1, 2, 2))),
            *_block(nn.Conv3d(c96, c256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(c256),
                    nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1))),
            *_block(nn.Conv3d(c256, c256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c256)),
            *_block(nn.Conv3d(c256, c256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c256)),
            *_block(nn.Conv3d(c256, c256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c256),
                    nn.MaxPool3d((1, 3, 3), (1, 2, 2))),
            *_block(nn.Conv3d(c256, c512, (1, k, k), padding=0), nn.BatchNorm3d(c512)),
        )
        self.netfclip = _fc(c512, config.embed_dim)

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """MFCC windows N x 1 x 13 x 20 -> N x embed_dim."""
        return self.netfcaud(self.netcnnaud(x).reshape(x.shape[0], -1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """Frame windows N x 3 x 5 x S x S (BGR, 0-255) -> N x embed_dim."""
        return self.netfclip(self.netcnnlip(x).reshape(x.shape[0], -1))

    def forward(self, lips: torch.Tensor, mfcc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_lip(lips), self.forward_aud(mfcc)

    @classmethod
    def from_file(cls, path: str | os.PathLike, config: SyncConfig = SyncConfig(),
                  map_location: str = "cpu") -> SyncNet:
        """Load a state dict in the released layout (weights_only) and return it in eval mode.

        A file whose keys or shapes differ from ``config``'s architecture is refused with
        a ValueError listing the differences. Missing ``num_batches_tracked`` buffers
        (files saved by old PyTorch) are tolerated.
        """
        from edtalk.data.resume import file_sha256
        from edtalk.weights import load_state_dict

        state = dict(load_state_dict(path, map_location=map_location))
        net = cls(config)
        check_layout(state, net.state_dict(), source=str(path))
        for k, v in net.state_dict().items():
            if k not in state and k.endswith("num_batches_tracked"):
                state[k] = v
        net.load_state_dict(state, strict=True)
        net.weights_hash = file_sha256(path)[:8]
        return net.eval()

    weights_hash: str | None = None
    trained_here: bool = False

    @property
    def backend(self) -> str:
        """Label for results: ``syncnet_v2`` for the released layout, else ``syncnet:...``."""
        return backend_label(self.config, self.weights_hash, self.trained_here)


def backend_label(config: SyncConfig, weights_hash: str | None, trained_here: bool = False) -> str:
    """Backend label of a SyncNet's results.

    >>> backend_label(SyncConfig(), None)
    'syncnet_v2'
    >>> backend_label(SyncConfig(), "ab12cd34", trained_here=True)
    'syncnet:trained-here@ab12cd34'
    >>> backend_label(SyncConfig(0.25, 96, 256), "ab12cd34", trained_here=True)
    'syncnet:trained-here:w0.25-s96-d256@ab12cd34'
    """
    if config.is_reference and not trained_here:
        return "syncnet_v2"
    tag = ["trained-here"] if trained_here else []
    if not config.is_reference:
        tag.append(f"w{config.width:g}-s{config.image_size}-d{config.embed_dim}")
    return f"syncnet:{':'.join(tag)}@{weights_hash or 'unhashed'}"


def check_layout(state: dict, expected: dict, source: str = "state dict") -> None:
    """ValueError naming missing, unexpected and mis-shaped keys; silent when they match."""
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        def show(xs: list[str]) -> str:
            return ", ".join(xs[:12]) + (f" (+{len(xs) - 12} more)" if len(xs) > 12 else "")
        parts = [f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else "",
                 f"shape mismatches: {show(shapes)}" if shapes else ""]
        raise ValueError(f"{source} is not in the syncnet layout expected here; "
                         + "; ".join(p for p in parts if p))


def save_trained(net: SyncNet, path: str | os.PathLike, pretrained: dict | None = None) -> None:
    """Save an in-pipeline SyncNet as ``{"config": {...}, "state_dict": {...}}`` (weights_only-safe);
    a shipped pretrained file also carries ``pretrained`` (its recipe and corpus record)."""
    from edtalk.data import atomic

    cfg = {"width": float(net.config.width), "image_size": int(net.config.image_size),
           "embed_dim": int(net.config.embed_dim)}
    buf = io.BytesIO()   # in memory: a file's archive name would make the bytes (and hash) vary
    torch.save({"config": cfg, "state_dict": net.state_dict(),
                **({"pretrained": pretrained} if pretrained else {})}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load(path: str | os.PathLike, map_location: str = "cpu") -> SyncNet:
    """Load either a released ``syncnet_v2.model`` (label ``syncnet_v2``) or a file from
    ``save_trained`` (label ``syncnet:trained-here@<sha256[:8]>``); eval mode."""
    from edtalk.data.resume import file_sha256
    from edtalk.weights import MissingWeights, get, load_state_dict

    if not os.path.isfile(path):
        spec = get("syncnet_v2")
        raise MissingWeights(f"missing SyncNet weights {path}: give the released {spec.filename} "
                             f"({spec.url}) or a SyncNet trained by the train_syncnet stage")
    obj = load_state_dict(path, map_location=map_location)
    if "config" in obj and "state_dict" in obj:
        config = SyncConfig(**dict(obj["config"]))
        net = SyncNet(config)
        check_layout(dict(obj["state_dict"]), net.state_dict(), source=str(path))
        net.load_state_dict(obj["state_dict"])
        net.weights_hash = file_sha256(path)[:8]
        net.trained_here = True
        return net.eval()
    return SyncNet.from_file(path, map_location=map_location)


# --- the input convention ------------------------------------------------------------------

def mfcc_windows(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """python_speech_features MFCC (defaults) of int16 audio, transposed: 13 x T."""
    return np.asarray(python_speech_features.mfcc(audio, sample_rate), dtype=np.float64).T


def mfcc_from_rows(rows: np.ndarray) -> np.ndarray:
    """Per-frame MFCC rows (T x 4 x 13 or T x 52: the features stage's ``mfcc`` column)
    -> the 13 x 4T matrix in time order that ``mfcc_window`` cuts.

    >>> mfcc_from_rows(np.arange(104).reshape(2, 4, 13))[0, :3].tolist()
    [0, 13, 26]
    """
    return np.ascontiguousarray(np.asarray(rows).reshape(-1, N_MFCC).T)


def mfcc_window(mfcc: np.ndarray, start: int) -> np.ndarray:
    """The 13 x 20 MFCC window heard with the lip window that starts at video frame ``start``."""
    return mfcc[:, MFCC_PER_FRAME * start:MFCC_PER_FRAME * start + MFCC_STEPS]


def mfcc_batch(mfcc: np.ndarray, starts: Iterable[int]) -> torch.Tensor:
    """N x 1 x 13 x 20 float32 audio input: one window of the 13 x 4T ``mfcc`` per start frame."""
    return torch.from_numpy(np.stack([mfcc_window(mfcc, v) for v in starts])).unsqueeze(1).float()


def prepare_frames(frames: np.ndarray, size: int, jpeg_quality: int | None = None) -> np.ndarray:
    """RGB uint8 T x H x W x 3 -> BGR uint8 T x size x size x 3 (cv2 bilinear resize).

    ``jpeg_quality`` (labelled mode): JPEG round trip per frame, approximating the
    reference's ffmpeg JPEG dump (``-qscale:v 2`` is not exactly a cv2 quality).
    """
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4 \
            or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 T x H x W x 3 RGB, got "
                         f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")
    bgr = np.ascontiguousarray(frames[..., ::-1])
    if jpeg_quality is not None:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)]
        bgr = np.stack([cv2.imdecode(cv2.imencode(".jpg", f, params)[1], cv2.IMREAD_COLOR)
                        for f in bgr])
    if bgr.shape[1:3] != (size, size):
        bgr = np.stack([cv2.resize(f, (size, size)) for f in bgr])
    return bgr


def lip_windows(bgr: np.ndarray, starts: Iterable[int]) -> torch.Tensor:
    """N x 3 x 5 x S x S float32 lip input: one window of the BGR uint8 T x S x S x 3
    ``bgr`` (``prepare_frames``' output) per start frame.

    >>> lip_windows(np.zeros((7, 8, 8, 3), np.uint8), [0, 2]).shape
    torch.Size([2, 3, 5, 8, 8])
    """
    video = torch.from_numpy(np.ascontiguousarray(bgr)).permute(3, 0, 1, 2)      # 3 x T x S x S
    return torch.stack([video[:, v:v + SYNC_FRAMES] for v in starts]).float()


def lips_from_rgb(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Differentiable lip input: T x 3 x H x W RGB in [-1, 1] (a generator's output) ->
    1 x 3 x T x size x size BGR 0-255 (bilinear resize when H differs from ``size``)."""
    bgr = ((frames.clamp(-1, 1) + 1) * 127.5).flip(1)
    if bgr.shape[-1] != size:
        bgr = F.interpolate(bgr, size=(size, size), mode="bilinear", align_corners=False)
    return bgr.permute(1, 0, 2, 3).unsqueeze(0)


def embed_rgb_window(net: SyncNet, frames: torch.Tensor, mfcc_rows: np.ndarray
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """The differentiable entry point: (lip, audio) embeddings, each 1 x D, of one window.

    ``frames``: 5 x 3 x H x W RGB in [-1, 1]; gradients flow back to them.
    ``mfcc_rows``: the same frames' per-frame MFCC rows (5 x 4 x 13).
    """
    audio = net.forward_aud(mfcc_batch(mfcc_from_rows(mfcc_rows), [0]).to(frames.device))
    return net.forward_lip(lips_from_rgb(frames, net.config.image_size)), audio
