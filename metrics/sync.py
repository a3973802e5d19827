"""LSE-C / LSE-D lip-sync scoring, as syncnet_python computes them.

``score`` is the reference evaluation over a SyncNet (``edtalk.experts.syncnet``): BGR
0-255 frames resized to the network's size, MFCC (python_speech_features defaults) of
int16 audio, windows of 5 frames / 20 MFCC steps, batches of 20, distances to audio
embeddings shifted by -15..15 (zero vectors outside the clip), ``offset = 15 - argmin``,
LSE-D = min, LSE-C = median - min. LSE-C is higher-is-better, LSE-D lower-is-better.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from edtalk.data.schema import SAMPLE_RATE, SAMPLES_PER_FRAME
from edtalk.experts.syncnet import SYNC_FRAMES, SyncNet, lip_windows, mfcc_batch, mfcc_windows, prepare_frames

HIGHER_IS_BETTER = {"lse_c": True, "lse_d": False}
VSHIFT = 15
EPS = 1e-6


@dataclass(frozen=True)
class SyncScore:
    """One clip's sync result: offset (frames; audio lagging by d gives -d), LSE-D,
    LSE-C, the 31-value mean-distance curve, windows scored and the decode mode."""

    offset: int
    lse_d: float
    lse_c: float
    mdist: list[float] = field(repr=False)
    windows: int = 0
    mode: str = "direct"


def _as_int16(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono 1-D, got shape {audio.shape}")
    if audio.dtype == np.int16:
        return audio
    if np.issubdtype(audio.dtype, np.floating):
        return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    raise ValueError(f"audio must be int16 (or float in [-1, 1]), got {audio.dtype}")


def distance_curve(video_emb: torch.Tensor, audio_emb: torch.Tensor,
                   vshift: int = VSHIFT) -> torch.Tensor:
    """d[i, k] = || v_i - a_{i+k-vshift} + 1e-6 ||_2 with zero audio outside 0..N-1.

    >>> distance_curve(torch.zeros(2, 1), torch.ones(2, 1), vshift=1)[0].tolist()  # zero pad, a_0, a_1
    [9.999999974752427e-07, 0.9999989867210388, 0.9999989867210388]
    """
    if video_emb.shape != audio_emb.shape or video_emb.ndim != 2:
        raise ValueError(f"embeddings must be equal N x D, got {tuple(video_emb.shape)} "
                         f"and {tuple(audio_emb.shape)}")
    padded = torch.nn.functional.pad(audio_emb, (0, 0, vshift, vshift))
    windows = padded.unfold(0, 2 * vshift + 1, 1)          # N x D x (2 vshift + 1)
    return (video_emb.unsqueeze(-1) - windows + EPS).norm(dim=1)


def summarise(dists: torch.Tensor, vshift: int = VSHIFT) -> tuple[int, float, float, torch.Tensor]:
    """(offset, lse_d, lse_c, mdist) from the N x 31 distance matrix."""
    mdist = dists.mean(dim=0)
    minval, minidx = torch.min(mdist, 0)
    offset = vshift - int(minidx)
    conf = torch.median(mdist) - minval
    return offset, float(minval), float(conf), mdist


@torch.inference_mode()
def embed(frames: np.ndarray, audio: np.ndarray, sample_rate: int, net: SyncNet,
          batch_size: int = 20, jpeg_quality: int | None = None,
          device: str | torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings of every window (N x D each), reference batching."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError(f"audio must be {SAMPLE_RATE} Hz, got {sample_rate}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    pcm = _as_int16(audio)
    bgr = prepare_frames(frames, net.config.image_size, jpeg_quality)
    length = min(len(bgr), len(pcm) // SAMPLES_PER_FRAME)
    n = length - SYNC_FRAMES
    if n < 1:
        raise ValueError(f"clip too short for SyncNet: {len(bgr)} frames, {len(pcm)} samples "
                         f"(needs at least 6 frames and 6 x 640 samples)")
    device = device or next(net.parameters()).device
    mfcc = mfcc_windows(pcm, sample_rate)
    lips, auds = [], []
    for i in range(0, n, batch_size):
        idx = range(i, min(n, i + batch_size))
        lips.append(net.forward_lip(lip_windows(bgr[:length], idx).to(device)).float().cpu())
        auds.append(net.forward_aud(mfcc_batch(mfcc, idx).to(device)).float().cpu())
    return torch.cat(lips), torch.cat(auds)


def score(frames: np.ndarray, audio: np.ndarray, sample_rate: int, net: SyncNet,
          batch_size: int = 20, jpeg_quality: int | None = None,
          device: str | torch.device | None = None) -> SyncScore:
    """Score one clip (RGB uint8 T x H x W x 3 at 25 fps; int16 mono 16 kHz audio).

    ``net`` should be in eval mode (``edtalk.experts.syncnet.load`` returns it so).
    """
    if net.training:
        raise ValueError("net is in training mode; call net.eval() (BatchNorm statistics)")
    v, a = embed(frames, audio, sample_rate, net, batch_size, jpeg_quality, device)
    offset, lse_d, lse_c, mdist = summarise(distance_curve(v, a))
    mode = "direct" if jpeg_quality is None else f"jpeg-approx(q={int(jpeg_quality)})"
    return SyncScore(offset, lse_d, lse_c, mdist.tolist(), windows=len(v), mode=mode)
