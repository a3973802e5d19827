"""Differentiable substitutes for EMOCA's phi and psi in L_mot (paper Eq. 9).

EMOCA's 3D face reconstruction network (phi) and its emotion network (psi) cannot be had
offline. Substitutes, each logged by name:

* phi = ``landmarks:corpus-regressor``: a small CNN trained in this stage on the corpus'
  68 landmarks (train split); phi(I) is its predicted landmarks divided by the image
  size -- the geometric content EMOCA's shape/expression/jaw codes carry.
* psi = ``emotion:<evaluator label>`` when the in-pipeline emotion evaluator's checkpoint
  (``edtalk.experts.emotion_net``, stage ``train_emotion``) exists: its per-frame features;
  otherwise ``emotion:corpus-head``, the emotion-classification head trained jointly
  with the landmark regressor (penultimate features of that head).

The network trains deterministically from the seed before the stage's loop, is saved
beside the stage's checkpoints and reloaded on resume, and stays frozen afterwards.

Scale: EMOCA's codes have their own scale, the substitutes another (the emotion
evaluator's embedding is ~20x the landmarks'), and Eq. 9 adds their distances with weight
10. ``spread_normalised`` divides each substitute by its mean distance between two random
real train frames, so each term of L_mot is in units of "a typical difference between two
frames" (unscaled, 10 L_mot was ~700x L_rec and wrecked the generator).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edtalk.data.atomic import atomic_path
from edtalk.data.resume import file_key
from edtalk.experts import emotion_net

from .data import FrameTable, step_rng

log = logging.getLogger(__name__)
N_EMOTIONS = 8


class FaceNet(nn.Module):
    """Strided convs -> (landmarks (B,68,2) in [0,1] units, emotion features (B,F), logits)."""

    def __init__(self, width: int = 16, feat: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for mult in (1, 2, 4, 4):
            layers += [nn.Conv2d(c, width * mult, 3, 2, 1), nn.LeakyReLU(0.2)]
            c = width * mult
        self.trunk = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        self.landmarks = nn.Linear(c * 16, 136)
        self.emotion = nn.Sequential(nn.Linear(c * 16, feat), nn.LeakyReLU(0.2))
        self.classify = nn.Linear(feat, N_EMOTIONS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        e = self.emotion(h)
        return self.landmarks(h).view(-1, 68, 2) + 0.5, e, self.classify(e)


def train_face_net(table: FrameTable, seed: int, steps: int, batch: int = 32,
                   lr: float = 2e-3) -> tuple[FaceNet, dict[str, float]]:
    """Fit landmarks (L1, image-size units) and emotion labels on the train split."""
    torch.manual_seed(seed)
    net = FaceNet()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    size = float(table.pixels.frame_shape[0])
    stats: dict[str, float] = {}
    for step in range(steps):
        rows = step_rng(seed, step, salt=7).choice(len(table), size=batch)
        lm, _, logits = net(table.images(rows))
        target = torch.from_numpy(table.landmarks[rows] / size)
        emo = torch.from_numpy(table.emotion[rows])
        l_lm = (lm - target).abs().mean()
        known = emo >= 0
        l_emo = F.cross_entropy(logits[known], emo[known]) if known.any() else lm.new_zeros(())
        opt.zero_grad(set_to_none=True)
        (l_lm + 0.1 * l_emo).backward()
        opt.step()
        stats = {"landmark_l1_px": l_lm.item() * size, "emotion_ce": l_emo.item()}
    net.eval().requires_grad_(False)
    return net, stats


def load_or_train_face_net(path: Path, table: FrameTable, seed: int, steps: int) -> FaceNet:
    """The saved net when it was trained with this seed, step count and corpus; else train it.

    The corpus part of the key hashes the pixel cache's bytes: a regenerated corpus with the
    same frame count (new emotion strengths, say) must not reuse a net fitted to the old one."""
    key = (f"seed={seed},steps={steps},frames={len(table)},rows={int(table.pixel_index.sum())},"
           f"pixels={file_key(table.pixels.path)}")
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved.get("key") == key:
            net = FaceNet()
            net.load_state_dict(saved["state"])
            return net.eval().requires_grad_(False)
    net, stats = train_face_net(table, seed, steps)
    log.info("phi/psi substitute FaceNet trained %d steps on the corpus: %s", steps, stats)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save({"key": key, "state": net.state_dict()}, tmp)
    return net


def emotion_evaluator(path: str | os.PathLike | None, device: torch.device | str = "cpu"
                      ) -> tuple[Callable[[torch.Tensor], torch.Tensor], str] | None:
    """psi from the in-pipeline emotion evaluator, or None when its checkpoint is absent."""
    if not path or not Path(path).is_file():
        return None
    net, label = emotion_net.load(path)
    net.requires_grad_(False).eval().to(device)

    def psi(img: torch.Tensor) -> torch.Tensor:
        return emotion_net.embed_images(net, img)
    return psi, label if label.startswith("emotion") else f"emotion:{label}"


def motion_networks(face: FaceNet, emotion_checkpoint: str | None, device: torch.device | str = "cpu"
                    ) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], list[str]]:
    """[phi, psi] for Eq. 9 and their names (the emotion evaluator is put on ``device``)."""
    def phi(img: torch.Tensor) -> torch.Tensor:
        return face(img)[0]
    evaluator = emotion_evaluator(emotion_checkpoint, device)
    if evaluator is None:
        def psi(img: torch.Tensor) -> torch.Tensor:
            return face(img)[1]
        return [phi, psi], ["landmarks:corpus-regressor", "emotion:corpus-head"]
    return [phi, evaluator[0]], ["landmarks:corpus-regressor", evaluator[1]]


def spread_normalised(nets: list[Callable[[torch.Tensor], torch.Tensor]], table: FrameTable, seed: int,
                      device: torch.device | str = "cpu", pairs: int = 64
                      ) -> tuple[list[Callable[[torch.Tensor], torch.Tensor]], list[float]]:
    """Each net divided by its mean feature distance between random pairs of real train
    frames (seeded), and those spreads."""
    rng = step_rng(seed, 0, salt=23)
    a, b = (table.images(rng.choice(len(table), pairs)).to(device) for _ in range(2))
    scaled, spreads = [], []
    for net in nets:
        with torch.no_grad():
            spread = float((net(a) - net(b)).flatten(1).norm(dim=1).mean())
        if not spread > 0:
            raise ValueError("an L_mot network gives the same features for every frame")
        scaled.append(lambda x, net=net, spread=spread: net(x) / spread)
        spreads.append(spread)
    return scaled, spreads


def landmark_error_px(face: FaceNet, table: FrameTable, rows: np.ndarray) -> float:
    """Mean landmark error of the regressor in pixels (for the logs)."""
    with torch.no_grad():
        pred = face(table.images(rows))[0].numpy() * table.pixels.frame_shape[0]
    return float(np.abs(pred - table.landmarks[rows]).mean())
