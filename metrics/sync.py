"""SyncNet (syncnet_v2) and its LSE-C / LSE-D scoring, as syncnet_python computes them.

``SyncNet`` has the module and parameter names of the released ``syncnet_v2.model``
(``netcnnaud``, ``netfcaud``, ``netcnnlip``, ``netfclip``), so ``SyncNet.from_file``
loads that file unchanged. ``SyncConfig`` also describes scaled-down variants (fewer
channels, smaller frames) for the evaluator trained in-pipeline; the full network is
``SyncConfig()`` (width 1, 224 px, 1024-d).

``score`` is the reference evaluation: BGR 0-255 frames resized to the network's size,
MFCC (python_speech_features defaults) of int16 audio, windows of 5 frames / 20 MFCC
steps, batches of 20, distances to audio embeddings shifted by -15..15 (zero vectors
outside the clip), ``offset = 15 - argmin``, LSE-D = min, LSE-C = median - min.
LSE-C is higher-is-better, LSE-D lower-is-better.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field

import cv2
import numpy as np
import python_speech_features
import torch
from torch import nn

HIGHER_IS_BETTER = {"lse_c": True, "lse_d": False}
SAMPLE_RATE = 16_000
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps
VSHIFT = 15
EPS = 1e-6


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
        from edtalk.weights import load_state_dict

        state = dict(load_state_dict(path, map_location=map_location))
        net = cls(config)
        check_layout(state, net.state_dict(), source=str(path))
        for k, v in net.state_dict().items():
            if k not in state and k.endswith("num_batches_tracked"):
                state[k] = v
        net.load_state_dict(state, strict=True)
        net.weights_hash = sha256_short(path)
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


def sha256_short(path: str | os.PathLike, n: int = 8) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]


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


def save_trained(net: SyncNet, path: str | os.PathLike) -> None:
    """Save an in-pipeline SyncNet as ``{"config": {...}, "state_dict": {...}}`` (weights_only-safe)."""
    from edtalk.data import atomic

    cfg = {"width": float(net.config.width), "image_size": int(net.config.image_size),
           "embed_dim": int(net.config.embed_dim)}
    buf = io.BytesIO()   # in memory: a file's archive name would make the bytes (and hash) vary
    torch.save({"config": cfg, "state_dict": net.state_dict()}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load(path: str | os.PathLike, map_location: str = "cpu") -> SyncNet:
    """Load either a released ``syncnet_v2.model`` (label ``syncnet_v2``) or a file from
    ``save_trained`` (label ``syncnet:trained-here@<sha256[:8]>``); eval mode."""
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
        net.weights_hash = sha256_short(path)
        net.trained_here = True
        return net.eval()
    return SyncNet.from_file(path, map_location=map_location)


@dataclass(frozen=True)
class SyncScore:
    """One clip's sync result: offset (frames; audio lagging by d gives -d), LSE-D,
    LSE-C, the 31-value mean-distance curve, windows scored and the decode mode."""

    offset: int
    lse_d: float
    lse_c: float
    mdist: list[float] = field(repr=False)
    windows: int = 0
    mode: str = "direct"


def mfcc_windows(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """python_speech_features MFCC (defaults) of int16 audio, transposed: 13 x T."""
    return np.asarray(python_speech_features.mfcc(audio, sample_rate), dtype=np.float64).T


def _as_int16(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono 1-D, got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio
    if np.issubdtype(audio.dtype, np.floating):
        return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    raise ValueError(f"audio must be int16 (or float in [-1, 1]), got {audio.dtype}")


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


def distance_curve(video_emb: torch.Tensor, audio_emb: torch.Tensor,
                   vshift: int = VSHIFT) -> torch.Tensor:
    """d[i, k] = || v_i - a_{i+k-vshift} + 1e-6 ||_2 with zero audio outside 0..N-1.

    >>> distance_curve(torch.zeros(2, 1), torch.ones(2, 1), vshift=1)[0].tolist()  # zero pad, a_0, a_1
    [9.999999974752427e-07, 0.9999989867210388, 0.9999989867210388]
    """
    if video_emb.shape != audio_emb.shape or video_emb.ndim != 2:
        raise ValueError(f"embeddings must be equal N x D, got {tuple(video_emb.shape)} "
                         f"and {tuple(audio_emb.shape)}")
    padded = torch.nn.functional.pad(audio_emb, (0, 0, vshift, vshift))
    windows = padded.unfold(0, 2 * vshift + 1, 1)          # N x D x (2 vshift + 1)
    return (video_emb.unsqueeze(-1) - windows + EPS).norm(dim=1)


def summarise(dists: torch.Tensor, vshift: int = VSHIFT) -> tuple[int, float, float, torch.Tensor]:
    """(offset, lse_d, lse_c, mdist) from the N x 31 distance matrix."""
    mdist = dists.mean(dim=0)
    minval, minidx = torch.min(mdist, 0)
    offset = vshift - int(minidx)
    conf = torch.median(mdist) - minval
    return offset, float(minval), float(conf), mdist


@torch.inference_mode()
def embed(frames: np.ndarray, audio: np.ndarray, sample_rate: int, net: SyncNet,
          batch_size: int = 20, jpeg_quality: int | None = None,
          device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings of every window (N x D each), reference batching."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio must be {SAMPLE_RATE} Hz, got {sample_rate}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    pcm = _as_int16(audio)
    bgr = prepare_frames(frames, net.config.image_size, jpeg_quality)
    length = min(len(bgr), len(pcm) // SAMPLES_PER_FRAME)
    n = length - 5
    if n < 1:
        raise ValueError(f"clip too short for SyncNet: {len(bgr)} frames, {len(pcm)} samples "
                         f"(needs at least 6 frames and 6 x 640 samples)")
    device = device or next(net.parameters()).device
    mfcc = torch.from_numpy(mfcc_windows(pcm, sample_rate)).float()
    video = torch.from_numpy(bgr[:length]).permute(3, 0, 1, 2)      # 3 x T x S x S, uint8
    lips, auds = [], []
    for i in range(0, n, batch_size):
        idx = range(i, min(n, i + batch_size))
        lip = torch.stack([video[:, v:v + 5] for v in idx]).to(device, torch.float32)
        cc = torch.stack([mfcc[:, 4 * v:4 * v + 20] for v in idx]).unsqueeze(1).to(device)
        lips.append(net.forward_lip(lip).float().cpu())
        auds.append(net.forward_aud(cc).float().cpu())
    return torch.cat(lips), torch.cat(auds)


def score(frames: np.ndarray, audio: np.ndarray, sample_rate: int, net: SyncNet,
          batch_size: int = 20, jpeg_quality: int | None = None,
          device: str | torch.device | None = None) -> SyncScore:
    """Score one clip (RGB uint8 T x H x W x 3 at 25 fps; int16 mono 16 kHz audio).

    ``net`` should be in eval mode (``SyncNet.from_file`` returns it so).
    """
    if net.training:
        raise ValueError("net is in training mode; call net.eval() (BatchNorm statistics)")
    v, a = embed(frames, audio, sample_rate, net, batch_size, jpeg_quality, device)
    offset, lse_d, lse_c, mdist = summarise(distance_curve(v, a))
    mode = "direct" if jpeg_quality is None else f"jpeg-approx(q={int(jpeg_quality)})"
    return SyncScore(offset, lse_d, lse_c, mdist.tolist(), windows=len(v), mode=mode)
