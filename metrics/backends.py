"""Which networks score the evaluation, and an FD backend on the trained emotion net.

``choose`` prefers a released network when its file is present (``edtalk.weights``:
``syncnet_v2``, ``emotion_fan``) and falls back to the evaluator trained in-pipeline;
the labels those networks carry end up in every result key and table footnote.

FID without pytorch-fid's Inception: :class:`EmotionNetFeatures` takes the trained
emotion classifier's pooled trunk features (a face-specific embedding learnt on this
corpus) and labels the distance ``fd[emotion-net:trained-here@<hash>]``; ``rgb-pool8``
(:class:`metrics.fid.PooledPixels`) is the model-free alternative. Inception, when its
file is present, always wins and is the only backend reported as "FID".
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edtalk import weights as registry
from edtalk.experts import emotion_net as emo
from metrics import fid as fidm


class EmotionNetFeatures:
    """RGB uint8 frames -> the emotion classifier's trunk features (float64)."""

    def __init__(self, net: emo.FrameAttentionNet, label: str, batch_size: int = 256,
                 device: str | torch.device = "cpu") -> None:
        self.net = net.eval().to(device)
        self.label = f"fd[emotion-net:{label.split(':', 1)[-1]}]"
        self.batch_size, self.device = batch_size, device

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = emo.to_input(frames, self.net.config.image_size)
        out = [self.net.frame_features(x[i:i + self.batch_size].to(self.device)).double().cpu()
               for i in range(0, len(x), self.batch_size)]
        return torch.cat(out).numpy()


@dataclass
class Choice:
    sync_weights: Path | None
    emotion_weights: Path | None
    landmark_weights: Path | None
    fid_backend: fidm.FeatureBackend


def _released(name: str, cache_dir: str | os.PathLike | None) -> Path | None:
    return registry.locate(name, cache_dir) if registry.is_available(name, cache_dir) else None


def choose(models_dir: str | os.PathLike, fid: str = "emotion-net",
           cache_dir: str | os.PathLike | None = None, device: str = "cpu") -> Choice:
    """Released weights when present, else ``<models_dir>/{syncnet,emotion,landmarks}.pt``.

    ``fid``: ``emotion-net`` | ``rgb-pool8`` (ignored when Inception's file is present).
    """
    models = Path(models_dir)

    def trained(name: str) -> Path | None:
        return models / name if (models / name).exists() else None

    sync_w = _released("syncnet_v2", cache_dir) or trained("syncnet.pt")
    emo_w = _released("emotion_fan", cache_dir) or trained("emotion.pt")
    if registry.is_available("inception_fid", cache_dir):
        backend: fidm.FeatureBackend = fidm.InceptionFeatures(device=device, cache_dir=cache_dir)
    elif fid == "emotion-net" and trained("emotion.pt"):
        net, label = emo.load(models / "emotion.pt")
        backend = EmotionNetFeatures(net, label, device=device)
    elif fid in ("emotion-net", "rgb-pool8"):
        backend = fidm.PooledPixels(8)
    else:
        raise ValueError(f"evaluate.fid must be 'emotion-net' or 'rgb-pool8', got {fid!r}")
    return Choice(sync_w, emo_w, trained("landmarks.pt"), backend)
