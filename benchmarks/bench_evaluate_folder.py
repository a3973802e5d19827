"""Time ``python -m metrics evaluate`` on a folder of 16 clips, and its peak memory on one long clip.

    python benchmarks/bench_evaluate_folder.py [--clips 16] [--seconds 4] [--runs 3]
    python benchmarks/bench_evaluate_folder.py --long-minutes 5 --size 256

Folder mode: 16 generated clips (noisy copies of random-texture ground truth, 64 px,
audio tracks) scored with a trained-here-layout SyncNet, the rgb-pool8 FD and no
landmarks; prints the median wall time of ``--runs`` runs, each in a fresh process.
Long mode: one clip of ``--long-minutes`` at ``--size`` px scored against itself in a
child process; prints that process's peak RSS (``ru_maxrss`` of the child).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from edtalk.data.media import write_video
from edtalk.experts import syncnet as sn


def _clips(root: Path, n: int, frames: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        gt = rng.integers(30, 220, (frames, size, size, 3), dtype=np.uint8)
        audio = (rng.standard_normal(frames * 640) * 0.1).astype(np.float32)
        pred = np.clip(gt.astype(int) + rng.integers(-20, 21, gt.shape), 0, 255).astype(np.uint8)
        write_video(root / "gt" / f"clip{i:02d}.mp4", gt, audio=audio)
        write_video(root / "pred" / f"clip{i:02d}.mp4", pred, audio=audio)


def _long_clip(path: Path, minutes: float, size: int) -> None:
    """A long clip written in chunks (never held whole): moving gradients plus noise."""
    import av

    n = int(minutes * 60 * 25)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    with av.open(str(path), "w", format="mp4") as c:
        vs = c.add_stream("libx264", rate=25)
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        vs.options = {"crf": "23", "preset": "ultrafast"}
        aus = c.add_stream("aac", rate=16000, layout="mono")
        yy, xx = np.mgrid[0:size, 0:size]
        for t in range(n):
            img = ((xx + 3 * t) % 256 * 0.5 + (yy + t) % 256 * 0.5).astype(np.uint8)
            frame = np.stack([img, 255 - img, img // 2], -1) + rng.integers(0, 8, (size, size, 3), dtype=np.uint8)
            for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in vs.encode(None):
            c.mux(p)
        pts = 0
        for _ in range(0, n * 640, 16000):
            a = av.AudioFrame.from_ndarray((rng.standard_normal((1, 16000)) * 0.1).astype(np.float32),
                                           format="flt", layout="mono")
            a.sample_rate, a.pts = 16000, pts
            pts += 16000
            for p in aus.encode(a):
                c.mux(p)
        for p in aus.encode(None):
            c.mux(p)


def _evaluate(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "metrics", "evaluate", "--quiet", "--device", "cpu", *args],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--long-minutes", type=float, help="long-clip memory mode")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        torch.manual_seed(0)
        sn.save_trained(sn.SyncNet(sn.SyncConfig(0.125, 64, 32)).eval(), root / "sync.pt")
        if a.long_minutes:
            _long_clip(root / "gt" / "long.mp4", a.long_minutes, a.size)
            wall = _evaluate(["--gt", str(root / "gt"), "--pred", str(root / "gt"), "--method", "GT",
                              "--no-landmarks", "--no-extras", "--sync-weights", str(root / "sync.pt"),
                              "--out", str(root / "out")])
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            print(f"long clip: {a.long_minutes:g} min at {a.size} px ({int(a.long_minutes * 1500)} frames): "
                  f"peak RSS of the evaluating process {rss:.0f} MiB, wall {wall:.1f} s")
            return
        _clips(root, a.clips, int(a.seconds * 25), a.size)
        times = [_evaluate(["--gt", str(root / "gt"), "--pred", str(root / "pred"), "--method", "M",
                            "--no-landmarks", "--sync-weights", str(root / "sync.pt"),
                            "--out", str(root / f"out{r}")]) for r in range(a.runs)]
        print(f"{a.clips} clips x {a.seconds:g} s at {a.size} px: median {statistics.median(times):.1f} s "
              f"over {a.runs} runs ({', '.join(f'{t:.1f}' for t in times)}), {torch.get_num_threads()} threads")


if __name__ == "__main__":
    main()
