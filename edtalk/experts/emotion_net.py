"""The 8-class MEAD emotion classifier (the Acc_emo evaluator and psi of L_mot).

``FrameAttentionNet`` follows Emotion-FAN's design (per-frame CNN features, a
self-attention weight per frame, a relation-attention weight on [frame, video]
features, a linear head on the attention-weighted mean) with Emotion-FAN's head names
(``alpha``, ``beta``, ``pred_fc1``, ``pred_fc2``). Two backbones:

* ``"resnet18"`` — Emotion-FAN's trunk; ``from_emotion_fan(path)`` loads an
  Emotion-FAN checkpoint fine-tuned on MEAD's 8 classes (file name registered as
  ``emotion_fan`` in ``edtalk.weights``); ``module.`` prefixes and a ``state_dict``
  wrapper are accepted.
* ``"landmarks"`` — the classifier trained in-pipeline (``edtalk.train.experts.emotion_train``):
  a fully convolutional heatmap network locates the 68 iBUG points (soft-argmax, so
  translation-equivariant and differentiable), the points are aligned to a reference
  shape by a similarity Procrustes fit (removing position, in-plane rotation and scale),
  standardised, and a small MLP embeds the aligned shape; that embedding is the frame
  feature. Only facial geometry reaches the classifier, not colours or hair, which is what
  lets it generalise to unseen identities (a CNN on pixels learns who, not how).
* ``"small"`` — a few strided convs on pixels (the earlier in-pipeline classifier).

Inputs are RGB uint8 frames; like Emotion-FAN's ``ToTensor`` they are scaled to [0, 1]
with no further normalisation. Every backbone is differentiable with respect to the
input image; ``embed_images`` (generator images in [-1, 1] -> frame features) is psi of
L_mot (``edtalk.train.motion_nets``). Video accuracy is ``metrics.emotion``.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from edtalk.data.schema import EMOTIONS, N_LANDMARKS
from edtalk.experts.landmark_net import NetLandmarker

N_CLASSES = len(EMOTIONS)


@dataclass(frozen=True)
class EmotionConfig:
    backbone: str = "small"     # "small" | "landmarks" | "resnet18"
    image_size: int = 64
    width: int = 32             # channels of the small / landmark backbone's first conv
    dropout: float = 0.4
    hidden: int = 64            # "landmarks": size of the shape embedding (the frame feature)


def _small_trunk(width: int) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    c_in = 3
    for mult in (1, 2, 4, 8):
        c = width * mult
        layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
        c_in = c
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), c_in


def _conv(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class HeatmapLandmarks(nn.Module):
    """N x 3 x S x S in [0, 1] -> N x 68 x 2 points (x, y) as fractions of the frame side.

    Convolutions down to S/4 (two strides, then dilated convs for context), one heatmap
    per point, softmax over positions and the expected cell centre (soft-argmax): every
    step is differentiable and translation-equivariant. Channels-last (faster on CPU).

    >>> HeatmapLandmarks(4)(torch.rand(2, 3, 32, 32)).shape
    torch.Size([2, 68, 2])
    """

    def __init__(self, width: int) -> None:
        super().__init__()
        c = width
        self.trunk = nn.Sequential(*_conv(3, 2 * c, 2), *_conv(2 * c, 2 * c),
                                   *_conv(2 * c, 4 * c, 2), *_conv(4 * c, 4 * c, 1, 2),
                                   *_conv(4 * c, 4 * c, 1, 4))
        self.heat = nn.Conv2d(4 * c, N_LANDMARKS, 1)
        self.to(memory_format=torch.channels_last)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """N x 68 x S/4 x S/4 logits (softmax over positions gives each point's distribution)."""
        return self.heat(self.trunk(x.contiguous(memory_format=torch.channels_last)))

    @staticmethod
    def soft_argmax(logits: torch.Tensor) -> torch.Tensor:
        """N x K x R x C logits -> N x K x 2 expected (x, y) cell centres, fractions of the side."""
        n, k, rows, cols = logits.shape
        p = logits.flatten(2).softmax(-1).view(n, k, rows, cols)
        gx = (torch.arange(cols, device=p.device, dtype=p.dtype) + 0.5) / cols
        gy = (torch.arange(rows, device=p.device, dtype=p.dtype) + 0.5) / rows
        return torch.stack([(p.sum(2) * gx).sum(-1), (p.sum(3) * gy).sum(-1)], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.soft_argmax(self.heatmaps(x))


def procrustes_align(points: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Similarity-align each N x K x 2 point set to a centred K x 2 ``reference``.

    Least squares over translation, rotation and scale, in closed form (points as complex
    numbers: z = sum(conj(p) r) / sum |p|^2), so it is differentiable and needs no SVD.

    >>> ref = torch.tensor([[-1.0, 0.0], [1.0, 0.0], [0.0, 2.0]]); ref = ref - ref.mean(0)
    >>> moved = (ref @ torch.tensor([[0.0, 1.0], [-1.0, 0.0]])) * 3 + 5   # rotate, scale, shift
    >>> torch.allclose(procrustes_align(moved[None], ref)[0], ref, atol=1e-5)
    True
    """
    p = points - points.mean(-2, keepdim=True)
    px, py = p[..., 0], p[..., 1]
    rx, ry = reference[..., 0], reference[..., 1]
    norm = (p ** 2).sum((-2, -1)) + eps
    zr = ((px * rx + py * ry).sum(-1) / norm)[..., None]
    zi = ((px * ry - py * rx).sum(-1) / norm)[..., None]
    return torch.stack([zr * px - zi * py, zr * py + zi * px], -1)


def _initial_reference_shape() -> torch.Tensor:
    """The reference shape a fresh network aligns to (68 points on an ellipse: any
    non-degenerate shape works); training replaces it with the corpus' mean shape
    (``FrameAttentionNet.fit_shape_statistics``) and it is saved with the weights."""
    t = torch.arange(N_LANDMARKS, dtype=torch.float32) * (2 * torch.pi / N_LANDMARKS)
    return torch.stack([0.3 * torch.cos(t), 0.4 * torch.sin(t)], -1)


class FrameAttentionNet(nn.Module):
    """Frames (N x 3 x S x S in [0, 1]) of one video -> 8 class logits.

    >>> net = FrameAttentionNet(EmotionConfig(width=4, image_size=32)).eval()
    >>> net(torch.rand(5, 3, 32, 32)).shape
    torch.Size([8])
    """

    def __init__(self, config: EmotionConfig = EmotionConfig()) -> None:
        super().__init__()
        self.config = config
        if config.backbone == "resnet18":
            import torchvision      # here: importing it costs ~2 s, and only Emotion-FAN needs it

            r = torchvision.models.resnet18(weights=None)
            self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
            self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            dim = 512
        elif config.backbone == "small":
            self.trunk, dim = _small_trunk(config.width)
        elif config.backbone == "landmarks":
            self.landmarker = HeatmapLandmarks(config.width)
            self.register_buffer("shape_reference", _initial_reference_shape())            # K x 2, centred
            self.register_buffer("shape_mean", torch.zeros(2 * N_LANDMARKS))
            self.register_buffer("shape_scale", torch.ones(2 * N_LANDMARKS))
            dim = config.hidden
            self.shape_mlp = nn.Sequential(nn.Linear(2 * N_LANDMARKS, dim), nn.ReLU(inplace=True),
                                           nn.Dropout(config.dropout), nn.Linear(dim, dim),
                                           nn.ReLU(inplace=True))
        else:
            raise ValueError(f"backbone must be 'small', 'landmarks' or 'resnet18', got {config.backbone!r}")
        self.dropout = nn.Dropout(config.dropout)
        self.alpha = nn.Sequential(nn.Linear(dim, 1), nn.Sigmoid())
        self.beta = nn.Sequential(nn.Linear(2 * dim, 1), nn.Sigmoid())
        self.pred_fc1 = nn.Linear(dim, N_CLASSES)
        self.pred_fc2 = nn.Linear(2 * dim, N_CLASSES)

    def landmarks(self, x: torch.Tensor) -> torch.Tensor:
        """``"landmarks"`` backbone: N x 68 x 2 points, fractions of the frame side."""
        if self.config.backbone != "landmarks":
            raise ValueError(f"the {self.config.backbone!r} backbone locates no landmarks")
        return self.landmarker(x)

    def shape_features(self, points: torch.Tensor) -> torch.Tensor:
        """N x 68 x 2 points -> N x 136 aligned, standardised shape (the MLP's input)."""
        aligned = procrustes_align(points, self.shape_reference).flatten(1)
        return (aligned - self.shape_mean) / self.shape_scale

    def shape_embedding(self, points: torch.Tensor) -> torch.Tensor:
        """N x 68 x 2 points -> N x hidden frame features."""
        return self.shape_mlp(self.shape_features(points))

    @torch.no_grad()
    def fit_shape_statistics(self, points: torch.Tensor, iterations: int = 3) -> None:
        """Set the reference shape (generalised Procrustes mean) and the per-coordinate
        standardisation from N x 68 x 2 points (the train split's, as the network sees them)."""
        ref = points.mean(0) - points.mean((0, 1))
        for _ in range(iterations):
            ref = procrustes_align(points, ref).mean(0)
            ref = ref / ref.norm() * (points - points.mean(1, keepdim=True)).norm(dim=(1, 2)).mean()
        self.shape_reference.copy_(ref)
        aligned = procrustes_align(points, ref).flatten(1)
        self.shape_mean.copy_(aligned.mean(0))
        self.shape_scale.copy_(aligned.std(0).clamp_min(1e-6))

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.backbone == "landmarks":
            return self.shape_embedding(self.landmarker(x))
        if self.config.backbone == "small":
            return self.trunk(x)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.frame_features(x))

    def head(self, f: torch.Tensor) -> torch.Tensor:
        """One video's frame features (N x D) -> 8 class logits (the two attentions)."""
        a = self.alpha(self.dropout(f))                                # self-attention
        video = (f * a).sum(0, keepdim=True) / a.sum()
        cat = torch.cat([f, video.expand_as(f)], dim=1)
        b = self.beta(self.dropout(cat))                               # relation attention
        pooled = (cat * a * b).sum(0) / (a * b).sum()
        return self.pred_fc2(self.dropout(pooled))


def from_emotion_fan(path: str | os.PathLike, image_size: int = 224) -> FrameAttentionNet:
    """Load an Emotion-FAN (ResNet-18, 8 MEAD classes) checkpoint; eval mode.

    Raises ``MissingWeights``-style FileNotFoundError naming the expected file when absent
    and ValueError listing differing keys when the layout is not Emotion-FAN's.
    """
    from edtalk.weights import MissingWeights, get, load_state_dict

    if not os.path.isfile(path):
        raise MissingWeights(f"missing Emotion-FAN weights {path} (expected a MEAD-8 "
                             f"fine-tuned checkpoint, registry file name {get('emotion_fan').filename})")
    state = dict(load_state_dict(path))
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = dict(state["state_dict"])
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}   # unused ImageNet head
    net = FrameAttentionNet(EmotionConfig(backbone="resnet18", image_size=image_size))
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or bad:
        raise ValueError(f"{path} is not an 8-class Emotion-FAN checkpoint: missing {missing[:8]}, "
                         f"unexpected {unexpected[:8]}, shape mismatches {bad[:8]}")
    net.load_state_dict(state)
    return net.eval()


def save_trained(net: FrameAttentionNet, path: str | os.PathLike, pretrained: dict | None = None) -> None:
    """Save an in-pipeline classifier as ``{"config": {...}, "state_dict": {...}}``; a shipped
    pretrained file also carries ``pretrained`` (its recipe and corpus record)."""
    from edtalk.data import atomic

    cfg = asdict(net.config)
    buf = io.BytesIO()   # in memory: a file's archive name would make the bytes (and hash) vary
    torch.save({"config": cfg, "state_dict": net.state_dict(),
                **({"pretrained": pretrained} if pretrained else {})}, buf)
    atomic.write_bytes(path, buf.getvalue())


def load(path: str | os.PathLike) -> tuple[FrameAttentionNet, str]:
    """(classifier in eval mode, backend label): a ``save_trained`` file gives
    ``emotion:trained-here@<sha256[:8]>``, anything else is read as Emotion-FAN."""
    from edtalk.data.resume import file_sha256
    from edtalk.weights import load_state_dict

    obj = load_state_dict(path)
    if "config" in obj and "state_dict" in obj and isinstance(obj["config"], dict):
        net = FrameAttentionNet(EmotionConfig(**obj["config"]))
        net.load_state_dict(obj["state_dict"])
        return net.eval(), f"emotion:trained-here@{file_sha256(path)[:8]}"
    return from_emotion_fan(path), "emotion_fan"


def to_input(frames: np.ndarray, size: int) -> torch.Tensor:
    """RGB uint8 T x H x W x 3 -> T x 3 x size x size float in [0, 1] (bilinear)."""
    if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4:
        raise ValueError("frames must be uint8 T x H x W x 3")
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    if x.shape[-1] != size or x.shape[-2] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                            align_corners=False)
    return x


def embed_images(net: FrameAttentionNet, images: torch.Tensor) -> torch.Tensor:
    """The differentiable entry point: N x 3 x H x W images in [-1, 1] (a generator's
    output) -> N x D frame features (read in [0, 1], bilinearly resized to the net's size)."""
    x = (images + 1) / 2
    size = net.config.image_size
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return net.frame_features(x)


def heatmap_landmarker(net: FrameAttentionNet, label: str) -> NetLandmarker:
    """The suite's landmark callable (frames -> pixel points, valid) around a landmark-backbone
    emotion net's heatmap head: ~0.8 px held out at 64 px, where `landmark_net`'s regressor
    (~2 px) barely sees the mouth open."""
    if net.config.backbone != "landmarks":
        raise ValueError(f"{label} has no landmark heatmaps (backbone {net.config.backbone!r})")
    return NetLandmarker(net, f"heatmap-landmarks:{label}", points=net.landmarker)


def load_heatmap_landmarker(path: str | os.PathLike) -> NetLandmarker:
    """:func:`heatmap_landmarker` of the emotion evaluator file ``path`` (ValueError without heatmaps)."""
    return heatmap_landmarker(*load(path))


@torch.inference_mode()
def video_log_probs(frames: np.ndarray, net: FrameAttentionNet, max_frames: int | None = None,
                    device: str | torch.device = "cpu") -> np.ndarray:
    """Log-probabilities over ``EMOTIONS`` for one video, all frames (or ``max_frames`` evenly)."""
    if max_frames is not None and len(frames) > max_frames:
        frames = frames[np.linspace(0, len(frames), max_frames, endpoint=False).astype(int)]
    logits = net(to_input(frames, net.config.image_size).to(device)).reshape(-1)
    return torch.log_softmax(logits.float(), 0).cpu().numpy()


def predict_video(frames: np.ndarray, net: FrameAttentionNet, max_frames: int | None = None,
                  device: str | torch.device = "cpu") -> int:
    """Class index (into ``EMOTIONS``) for one video, all frames (or ``max_frames`` evenly)."""
    return int(video_log_probs(frames, net, max_frames, device).argmax())


def label_index(name: str) -> int:
    """Class index of an emotion name (``EMOTIONS`` order).

    >>> label_index("happy")
    4
    """
    if name not in EMOTIONS:
        raise ValueError(f"unknown emotion {name!r}; classes: {EMOTIONS}")
    return EMOTIONS.index(name)
