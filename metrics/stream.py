"""Frame-at-a-time scoring pieces, so that a clip of any length fits in bounded memory.

A 5-minute 256 px clip is 1.4 GB of RGB frames per video; the suite never holds a whole
clip. ``count_frames`` demuxes once (no decoding) to learn the length the ``linspace``
pairing rule needs, ``frames`` decodes one frame at a time, and ``LipStream`` computes
SyncNet's lip embeddings window by window while frames go past, keeping only the last
``SYNC_FRAMES - 1`` prepared frames between batches. Its numbers equal
``metrics.sync.score`` on the whole clip (``tests/test_metrics_evaluate_cli.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import torch

from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.schema import SAMPLE_RATE, SAMPLES_PER_FRAME
from edtalk.experts.syncnet import SYNC_FRAMES, SyncNet, lip_windows, mfcc_batch, mfcc_windows, prepare_frames
from metrics import sync

MIN_SYNC_FRAMES = SYNC_FRAMES + 1
"""Fewest frames LSE-C/LSE-D are computed from: one 5-frame window needs 5 frames, and
syncnet_python's loop takes ``length - 5`` windows, so 6 frames give one window."""
FULL_SEARCH_FRAMES = SYNC_FRAMES + sync.VSHIFT + 1
"""From 21 frames (0.84 s at 25 fps) every one of the 31 offsets (±15) compares at least
one window with real audio; below that some offsets see only the zero padding, and the
clip's row carries ``sync_short`` so the reader knows its LSE-C leans on the padding."""


def count_frames(path: str | Path) -> int:
    """Video frames in ``path``, from its packets (no decoding); ClipRejected if unreadable."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ClipRejected(Reason.NO_VIDEO, f"{Path(path).name} has no video stream")
            stream = container.streams.video[0]
            return sum(1 for p in container.demux(stream) if p.size)
    except ClipRejected:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot open {Path(path).name}: {exc}") from exc


def frames(path: str | Path) -> Iterator[np.ndarray]:
    """RGB uint8 frames (H, W, 3) of ``path`` one at a time; decoding errors as ClipRejected."""
    n = 0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                n += 1
                yield frame.to_ndarray(format="rgb24")
    except (av.error.FFmpegError, OSError, ValueError, IndexError) as exc:
        reason = Reason.TRUNCATED if n else Reason.CORRUPT
        raise ClipRejected(reason, f"decoding {Path(path).name} stopped after {n} frames: {exc}") from exc


class LipStream:
    """SyncNet lip embeddings of every 5-frame window, fed one frame at a time.

    ``n_frames``: frames the video will deliver; ``audio``: the driving audio (int16 or
    float mono at 16 kHz). Raises ValueError (as ``sync.embed``) when the pair is too
    short for one window. ``push`` frames in order, then ``result``.
    """

    def __init__(self, net: SyncNet, n_frames: int, audio: np.ndarray, batch_size: int = 20,
                 device: str | torch.device | None = None) -> None:
        if net.training:
            raise ValueError("net is in training mode; call net.eval() (BatchNorm statistics)")
        self.net, self.batch = net, batch_size
        self.towers = sync.scoring_towers(net)     # the fused copy, as sync.embed uses
        self.device = device or next(net.parameters()).device
        self.pcm = sync._as_int16(audio)
        self.length = min(n_frames, len(self.pcm) // SAMPLES_PER_FRAME)
        self.n = self.length - SYNC_FRAMES
        if self.n < 1:
            raise ValueError(f"clip too short for SyncNet: {n_frames} frames, {len(self.pcm)} samples "
                             f"(needs at least {MIN_SYNC_FRAMES} frames and {MIN_SYNC_FRAMES} x "
                             f"{SAMPLES_PER_FRAME} samples)")
        self.size = net.config.image_size
        self.buf: list[np.ndarray] = []        # prepared BGR frames from index self.base on
        self.base = 0                          # video index of buf[0] == next window start
        self.seen = 0
        self.lips: list[torch.Tensor] = []

    @torch.inference_mode()
    def _run(self, count: int) -> None:
        starts = range(count)                  # relative to self.base
        bgr = np.stack(self.buf[:count + SYNC_FRAMES - 1])
        self.lips.append(self.towers.forward_lip(lip_windows(bgr, starts).to(self.device)).float().cpu())
        self.buf = self.buf[count:]
        self.base += count

    def push(self, frame: np.ndarray) -> None:
        """One RGB uint8 (H, W, 3) frame, the next in the video."""
        if self.seen >= self.length:
            return
        self.seen += 1
        self.buf.append(prepare_frames(frame[None], self.size)[0])
        # Batches start where the reference's do (multiples of batch_size), so every
        # batch holds the same windows as in ``sync.embed``.
        remaining = self.n - self.base
        if remaining > 0 and len(self.buf) >= min(self.batch, remaining) + SYNC_FRAMES - 1:
            self._run(min(self.batch, remaining))

    @torch.inference_mode()
    def result(self) -> sync.SyncScore:
        """Offset, LSE-D, LSE-C over all windows (after every frame was pushed)."""
        if self.base < self.n:
            raise ValueError(f"only {self.seen} of {self.length} frames were pushed")
        mfcc = mfcc_windows(self.pcm, SAMPLE_RATE)
        auds = [self.towers.forward_aud(mfcc_batch(mfcc, range(i, min(self.n, i + self.batch)))
                                     .to(self.device)).float().cpu()
                for i in range(0, self.n, self.batch)]
        v, a = torch.cat(self.lips), torch.cat(auds)
        offset, lse_d, lse_c, mdist = sync.summarise(sync.distance_curve(v, a))
        return sync.SyncScore(offset, lse_d, lse_c, mdist.tolist(), windows=len(v), mode="direct")
