"""EDTalk model: E, MLN/PLN/ELN over orthogonal banks, G with EEM, D, Phi, checkpoints."""

from .checkpoint import CheckpointMismatch, load_checkpoint, load_official, save_checkpoint
from .config import PROFILES, EDTalkConfig, profile
from .discriminator import Discriminator
from .edtalk import GROUPS, EDTalk, Motion, Weights
from .inference import Identity, drive, edtalk_v, prepare_identity

__all__ = [
    "CheckpointMismatch", "Discriminator", "EDTalk", "EDTalkConfig", "GROUPS", "Identity", "Motion",
    "PROFILES", "Weights", "drive", "edtalk_v", "load_checkpoint", "load_official", "prepare_identity",
    "profile", "save_checkpoint",
]
