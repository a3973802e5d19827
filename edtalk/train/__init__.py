"""Training of EDTalk's stages (paper §3.2): data, losses, one loop, three stage specs."""

from .config import LossWeights, PerceptualConfig, StageConfig, stage_config
from .loop import TrainResult, build, train
from .run import run_stage
from .stages import STAGES, check_frozen, frozen_snapshot

__all__ = ["LossWeights", "PerceptualConfig", "STAGES", "StageConfig", "TrainResult", "build",
           "check_frozen", "frozen_snapshot", "run_stage", "stage_config", "train"]
