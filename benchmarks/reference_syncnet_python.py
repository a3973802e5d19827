"""syncnet_python's ``evaluate`` as its authors run it, rewritten here for timing.

Only the benchmark (``bench_sync_vs_reference.py``) uses this module: it is the yardstick
that ``metrics.sync`` is timed against, so it keeps the reference's *steps* and their
costs on purpose, including the ones ``metrics.sync`` avoids:

1. ffmpeg dumps every frame of the video as a JPEG file (one thread, ffmpeg's default
   JPEG quality, as evaluate calls it) into a scratch folder, and writes the audio as a 16 kHz mono 16-bit wav (a second ffmpeg).
2. The JPEGs are read back one by one with OpenCV (BGR), stacked into one
   1 x 3 x T x H x W array, converted to float64 and then to a float32 tensor: the whole
   clip is held twice, once in double precision.
3. MFCC of the wav with python_speech_features (its defaults), also via float64.
4. Windows of 5 frames / 20 MFCC steps, cut from the whole-clip tensors with
   ``torch.cat`` per batch of 20, through the lip and audio towers.
5. Autograd is left on, as in the reference (its evaluate has no ``no_grad``), so every
   forward records its graph. The distance curve is built one video window at a time (a Python loop over
   windows, each comparing against the 31 shifted audio embeddings, vshift 15), then
   the mean curve, its minimum (LSE-D) and median - minimum (LSE-C); the per-window
   confidence and its median filter (kernel 9) are computed too, as the reference does.

The network itself is the project's ``SyncNet`` (the same syncnet_v2 layout), loaded
from the same weights file as the path under test.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import python_speech_features
import torch
from scipy import signal
from scipy.io import wavfile

from edtalk.experts.syncnet import SyncNet

VSHIFT = 15
BATCH = 20


@dataclass(frozen=True)
class ReferenceResult:
    offset: int
    lse_d: float
    lse_c: float
    windows: int


def ffmpeg_exe() -> str:
    """The ffmpeg binary: a system one, else the one the imageio-ffmpeg wheel ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _pairwise_per_window(video: torch.Tensor, audio: torch.Tensor, vshift: int) -> list[torch.Tensor]:
    # One row of 31 distances per video window, built in a Python loop (the reference's way).
    width = 2 * vshift + 1
    padded = torch.nn.functional.pad(audio, (0, 0, vshift, vshift))
    rows = []
    for i in range(len(video)):
        rows.append(torch.nn.functional.pairwise_distance(video[[i], :].repeat(width, 1),
                                                          padded[i:i + width, :]))
    return rows


def evaluate(video_path: str | os.PathLike, net: SyncNet, work_dir: str | os.PathLike | None = None,
             batch_size: int = BATCH, vshift: int = VSHIFT) -> ReferenceResult:
    """Score ``video_path`` (25 fps face crops with audio) the way syncnet_python does.

    Autograd stays on, as in the reference (its evaluate has no ``no_grad``; it keeps
    ``.data`` of each output): the network records its graph, the scores do not change.
    """
    scratch = Path(tempfile.mkdtemp(prefix="refsync_", dir=work_dir))
    try:
        ffmpeg = ffmpeg_exe()
        _run([ffmpeg, "-y", "-i", str(video_path), "-threads", "1", "-f", "image2",
              str(scratch / "%06d.jpg")])
        _run([ffmpeg, "-y", "-i", str(video_path), "-async", "1", "-ac", "1", "-vn",
              "-acodec", "pcm_s16le", "-ar", "16000", str(scratch / "audio.wav")])

        images = [cv2.imread(f) for f in sorted(glob.glob(str(scratch / "*.jpg")))]
        stacked = np.stack(images, axis=3)[None]                  # 1 x H x W x 3 x T
        stacked = np.transpose(stacked, (0, 3, 4, 1, 2))          # 1 x 3 x T x H x W
        imtv = torch.from_numpy(stacked.astype(float)).float()

        rate, pcm = wavfile.read(str(scratch / "audio.wav"))
        mfcc = np.stack([np.array(row) for row in zip(*python_speech_features.mfcc(pcm, rate))])
        cct = torch.from_numpy(mfcc[None, None].astype(float)).float()

        usable = min(len(images), len(pcm) // 640)
        last = usable - 5
        if last < 1:
            raise ValueError(f"{video_path}: too short ({len(images)} frames)")
        lips, auds = [], []
        with torch.enable_grad():  # the reference's mode, whatever the caller set
            for i in range(0, last, batch_size):
                span = range(i, min(last, i + batch_size))
                lip_in = torch.cat([imtv[:, :, v:v + 5, :, :] for v in span], 0)
                aud_in = torch.cat([cct[:, :, :, v * 4:v * 4 + 20] for v in span], 0)
                lips.append(net.forward_lip(lip_in).data.cpu())
                auds.append(net.forward_aud(aud_in).data.cpu())
        video_emb, audio_emb = torch.cat(lips, 0), torch.cat(auds, 0)

        rows = _pairwise_per_window(video_emb, audio_emb, vshift)
        mdist = torch.mean(torch.stack(rows, 1), 1)
        minval, minidx = torch.min(mdist, 0)
        conf = torch.median(mdist) - minval
        # Per-window confidence and its smoothed version: computed (and discarded) by the
        # reference's evaluate, so they are part of its cost.
        fdist = np.stack([r[minidx].numpy() for r in rows])
        signal.medfilt(torch.median(mdist).numpy() - fdist, kernel_size=9)
        return ReferenceResult(vshift - int(minidx), float(minval), float(conf), len(video_emb))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
