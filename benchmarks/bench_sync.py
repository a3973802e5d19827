"""Sync scoring cost: wall time per clip vs the network forward passes alone.

Full syncnet_v2 at 224 px with random weights (timing only). Prints the median of
several runs: per-clip wall time of ``metrics.sync.score``, the time of the same
forward passes on pre-built inputs, their ratio (target <= 1.25) and frames/s.

    python benchmarks/bench_sync.py [--frames 100] [--runs 3] [--size 224] [--threads N]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from edtalk.experts import syncnet
from metrics import sync


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--size", type=int, default=224, help="input frame size (resized to 224 if not)")
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = syncnet.SyncNet().eval()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (a.frames, a.size, a.size, 3), dtype=np.uint8)
    audio = (rng.standard_normal(a.frames * 640) * 3000).astype(np.int16)

    # Inputs for the forward-only timing, built once (exactly what score feeds the net).
    bgr = syncnet.prepare_frames(frames, 224)
    mfcc = syncnet.mfcc_windows(audio)
    n = a.frames - syncnet.SYNC_FRAMES
    batches = []
    for i in range(0, n, 20):
        idx = range(i, min(n, i + 20))
        batches.append((syncnet.lip_windows(bgr, idx), syncnet.mfcc_batch(mfcc, idx)))

    def forward_only() -> None:
        with torch.inference_mode():
            for lip, cc in batches:
                net.forward_lip(lip)
                net.forward_aud(cc)

    def full() -> None:
        sync.score(frames, audio, 16000, net)

    full()  # warm-up (allocator, MKL-DNN kernels)
    t_full, t_fwd = [], []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        forward_only()
        t_fwd.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        full()
        t_full.append(time.perf_counter() - t0)
    mf, mw = statistics.median(t_full), statistics.median(t_fwd)
    print(f"syncnet_v2 224 px, {a.frames} frames ({n} windows) of {a.size} px input, "
          f"torch threads {torch.get_num_threads()}, median of {a.runs} runs")
    print(f"score() wall time per clip : {mf:.3f} s")
    print(f"forward passes alone       : {mw:.3f} s")
    print(f"overhead ratio             : {mf / mw:.3f}x (target <= 1.25)")
    print(f"throughput                 : {a.frames / mf:.1f} frames/s (score), "
          f"{n / mw:.1f} windows/s (forward)")


if __name__ == "__main__":
    main()
