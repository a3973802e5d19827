"""Train the 8-class video emotion classifier (:mod:`edtalk.experts.emotion_net`).

Backbone ``"landmarks"`` (the default) in two phases:

1. The heatmap landmark network learns the 68 ground-truth points of random train-split
   frames: L1 in pixels on the soft-argmax points plus ``heatmap_weight`` x the
   cross-entropy of each heatmap against a Gaussian (one cell) at its point, which trains
   faster and more stably than the L1 alone; shifts move image and points together, colour
   gains and grey frames make colour useless.
2. Its points for ``head_frames`` evenly spaced frames of every train clip are computed
   once; they fix the reference shape and the standardisation
   (``FrameAttentionNet.fit_shape_statistics``), then the shape MLP and the frame-attention
   head learn the clip's emotion from them (video-level cross-entropy, as at test time).
   The head sees the points as the network predicts them, biases included, not the
   ground truth: trained on exact points it fails on predicted ones.

Emotions are rendered as small displacements of brows, lids and mouth corners, and a
train split holds a few identities: a pixel CNN memorises identities; a classifier that
only sees the aligned face shape generalises to unseen ones.

Backbone ``"small"`` (the earlier classifier) trains the strided-conv pixel CNN end to end:
each step draws ``clips_per_batch`` clips and ``frames_per_clip`` frames of each, one trunk
pass embeds them all (BatchNorm statistics across clips) and the head pools each clip.

Its held-out accuracy is :func:`edtalk.evaluation.experts.emotion_accuracy`
(:func:`edtalk.experts.emotion_net.predict_video` + :func:`metrics.emotion.video_accuracy`,
the same calls the suite makes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from edtalk.experts import emotion_net as emo
from edtalk.train.experts.corpus import Clip, seed_everything, valid_landmark_frames
from edtalk.train.experts.loop import Resume, train_steps
from edtalk.train.mouth_gain import gap_agreement


@dataclass(frozen=True)
class EmotionTrainConfig:
    backbone: str = "landmarks"   # "landmarks" | "small"
    width: int = 8                # first conv's channels
    hidden: int = 64              # "landmarks": shape embedding size
    dropout: float = 0.2
    landmark_steps: int = 500     # "landmarks" phase 1
    landmark_batch: int = 32      # frames per phase-1 step
    landmark_lr: float = 3e-3
    heatmap_weight: float = 0.0   # + this x cross-entropy of the heatmaps against Gaussians at the points
    head_frames: int = 16         # predicted frames per train clip for phase 2
    steps: int = 300              # classifier steps (phase 2; the whole training for "small")
    clips_per_batch: int = 16
    frames_per_clip: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-3
    identity_swap: float = 0.0    # "landmarks": chance a clip's shape is moved to another train identity's
    seed: int = 0


@dataclass
class EmotionTrainResult:
    net: emo.FrameAttentionNet
    losses: list[float] = field(repr=False)
    seconds: float = 0.0
    config: dict = field(default_factory=dict)
    landmark_losses: list[float] = field(default_factory=list, repr=False)   # L1 px, phase 1


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


def _augment_with_points(x: torch.Tensor, points: torch.Tensor, rng: np.random.Generator,
                         max_shift: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: a shift of up to ``max_shift`` px (points follow), per-channel gains in
    0.6..1.4 and, three times in ten, grey. ``points`` are fractions of the side."""
    n, size = len(x), x.shape[-1]
    shifts = rng.integers(-max_shift, max_shift + 1, size=(n, 2))          # (dx, dy) px
    x = torch.stack([torch.roll(x[i], shifts=(int(dy), int(dx)), dims=(-2, -1))
                     for i, (dx, dy) in enumerate(shifts)])
    points = points + torch.from_numpy(shifts).float()[:, None, :] / size
    x = x * torch.from_numpy(rng.uniform(0.6, 1.4, size=(n, 3, 1, 1))).float()
    grey = torch.from_numpy(rng.random(n) < 0.3)[:, None, None, None]
    x = torch.where(grey, x.mean(dim=1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 1), points


def _heatmap_cross_entropy(logits: torch.Tensor, points: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Cross-entropy of N x K x R x C heatmap logits against normalised Gaussians (``sigma``
    cells) centred on the N x K x 2 ``points`` (fractions of the side)."""
    rows, cols = logits.shape[-2:]
    cx = (torch.arange(cols, dtype=points.dtype) + 0.5) / cols
    cy = (torch.arange(rows, dtype=points.dtype) + 0.5) / rows
    dx = ((cx - points[..., :1]) * cols / sigma) ** 2                     # N x K x C
    dy = ((cy - points[..., 1:]) * rows / sigma) ** 2                     # N x K x R
    target = torch.softmax((-0.5 * (dy[..., :, None] + dx[..., None, :])).flatten(2), -1)
    return -(target * logits.flatten(2).log_softmax(-1)).sum(-1).mean()


def _evenly(n: int, k: int) -> np.ndarray:
    return np.linspace(0, n, k, endpoint=False).astype(int) if n > k else np.arange(n)


def train(clips: list[Clip], config: EmotionTrainConfig = EmotionTrainConfig(),
          resume: Resume | None = None, init: emo.FrameAttentionNet | None = None) -> EmotionTrainResult:
    """Train on labelled ``clips``, from scratch or fine-tuning ``init`` (a pretrained net of
    the same backbone, changed in place), resuming from ``resume``'s checkpoints when given
    (one sub-folder per phase: ``landmarks``, ``classifier``); the network is returned in
    eval mode. A call that ``resume.stop_after`` ends early returns the network unfinished."""
    clips = [c for c in clips if c.label >= 0]
    if not clips:
        raise ValueError("no clip with a known emotion label")
    if init is not None and init.config.backbone != config.backbone:
        raise ValueError(f"the pretrained classifier has backbone {init.config.backbone!r}, "
                         f"the config asks for {config.backbone!r}")
    if config.backbone == "landmarks":
        return _train_landmarks(clips, config, resume, init)
    if config.backbone == "small":
        return _train_small(clips, config, resume, init)
    raise ValueError(f"backbone must be 'landmarks' or 'small', got {config.backbone!r}")


def _phase(resume: Resume | None, name: str, done: int = 0) -> Resume | None:
    return None if resume is None else resume.phase(name, done)


def _new_or_init(init: emo.FrameAttentionNet | None, config: emo.EmotionConfig) -> emo.FrameAttentionNet:
    if init is None:
        return emo.FrameAttentionNet(config)
    if init.config.image_size != config.image_size:
        raise ValueError(f"the pretrained classifier takes {init.config.image_size} px frames, "
                         f"the corpus has {config.image_size} px")
    return init.train()


def _train_landmarks(clips: list[Clip], config: EmotionTrainConfig, resume: Resume | None,
                     init: emo.FrameAttentionNet | None = None) -> EmotionTrainResult:
    size = clips[0].frames.shape[1]
    rng = seed_everything(config.seed)
    net = _new_or_init(init, emo.EmotionConfig("landmarks", size, config.width, config.dropout,
                                               config.hidden))
    # Phase 1: the landmark heatmaps, on every valid frame of the train clips.
    frames, points = valid_landmark_frames(clips)
    points = points / size
    batch = min(config.landmark_batch, len(frames))
    lm_opt = torch.optim.AdamW(net.landmarker.parameters(), lr=config.landmark_lr,
                               weight_decay=config.weight_decay)

    def landmark_loss() -> dict[str, torch.Tensor]:
        idx = rng.choice(len(frames), size=batch, replace=False)
        x, p = _augment_with_points(emo.to_input(frames[idx], size),
                                    torch.from_numpy(points[idx]).float(), rng)
        logits = net.landmarker.heatmaps(x)
        terms = {"l1": (net.landmarker.soft_argmax(logits) - p).abs().mean() * size}   # L1 in pixels
        if config.heatmap_weight:
            terms["heatmap"] = config.heatmap_weight * _heatmap_cross_entropy(logits, p)
        return terms

    first = train_steps(net.landmarker, lm_opt, config.landmark_steps, config.landmark_lr,
                        landmark_loss, rng, _phase(resume, "landmarks"))
    if not first.finished:
        return EmotionTrainResult(net.eval(), [], first.seconds, asdict(config), first.losses.get("l1", []))
    # Phase 2: the classifier on the points the network predicts for the train clips.
    with torch.no_grad():
        predicted = [net.landmarker(emo.to_input(c.frames[_evenly(len(c.frames), config.head_frames)],
                                                 size)) for c in clips]
    net.fit_shape_statistics(torch.cat(predicted))
    swap = _IdentitySwap(net, clips, predicted)
    net.landmarker.requires_grad_(False)
    head_params = [p for n, p in net.named_parameters() if not n.startswith("landmarker.")]
    opt = torch.optim.AdamW(head_params, lr=config.lr, weight_decay=config.weight_decay)
    n_clips = min(config.clips_per_batch, len(clips))

    def batch_loss() -> dict[str, torch.Tensor]:
        picks = rng.choice(len(clips), size=n_clips, replace=False)
        chunks = []
        for c in picks:
            pts = predicted[int(c)]
            shape = net.shape_features(pts[np.sort(rng.choice(len(pts), size=min(config.frames_per_clip,
                                                                                 len(pts)), replace=False))])
            if config.identity_swap and rng.random() < config.identity_swap:
                shape = swap(shape, clips[int(c)].identity, rng)
            chunks.append(shape)
        feats = net.shape_mlp(torch.cat(chunks)).split([len(x) for x in chunks])
        logits = torch.stack([net.head(f) for f in feats])
        return {"loss": F.cross_entropy(logits, torch.tensor([clips[int(c)].label for c in picks]))}

    second = train_steps(net, opt, config.steps, config.lr, batch_loss, rng,
                         _phase(resume, "classifier", first.ran))
    net.landmarker.requires_grad_(True)
    return EmotionTrainResult(net.eval(), second.losses.get("loss", []), first.seconds + second.seconds,
                              asdict(config), first.losses.get("l1", []))


class _IdentitySwap:
    """Moves a clip's aligned shapes from its identity to another train identity: minus the
    mean shape of its identity's clips, plus another's. The train split has few identities,
    each in a few emotions; the classifier otherwise learns which face shapes it has seen
    in which emotion, and reads an unseen face's build as an emotion (held-out accuracy
    0.72 -> 0.88 over four seeds on the default corpus, README)."""

    def __init__(self, net: emo.FrameAttentionNet, clips: list[Clip], predicted: list[torch.Tensor]) -> None:
        with torch.no_grad():
            by_identity: dict[str, list[torch.Tensor]] = {}
            for clip, pts in zip(clips, predicted):
                by_identity.setdefault(clip.identity, []).append(net.shape_features(pts))
            self.means = {k: torch.cat(v).mean(0) for k, v in sorted(by_identity.items())}
        self.names = list(self.means)

    def __call__(self, shape: torch.Tensor, identity: str, rng: np.random.Generator) -> torch.Tensor:
        other = self.names[int(rng.integers(len(self.names)))]
        return shape - self.means[identity] + self.means[other]


def _train_small(clips: list[Clip], config: EmotionTrainConfig, resume: Resume | None,
                 init: emo.FrameAttentionNet | None = None) -> EmotionTrainResult:
    size = clips[0].frames.shape[1]
    rng = seed_everything(config.seed)
    net = _new_or_init(init, emo.EmotionConfig("small", size, config.width, config.dropout))
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def batch_loss() -> dict[str, torch.Tensor]:
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
        return {"loss": F.cross_entropy(torch.stack(logits), torch.tensor(labels))}

    run = train_steps(net, opt, config.steps, config.lr, batch_loss, rng, _phase(resume, "classifier"))
    return EmotionTrainResult(net, run.losses.get("loss", []), run.seconds, asdict(config))


@torch.inference_mode()
def heatmap_points(net: emo.FrameAttentionNet, clips: list[Clip], max_frames: int | None = 64
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """(read, true) (N, 68, 2) pixel points of a ``"landmarks"`` backbone on the valid frames
    of ``clips`` (``max_frames`` evenly per clip); None for other backbones or no frames."""
    if net.config.backbone != "landmarks":
        return None
    read, true = [], []
    for c in clips:
        idx = _evenly(len(c.frames), max_frames or len(c.frames))
        idx = idx[c.landmarks_valid[idx]]
        if len(idx):
            pts = net.landmarks(emo.to_input(c.frames[idx], net.config.image_size)).numpy()
            read.append(pts * np.array([c.frames.shape[2], c.frames.shape[1]]))
            true.append(c.landmarks[idx])
    return (np.concatenate(read), np.concatenate(true)) if read else None


def heatmap_quality(net: emo.FrameAttentionNet, clips: list[Clip], max_frames: int | None = 64
                    ) -> dict[str, float] | None:
    """How :func:`heatmap_points` read ``clips``: mean point-to-point error (pixels) and the
    inner-lip gap's agreement with the true points (``gap_agreement``); None where it has none."""
    points = heatmap_points(net, clips, max_frames)
    if points is None:
        return None
    return {"landmark_error_px": float(np.linalg.norm(points[0] - points[1], axis=-1).mean()),
            **{f"landmark_{k}": v for k, v in gap_agreement(*points).items()}}


def landmark_error_px(net: emo.FrameAttentionNet, clips: list[Clip], max_frames: int | None = 64
                      ) -> float | None:
    """Mean point-to-point error (pixels) of :func:`heatmap_points`; None where it has none."""
    quality = heatmap_quality(net, clips, max_frames)
    return None if quality is None else quality["landmark_error_px"]
