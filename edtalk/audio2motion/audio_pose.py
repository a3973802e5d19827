"""The pose predictor of §3.3: an own E_a for f^a, then the flow phi_p (Eqs. 13-14) over W^p."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from .audio_encoder import AudioEncoder
from .config import AudioEncoderConfig, PoseFlowConfig
from .pose_flow import PoseFlow


class AudioPose(nn.Module):
    """f^a = E_a(a) per frame, then phi_p over W^p conditioned on the f^a sequence."""

    def __init__(self, encoder: AudioEncoderConfig, flow: PoseFlowConfig) -> None:
        super().__init__()
        if encoder.out_dim != flow.cond_dim:
            flow = replace(flow, cond_dim=encoder.out_dim)
        self.encoder = AudioEncoder(encoder)
        self.flow = PoseFlow(flow)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, steps, D) windows -> f^a (B, T, C).

        With ``flow.cfg.audio_cmn`` the windows are mean-normalised per sequence first
        (cepstral mean normalisation over all frames and steps): the static voice of the
        speaker (and the channel) is removed, the pose is conditioned on how the speech
        moves, and the flow cannot learn the training speakers' W^p from their voices.
        """
        if self.flow.cfg.audio_cmn and windows.ndim == 4:
            windows = windows - windows.mean(dim=(1, 2), keepdim=True)
        return self.encoder(windows)
