"""Train a scaled-down syncnet_v2 as a lip-sync expert (Wav2Lip's objective) on the train split.

Objective (Wav2Lip's ``color_syncnet_train``): for a 5-frame window of face crops and a
20-step MFCC window, the cosine similarity of the two embeddings is mapped to [0, 1]
and scored with binary cross-entropy against 1 for the aligned window and 0 for the
same clip's audio shifted by a random non-zero number of frames. Wav2Lip's embeddings
pass through a ReLU so their cosine is already in [0, 1]; the syncnet_v2 heads end in a
linear layer, so here ``p = (1 + cos) / 2``. The reference scorer ranks windows by
Euclidean distance, not cosine, so a small penalty keeps both embeddings near unit
norm; then ``||v - a||^2 = 2 - 2 cos`` and the two orders agree.

Inputs follow the one SyncNet convention (:mod:`edtalk.experts.syncnet`), the same the
scorer ``metrics.sync.score`` feeds the network: BGR 0-255 frames at the network's size
and raw python_speech_features MFCC (the features stage's ``mfcc`` column holds the same
numbers). The held-out offset check is :func:`edtalk.evaluation.experts.offset_accuracy`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edtalk.experts import syncnet as sync
from edtalk.experts.syncnet import MFCC_PER_FRAME, SYNC_FRAMES, lip_windows, mfcc_batch, prepare_frames
from edtalk.train.experts.corpus import Clip, seed_everything
from edtalk.train.experts.loop import Resume, train_steps


@dataclass(frozen=True)
class SyncTrainConfig:
    width: float = 0.125       # channel scale of syncnet_v2
    embed_dim: int = 64
    steps: int = 400
    batch_size: int = 16       # lip windows per step
    lr: float = 3e-3
    negatives: int = 4         # shifted audio windows per lip window
    max_offset: int = 15       # negatives: audio shifted by 1..max_offset frames (same clip)
    norm_weight: float = 0.01  # unit-norm penalty on both embeddings
    blur_sigma: float = 0.0    # augmentation: Gaussian blur up to this sigma (px); 0 = off
    jpeg_quality: int = 0      # augmentation: JPEG re-encode down to this quality; 0 = off
    augment_p: float = 0.7     # chance of each augmentation per lip window
    seed: int = 0


@dataclass
class SyncTrainResult:
    net: sync.SyncNet
    losses: list[float] = field(repr=False)
    seconds: float = 0.0
    config: dict = field(default_factory=dict)


def degrade(bgr: np.ndarray, config: SyncTrainConfig, rng: np.random.Generator) -> np.ndarray:
    """One lip window (uint8 frames) blurred and JPEG re-encoded at random strengths, each
    with chance ``augment_p``, the same for its frames: a sync expert must read the mouth's
    motion, not the sharpness of its edges, or every slightly soft generator scores as
    out of sync (trained without it, a 1-px blur took 38 % of ground truth's confidence)."""
    out = bgr       # both off: unchanged, and no draw from ``rng``
    if config.blur_sigma > 0 and rng.random() < config.augment_p:
        sigma = rng.uniform(0.3, config.blur_sigma)
        out = np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in out])
    if config.jpeg_quality > 0 and rng.random() < config.augment_p:
        params = [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(config.jpeg_quality, 95))]
        out = np.stack([cv2.imdecode(cv2.imencode(".jpg", f, params)[1], cv2.IMREAD_COLOR) for f in out])
    return out


def sample_batch(clips: list[Clip], n: int, negatives: int, max_offset: int,
                 rng: np.random.Generator, config: SyncTrainConfig | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` lip windows (N x 3 x 5 x S x S, BGR 0-255), each with its aligned MFCC window
    and ``negatives`` windows of the same clip's audio moved by random non-zero offsets
    (|offset| <= max_offset): MFCC N(1+K) x 1 x 13 x 20 and targets N(1+K), aligned first.
    With ``config``, each lip window is degraded by :func:`degrade`."""
    lips, auds, ys = [], [], []
    for _ in range(n):
        clip = clips[int(rng.integers(len(clips)))]
        last = min(len(clip.frames), clip.mfcc.shape[1] // MFCC_PER_FRAME) - SYNC_FRAMES
        i = int(rng.integers(last + 1))
        choices = np.array([s for s in range(-max_offset, max_offset + 1) if s and 0 <= i + s <= last])
        shifts = [0] + ([int(s) for s in rng.choice(choices, size=negatives)] if len(choices) else [])
        bgr = prepare_frames(clip.frames[i:i + SYNC_FRAMES], clip.frames.shape[1])
        lips.append(lip_windows(bgr if config is None else degrade(bgr, config, rng), [0]))
        starts = [i + s for s in shifts]
        starts += [starts[-1]] * (1 + negatives - len(shifts))      # a clip too short for negatives
        auds.append(mfcc_batch(clip.mfcc, starts))
        ys += [float(v == i) for v in starts]
    # Channels-last: the memory layout the trained evaluators were fitted with (conv3d's
    # float sums depend on it).
    lip = torch.cat(lips).contiguous(memory_format=torch.channels_last_3d)
    return lip, torch.cat(auds), torch.tensor(ys)


def expert_loss(v: torch.Tensor, a: torch.Tensor, y: torch.Tensor, norm_weight: float) -> torch.Tensor:
    """Class-balanced BCE on (1 + cos) / 2 plus the unit-norm penalty (module docstring).

    ``v``: N x D lip embeddings; ``a``: N(1+K) x D audio embeddings, K+1 per lip window.
    """
    k1 = a.shape[0] // v.shape[0]
    v_rep = v.repeat_interleave(k1, dim=0)
    p = ((1 + F.cosine_similarity(v_rep, a, dim=1)) / 2).clamp(1e-6, 1 - 1e-6)
    weight = torch.where(y > 0.5, torch.full_like(y, float(k1 - 1) or 1.0), torch.ones_like(y))
    bce = F.binary_cross_entropy(p, y, weight=weight) * k1 / (2 * max(k1 - 1, 1))
    norms = torch.cat([v.norm(dim=1), a.norm(dim=1)])
    return bce + norm_weight * ((norms - 1) ** 2).mean()


def train(clips: list[Clip], config: SyncTrainConfig = SyncTrainConfig(),
          resume: Resume | None = None, init: sync.SyncNet | None = None) -> SyncTrainResult:
    """Train on ``clips`` (train split), from scratch or fine-tuning ``init`` (a pretrained
    net, changed in place), resuming from ``resume``'s checkpoints when given; the network
    is returned in eval mode."""
    if not clips:
        raise ValueError("no training clips")
    size = clips[0].frames.shape[1]
    rng = seed_everything(config.seed)
    net = init if init is not None else sync.SyncNet(sync.SyncConfig(config.width, size, config.embed_dim))
    if net.config.image_size != size:
        raise ValueError(f"the SyncNet takes {net.config.image_size} px frames, the corpus has {size} px")
    net.trained_here = True
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)

    def batch_loss() -> dict[str, torch.Tensor]:
        lip, aud, y = sample_batch(clips, config.batch_size, config.negatives,
                                   config.max_offset, rng, config)
        return {"loss": expert_loss(net.forward_lip(lip), net.forward_aud(aud), y, config.norm_weight)}

    run = train_steps(net, opt, config.steps, config.lr, batch_loss, rng, resume)
    return SyncTrainResult(net, run.losses.get("loss", []), run.seconds, asdict(config))
