"""The released EDTalk ``Audio2Lip`` network, key-for-key, and its temporal smoothing.

Layout (``official_state_dict_Audio2Lip.json``, 93 entries, 2.82 M parameters): a
Wav2Lip-type speech encoder ``audio_encoder.{0..12}.conv_block.{0: Conv2d, 1: BatchNorm2d}``
over one 1x80x16 official mel window per video frame, then ``mapping = Linear(512, 20)``
to the mouth weights. Each block is conv -> BN (-> + input when residual) -> ReLU.
The demos smooth the (T, 20) weight sequence with a 3-tap Gaussian, zero padded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edtalk.data.audio_features import official_mel, mel_window

CHECKPOINT_KEY = "audio2lip"
SMOOTHING_KERNEL = (0.27407, 0.45186, 0.27407)

# (in, out, kernel, stride, padding, residual) of the 13 conv blocks, in release order.
_BLOCKS: tuple[tuple[int, int, int, int | tuple[int, int], int, bool], ...] = (
    (1, 32, 3, 1, 1, False), (32, 32, 3, 1, 1, True), (32, 32, 3, 1, 1, True),
    (32, 64, 3, (3, 1), 1, False), (64, 64, 3, 1, 1, True), (64, 64, 3, 1, 1, True),
    (64, 128, 3, 3, 1, False), (128, 128, 3, 1, 1, True), (128, 128, 3, 1, 1, True),
    (128, 256, 3, (3, 2), 1, False), (256, 256, 3, 1, 1, True),
    (256, 512, 3, 1, 0, False), (512, 512, 1, 1, 0, False),
)


class ConvBlock(nn.Module):
    """conv -> BatchNorm (-> + x if residual) -> ReLU; parameters under ``conv_block``."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int | tuple[int, int],
                 padding: int, residual: bool) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, padding),
                                        nn.BatchNorm2d(c_out))
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return F.relu(out)


class OfficialAudio2Lip(nn.Module):
    """(B, 1, 80, 16) official mel windows -> (B, 20) mouth weights, as released."""

    def __init__(self) -> None:
        super().__init__()
        self.audio_encoder = nn.Sequential(*(ConvBlock(*b) for b in _BLOCKS))
        self.mapping = nn.Linear(512, 20)

    def forward(self, mel_windows: torch.Tensor) -> torch.Tensor:
        if mel_windows.ndim == 3:
            mel_windows = mel_windows.unsqueeze(1)
        if tuple(mel_windows.shape[1:]) != (1, 80, 16):
            raise ValueError(f"expected (B, 1, 80, 16) mel windows, got {tuple(mel_windows.shape)}")
        f = self.audio_encoder(mel_windows)                       # (B, 512, 1, 1)
        return self.mapping(f.flatten(1))


def _describe_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor], limit: int = 5) -> str:
    """Human-readable first differences between ``model``'s state dict and ``state``."""
    want = model.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(want[k].shape)}"
             for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing[:limit]))
    if unexpected:
        parts.append("unexpected " + ", ".join(unexpected[:limit]))
    if shape:
        parts.append("shape " + "; ".join(shape[:limit]))
    return "; ".join(parts)


def load_official(path: str | os.PathLike | None = None, map_location: str = "cpu") -> OfficialAudio2Lip:
    """Load the released ``Audio2Lip.pt`` ({"audio2lip": state_dict}) strictly, in eval mode.

    ``path`` None looks the file up in the weights registry (``MissingWeights`` when
    absent). ``torch.load(weights_only=True)``; a file of another layout raises
    ValueError naming the first missing / unexpected / mis-shaped keys.
    """
    if path is None:
        from edtalk.weights import locate
        path = locate("audio2lip")
    obj = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(obj, Mapping) or CHECKPOINT_KEY not in obj:
        keys = list(obj)[:5] if isinstance(obj, Mapping) else type(obj).__name__
        raise ValueError(f"{path}: not an Audio2Lip checkpoint (no {CHECKPOINT_KEY!r} key; has {keys})")
    state = obj[CHECKPOINT_KEY]
    model = OfficialAudio2Lip()
    problem = _describe_mismatch(model, state)
    if problem:
        raise ValueError(f"{path}: state dict does not match the released Audio2Lip layout: {problem}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def official_windows(audio: np.ndarray, n_frames: int | None = None) -> torch.Tensor:
    """16 kHz mono audio -> (T, 1, 80, 16) official mel windows, T = len // 640 by default."""
    mel = official_mel(audio)
    t = len(np.asarray(audio).reshape(-1)) // 640 if n_frames is None else n_frames
    wins = np.stack([mel_window(mel, i) for i in range(t)]) if t > 0 else np.zeros((0, 80, 16))
    return torch.from_numpy(wins.astype(np.float32)).unsqueeze(1)


def smooth_weights(weights: torch.Tensor, kernel: tuple[float, ...] = SMOOTHING_KERNEL) -> torch.Tensor:
    """Official temporal smoothing of a (T, n) weight sequence: 3-tap Gaussian, zero padding.

    out[t] = k0 w[t-1] + k1 w[t] + k2 w[t+1] with w[-1] = w[T] = 0 (so the ends shrink).
    """
    if weights.ndim != 2:
        raise ValueError(f"expected (T, n) weights, got {tuple(weights.shape)}")
    k = torch.tensor(kernel, dtype=weights.dtype, device=weights.device)
    x = weights.t().unsqueeze(1)                                    # (n, 1, T)
    return F.conv1d(x, k.view(1, 1, -1), padding=len(kernel) // 2).squeeze(1).t()


@torch.no_grad()
def predict_mouth(model: OfficialAudio2Lip, audio: np.ndarray, smooth: bool = True,
                  batch: int = 256) -> torch.Tensor:
    """EDTalk-A mouth weights (T, 20) for a whole utterance as the demos compute them."""
    wins = official_windows(audio)
    out = torch.cat([model(wins[i:i + batch]) for i in range(0, len(wins), batch)])
    return smooth_weights(out) if smooth else out
