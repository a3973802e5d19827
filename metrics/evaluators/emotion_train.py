"""Train the 8-class video emotion classifier (``metrics.emotion`` small backbone).

Each step draws ``clips_per_batch`` train-split clips and ``frames_per_clip`` random
frames of each; one trunk pass embeds all of them (BatchNorm statistics across clips),
then the frame-attention head pools every clip's frames into one video prediction (as
at test time) and cross-entropy is taken against the clip's label.
Flips, small shifts and colour changes augment the frames. Evaluation is
:func:`metrics.emotion.predict_video` + :func:`metrics.emotion.video_accuracy`, the
same calls the suite makes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from edtalk.data.schema import EMOTIONS
from metrics import emotion as emo
from metrics.evaluators.corpus import Clip, run_steps, seed_everything


@dataclass(frozen=True)
class EmotionTrainConfig:
    width: int = 16
    dropout: float = 0.2
    steps: int = 200
    clips_per_batch: int = 8
    frames_per_clip: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class EmotionTrainResult:
    net: emo.FrameAttentionNet
    losses: list[float] = field(repr=False)
    seconds: float = 0.0
    config: dict = field(default_factory=dict)


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Flip, shift by up to 3 px, per-channel gains and sometimes grey: the corpus' identities
    differ in colouring, emotions in geometry, so colour is made useless to the classifier."""
    if rng.random() < 0.5:
        x = x.flip(-1)
    dy, dx = (int(v) for v in rng.integers(-3, 4, size=2))
    x = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    x = x * torch.from_numpy(rng.uniform(0.6, 1.4, size=(1, 3, 1, 1))).float()
    if rng.random() < 0.3:
        x = x.mean(dim=1, keepdim=True).expand_as(x)
    return x.clamp(0, 1)


def train(clips: list[Clip], config: EmotionTrainConfig = EmotionTrainConfig(),
          log_every: int = 0) -> EmotionTrainResult:
    """Train from scratch on labelled ``clips``; the network is returned in eval mode."""
    clips = [c for c in clips if c.label >= 0]
    if not clips:
        raise ValueError("no clip with a known emotion label")
    size = clips[0].frames.shape[1]
    rng = seed_everything(config.seed)
    net = emo.FrameAttentionNet(emo.EmotionConfig("small", size, config.width, config.dropout))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def batch_loss() -> torch.Tensor:
        picks = rng.choice(len(clips), size=min(config.clips_per_batch, len(clips)), replace=False)
        chunks, labels = [], []
        for c in picks:
            clip = clips[int(c)]
            idx = np.sort(rng.choice(len(clip.frames), size=min(config.frames_per_clip,
                                                                 len(clip.frames)), replace=False))
            chunks.append(_augment(emo.to_input(clip.frames[idx], size), rng))
            labels.append(clip.label)
        # One trunk pass over every clip's frames: BatchNorm statistics then span clips
        # (per-clip batches would subtract each clip's mean, i.e. its constant emotion).
        feats = net.frame_features(torch.cat(chunks)).split([len(x) for x in chunks])
        logits = [net.head(f) for f in feats]
        return F.cross_entropy(torch.stack(logits), torch.tensor(labels))

    losses, seconds = run_steps(net, opt, config.steps, config.lr, batch_loss, "emotion", log_every)
    return EmotionTrainResult(net, losses, seconds, asdict(config))


def evaluate(net: emo.FrameAttentionNet, clips: list[Clip], max_frames: int | None = 64) -> dict:
    """Video-level accuracy on labelled ``clips``, chance level and the confusion pairs."""
    clips = [c for c in clips if c.label >= 0]
    if not clips:
        raise ValueError("no clip with a known emotion label")
    pred = [emo.predict_video(c.frames, net, max_frames) for c in clips]
    labels = [c.label for c in clips]
    return {"accuracy": emo.video_accuracy(pred, labels), "chance": 1.0 / len(EMOTIONS),
            "clips": len(clips),
            "predictions": [{"clip_id": c.clip_id, "label": EMOTIONS[y], "pred": EMOTIONS[p]}
                            for c, y, p in zip(clips, labels, pred)]}
