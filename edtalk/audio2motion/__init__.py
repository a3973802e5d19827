"""Audio-to-Motion (paper §3.3): audio -> mouth, flow-based pose, semantic expression.

Library only: no Prefect or DVC here. Heavy optional pieces (the text encoder, HuBERT
loading) import their dependencies lazily.
"""

from .audio_encoder import AudioEncoder, frame_windows
from .config import (A2MConfig, AudioEncoderConfig, ExpressionConfig, MouthConfig,
                     PoseFlowConfig, SemanticEncoderConfig, a2m_config)
from .mouth import AudioToMouth, mouth_feature_loss, sync_loss
from .official_audio2lip import OfficialAudio2Lip, load_official, official_windows, smooth_weights
from .pose_flow import (PoseFlow, gaussian_nll, jitter, mle_loss, pose_losses, pose_rec_loss,
                        temporal_loss)
from .semantic_encoder import SemanticEncoder, from_pretrained_hubert
from .semantic_expression import (BOTH, MASK_AUDIO, MASK_TEXT, ExpressionHead, SemanticExpression,
                                  expression_loss, modality_branch, sample_branches)
from .text_encoder import TextEncoder

__all__ = [
    "A2MConfig", "AudioEncoder", "AudioEncoderConfig", "AudioToMouth", "BOTH", "ExpressionConfig",
    "ExpressionHead", "MASK_AUDIO", "MASK_TEXT", "MouthConfig", "OfficialAudio2Lip", "PoseFlow",
    "PoseFlowConfig", "SemanticEncoder", "SemanticEncoderConfig", "SemanticExpression",
    "TextEncoder", "a2m_config", "expression_loss", "frame_windows", "from_pretrained_hubert",
    "gaussian_nll", "jitter", "load_official", "modality_branch", "mle_loss", "mouth_feature_loss",
    "official_windows", "pose_losses", "pose_rec_loss", "sample_branches",
    "smooth_weights", "sync_loss", "temporal_loss",
]
