"""LSE-C / LSE-D lip-sync scoring, as syncnet_python computes them.

``score`` is the reference evaluation over a SyncNet (``edtalk.experts.syncnet``): BGR
0-255 frames resized to the network's size, MFCC (python_speech_features defaults) of
int16 audio, windows of 5 frames / 20 MFCC steps, batches of 20, distances to audio
embeddings shifted by -15..15 (zero vectors outside the clip), ``offset = 15 - argmin``,
LSE-D = min, LSE-C = median - min. LSE-C is higher-is-better, LSE-D lower-is-better.

Speed: the forward passes are ~90 % of the cost, so ``embed`` runs a SyncNet through
``fused_towers``: the same maths with BatchNorm folded into the convolutions and linear
layers and channels-last activations (faster oneDNN kernels on CPU): 1.3-1.45x less CPU
for the forward passes of a 10 s 224 px clip (``benchmarks/bench_sync_vs_reference.py``);
embeddings agree with the plain network to ~1e-6 relative (float rounding).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

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


class FusedTowers(nn.Module):
    """Eval-mode copy of a SyncNet's four towers for inference: each conv/linear + BatchNorm
    pair folded into one layer (the BN is an affine map with fixed statistics in eval
    mode, so this is the same function), conv weights in channels-last layout.

    Why (measured on CPU, 224 px, batch 20): oneDNN's conv3d is ~25 % faster on
    channels_last_3d activations than on NCDHW ones, max-pooling in that layout ~5x
    faster (17 % of the plain lip tower's time), and folding drops the BatchNorm passes
    (~8 %). Built from copies (torch's fuse_*_bn_eval): the caller's net is untouched.
    """

    def __init__(self, net: SyncNet) -> None:
        super().__init__()
        self.cnnlip = _fold_bn(net.netcnnlip).to(memory_format=torch.channels_last_3d)
        self.cnnaud = _fold_bn(net.netcnnaud).to(memory_format=torch.channels_last)
        self.fclip, self.fcaud = _fold_bn(net.netfclip), _fold_bn(net.netfcaud)
        self.requires_grad_(False)

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """N x 3 x 5 x S x S (any layout; channels_last_3d avoids a copy) -> N x D."""
        x = x.contiguous(memory_format=torch.channels_last_3d)
        return self.fclip(self.cnnlip(x).reshape(x.shape[0], -1))

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """N x 1 x 13 x 20 -> N x D."""
        x = x.contiguous(memory_format=torch.channels_last)
        return self.fcaud(self.cnnaud(x).reshape(x.shape[0], -1))


def _fold_bn(seq: nn.Sequential) -> nn.Sequential:
    """The layers of ``seq`` with every Conv/Linear followed by a BatchNorm fused into one
    layer (torch's fuse_*_bn_eval, which copy); the other layers (ReLU, pooling) are kept."""
    layers, out = list(seq), []
    while layers:
        m = layers.pop(0)
        if layers and isinstance(layers[0], nn.modules.batchnorm._BatchNorm):
            if isinstance(m, nn.modules.conv._ConvNd):
                m = fuse_conv_bn_eval(m, layers.pop(0))
            elif isinstance(m, nn.Linear):
                m = fuse_linear_bn_eval(m, layers.pop(0))
        out.append(m)
    return nn.Sequential(*out)


# One fused copy per net object, rebuilt when any of its tensors changed (in-place updates,
# e.g. load_state_dict or an optimizer step, bump a tensor's _version) or moved device.
_FUSED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _signature(net: nn.Module) -> tuple:
    # Inference tensors (a net built under inference_mode) keep no version counter.
    return tuple((t.data_ptr(), 0 if t.is_inference() else t._version, str(t.device))
                 for t in (*net.parameters(), *net.buffers()))


def fused_towers(net: SyncNet) -> FusedTowers:
    """The cached ``FusedTowers`` of an eval-mode ``net`` (built on first use, ~0.1 s)."""
    if net.training:
        raise ValueError("fused_towers needs an eval-mode net (BatchNorm running statistics)")
    sig = _signature(net)
    hit = _FUSED.get(net)
    if hit is None or hit[0] != sig:
        # Normal (not inference-mode) tensors, so the copy is usable in any later mode.
        with torch.inference_mode(False), torch.no_grad():
            hit = (sig, FusedTowers(net).eval())
        _FUSED[net] = hit
    return hit[1]


def scoring_towers(net: SyncNet, fused: bool = True) -> SyncNet | FusedTowers:
    """What scores with ``net``: its cached fused copy when ``fused`` and ``net`` is a plain
    eval-mode SyncNet, else ``net`` itself (a subclass may define its own forward passes)."""
    return fused_towers(net) if fused and type(net) is SyncNet and not net.training else net


def lip_batch(bgr: torch.Tensor, starts: range) -> torch.Tensor:
    """``lip_windows``' values (N x 3 x 5 x S x S float32) from a T x S x S x 3 uint8 BGR
    tensor, laid out channels_last_3d: each window is 5 whole frames, so it is a plain
    slice of the clip, and the fused lip tower needs no layout copy."""
    win = torch.stack([bgr[v:v + SYNC_FRAMES] for v in starts])      # N x 5 x S x S x 3
    return win.float().permute(0, 4, 1, 2, 3)


@torch.inference_mode()
def embed(frames: np.ndarray, audio: np.ndarray, sample_rate: int, net: SyncNet,
          batch_size: int = 20, jpeg_quality: int | None = None,
          device: str | torch.device | None = None, fused: bool = True
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Lip and audio embeddings of every window (N x D each), reference batching.

    ``fused`` (default): a ``SyncNet`` in eval mode runs as its ``fused_towers`` (same
    maths, faster); ``fused=False`` or any other network runs its own forward methods.
    """
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
    towers = scoring_towers(net, fused)
    fast = towers is not net
    clip = torch.from_numpy(bgr[:length]).to(device) if fast else None
    lips, auds = [], []
    for i in range(0, n, batch_size):
        idx = range(i, min(n, i + batch_size))
        lip_in = lip_batch(clip, idx) if fast else lip_windows(bgr[:length], idx).to(device)
        lips.append(towers.forward_lip(lip_in).float().cpu())
        auds.append(towers.forward_aud(mfcc_batch(mfcc, idx).to(device)).float().cpu())
    return torch.cat(lips), torch.cat(auds)


def score(frames: np.ndarray, audio: np.ndarray, sample_rate: int, net: SyncNet,
          batch_size: int = 20, jpeg_quality: int | None = None,
          device: str | torch.device | None = None, fused: bool = True) -> SyncScore:
    """Score one clip (RGB uint8 T x H x W x 3 at 25 fps; int16 mono 16 kHz audio).

    ``net`` should be in eval mode (``edtalk.experts.syncnet.load`` returns it so);
    ``fused`` as in ``embed``.
    """
    if net.training:
        raise ValueError("net is in training mode; call net.eval() (BatchNorm statistics)")
    v, a = embed(frames, audio, sample_rate, net, batch_size, jpeg_quality, device, fused)
    offset, lse_d, lse_c, mdist = summarise(distance_curve(v, a))
    mode = "direct" if jpeg_quality is None else f"jpeg-approx(q={int(jpeg_quality)})"
    return SyncScore(offset, lse_d, lse_c, mdist.tolist(), windows=len(v), mode=mode)
