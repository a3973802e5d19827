"""File -> LSE-C / LSE-D: our path against syncnet_python's evaluate, side by side.

Both sides start from the same mp4 (10 s, 224 px, 25 fps, AAC audio) and the same
SyncNet weights file; each timed run covers everything from the file to the two numbers:

- ours: ``edtalk.data.media`` decodes frames and 16 kHz audio in memory, then
  ``metrics.sync.score`` (what ``python -m metrics sync`` runs);
- reference: ``benchmarks/reference_syncnet_python.evaluate`` (ffmpeg JPEG dump + wav,
  float64 clip array, per-window distance loop).

Runs alternate (ours, reference, ours, ...) so that load from other processes hits both
alike; the medians of wall time and of CPU time (this process plus its ffmpeg children:
the figure to trust on a shared machine) and their ratios are printed (target: reference
/ ours >= 1.4), with the time of the SyncNet forward passes alone on pre-built inputs,
as the reference runs them (the plain network) and as ours does (``sync.fused_towers``:
BatchNorm folded, channels-last; same maths to ~1e-6). When no
weights file is given, a randomly initialised syncnet_v2 is saved to a file and both
sides load that (timing does not depend on the weights; the scores then mean nothing).

    python benchmarks/bench_sync_vs_reference.py [--weights syncnet_v2.model] [--runs 5]
        [--seconds 10] [--size 224] [--threads N] [--json OUT]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reference_syncnet_python as reference  # noqa: E402

from edtalk.data import atomic  # noqa: E402
from edtalk.data.media import read_audio, read_frames, write_video  # noqa: E402
from edtalk.data.schema import SAMPLE_RATE  # noqa: E402
from edtalk.experts import syncnet  # noqa: E402
from metrics import sync  # noqa: E402


def make_clip(path: Path, seconds: float, size: int, fps: int = 25) -> None:
    """A face-like moving pattern with a syllable-rate tone: realistic frame content for
    the codecs (JPEG cost depends on detail), deterministic."""
    n = int(round(seconds * fps))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = (rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
            .repeat(8, 0).repeat(8, 1)[:size, :size].astype(np.float32))
    frames = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        mouth = 0.03 + 0.03 * np.sin(2 * np.pi * 4 * t / fps)
        ellipse = ((xx - 0.5) / 0.3) ** 2 + ((yy - 0.5) / 0.4) ** 2 < 1
        lips = ((xx - 0.5) / 0.12) ** 2 + ((yy - 0.72) / mouth) ** 2 < 1
        img = 0.5 * base + 60 * np.sin(6 * xx + t / 10.0)[..., None]
        img[ellipse] = (200, 160, 130)
        img[lips] = (120, 30, 40)
        frames[t] = np.clip(img, 0, 255).astype(np.uint8)
    samples = int(seconds * SAMPLE_RATE)
    tt = np.arange(samples) / SAMPLE_RATE
    audio = 0.3 * np.sin(2 * np.pi * 220 * tt) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * tt))
    audio += 0.01 * rng.standard_normal(samples)
    write_video(path, frames, fps, audio.astype(np.float32))


def ours(video: Path, net: syncnet.SyncNet) -> sync.SyncScore:
    frames, _ = read_frames(video)
    audio = read_audio(video, SAMPLE_RATE)
    return sync.score(frames, audio, SAMPLE_RATE, net)


def cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (ffmpeg)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def network_only(video: Path, net: syncnet.SyncNet, fused: bool = False) -> float:
    """CPU seconds of the lip and audio forward passes alone, inputs built beforehand:
    the plain network (the reference's passes) or ``sync.fused_towers`` (ours)."""
    frames, _ = read_frames(video)
    pcm = sync._as_int16(read_audio(video, SAMPLE_RATE))
    bgr = syncnet.prepare_frames(frames, net.config.image_size)
    mfcc = syncnet.mfcc_windows(pcm)
    n = min(len(bgr), len(pcm) // 640) - syncnet.SYNC_FRAMES
    batches = [(syncnet.lip_windows(bgr, range(i, min(n, i + 20))),
                syncnet.mfcc_batch(mfcc, range(i, min(n, i + 20)))) for i in range(0, n, 20)]
    towers = sync.fused_towers(net) if fused else net
    if fused:   # ours feeds the lip tower channels_last_3d windows (sync.lip_batch)
        batches = [(lip.permute(0, 2, 3, 4, 1).contiguous().permute(0, 4, 1, 2, 3), cc)
                   for lip, cc in batches]
    t0 = cpu_seconds()
    with torch.inference_mode():
        for lip, cc in batches:
            towers.forward_lip(lip)
            towers.forward_aud(cc)
    return cpu_seconds() - t0


def weights_file(given: str | None, work: Path) -> tuple[Path, str]:
    if given:
        return Path(given), f"weights file {given}"
    torch.manual_seed(0)
    path = work / "syncnet_random.pt"
    syncnet.save_trained(syncnet.SyncNet().eval(), path)
    return path, "randomly initialised syncnet_v2 (no trained file given; timing only)"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--json", help="also write the figures here")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    with tempfile.TemporaryDirectory(prefix="bench_sync_ref_") as tmp:
        work = Path(tmp)
        video = work / "clip.mp4"
        make_clip(video, a.seconds, a.size)
        path, label = weights_file(a.weights, work)
        net = syncnet.load(path)  # one file, one net object: both sides run the same weights

        first_ours, first_ref = ours(video, net), reference.evaluate(video, net, work)  # warm-up
        t_ours, t_ref, c_ours, c_ref, c_net, c_fused = [], [], [], [], [], []
        for _ in range(a.runs):
            for fn, wall, cpu in ((lambda: ours(video, net), t_ours, c_ours),
                                  (lambda: reference.evaluate(video, net, work), t_ref, c_ref)):
                c0, t0 = cpu_seconds(), time.perf_counter()
                fn()
                wall.append(time.perf_counter() - t0)
                cpu.append(cpu_seconds() - c0)
            c_net.append(network_only(video, net))
            c_fused.append(network_only(video, net, fused=True))
    m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
    cm_ours, cm_ref, cm_net, cm_fused = (statistics.median(c)
                                         for c in (c_ours, c_ref, c_net, c_fused))
    out = {
        "clip": f"{a.seconds:g} s, {a.size} px, 25 fps, AAC audio", "weights": label,
        "torch_threads": torch.get_num_threads(), "runs": a.runs,
        "ours_s": t_ours, "reference_s": t_ref, "ours_median_s": m_ours,
        "reference_median_s": m_ref, "speedup": m_ref / m_ours,
        "ours_cpu_s": c_ours, "reference_cpu_s": c_ref, "network_only_cpu_s": c_net,
        "ours_cpu_median_s": cm_ours, "reference_cpu_median_s": cm_ref,
        "network_only_cpu_median_s": cm_net, "speedup_cpu": cm_ref / cm_ours,
        "network_fused_cpu_s": c_fused, "network_fused_cpu_median_s": cm_fused,
        "ours_scores": {"offset": first_ours.offset, "lse_d": first_ours.lse_d,
                        "lse_c": first_ours.lse_c, "windows": first_ours.windows},
        "reference_scores": {"offset": first_ref.offset, "lse_d": first_ref.lse_d,
                             "lse_c": first_ref.lse_c, "windows": first_ref.windows},
    }
    print(f"clip: {out['clip']}; {label}; torch threads {out['torch_threads']}; "
          f"median of {a.runs} alternating runs")
    print(f"{'':49s}   wall s    CPU s")
    print(f"ours      (decode in memory + metrics.sync.score): {m_ours:8.2f} {cm_ours:8.2f}  "
          f"LSE-D {first_ours.lse_d:.4f} LSE-C {first_ours.lse_c:.4f} offset {first_ours.offset}")
    print(f"reference (syncnet_python evaluate steps)        : {m_ref:8.2f} {cm_ref:8.2f}  "
          f"LSE-D {first_ref.lse_d:.4f} LSE-C {first_ref.lse_c:.4f} offset {first_ref.offset}")
    print(f"SyncNet forward passes alone, plain (reference)  : {'':8s} {cm_net:8.2f}")
    print(f"SyncNet forward passes alone, fused (ours)       : {'':8s} {cm_fused:8.2f}")
    print(f"speed-up reference / ours: {m_ref / m_ours:.2f}x wall, {cm_ref / cm_ours:.2f}x CPU "
          f"(target >= 1.4x); forward passes plain / fused: {cm_net / cm_fused:.2f}x CPU")
    print("score differences come from the reference's JPEG round trip of every frame")
    if a.json:
        atomic.write_json(a.json, out)
    return out


if __name__ == "__main__":
    main()
