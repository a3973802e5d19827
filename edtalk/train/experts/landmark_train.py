"""Train the 68-point landmark regressor (:mod:`edtalk.experts.landmark_net`) on train-split crops.

Targets are the features stage's landmarks (crop pixels) divided by the crop side;
frames whose landmarks are not valid are left out. Loss: mean L1 over points and
coordinates. Error is reported as the mean point-to-point distance in crop pixels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from edtalk.experts.landmark_net import LandmarkConfig, LandmarkNet, NetLandmarker, to_input
from edtalk.train.experts.corpus import Clip, seed_everything, valid_landmark_frames
from edtalk.train.experts.loop import Resume, train_steps
from edtalk.train.mouth_gain import gap_agreement


@dataclass(frozen=True)
class LandmarkTrainConfig:
    width: int = 12
    steps: int = 300
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class LandmarkTrainResult:
    net: LandmarkNet
    losses: list[float] = field(repr=False)
    seconds: float = 0.0
    config: dict = field(default_factory=dict)


def train(clips: list[Clip], config: LandmarkTrainConfig = LandmarkTrainConfig(),
          resume: Resume | None = None) -> LandmarkTrainResult:
    """Train from scratch on every valid frame of ``clips``, resuming from ``resume``'s
    checkpoints when given; returned in eval mode."""
    frames, points = valid_landmark_frames(clips)
    size = frames.shape[1]
    rng = seed_everything(config.seed)
    net = LandmarkNet(LandmarkConfig(size, config.width))
    x_all = to_input(frames, size)
    y_all = torch.from_numpy(points / size).float()
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def batch_loss() -> dict[str, torch.Tensor]:
        idx = torch.from_numpy(rng.choice(len(x_all), size=min(config.batch_size, len(x_all)),
                                          replace=False))
        return {"loss": F.l1_loss(net(x_all[idx]), y_all[idx])}

    run = train_steps(net, opt, config.steps, config.lr, batch_loss, rng, resume)
    return LandmarkTrainResult(net, run.losses["loss"], run.seconds, asdict(config))


def mean_error_px(landmarker: NetLandmarker, clips: list[Clip]) -> dict:
    """Mean point-to-point error (crop px) over valid frames, overall and for the mouth."""
    frames, points = valid_landmark_frames(clips)
    pred, _ = landmarker(frames)
    dist = np.linalg.norm(pred - points, axis=-1)            # N x 68
    return {"mean_error_px": float(dist.mean()), "mouth_error_px": float(dist[:, 48:].mean()),
            **gap_agreement(pred, points), "frames": int(len(frames)), "image_size": int(frames.shape[1])}
