"""Throughput of the data stages, each beside its floor (decode + re-encode the same frames).

Run: ``python benchmarks/bench_data.py [--clips 8] [--repeats 3] [--repro]``. Prints
medians over repeats. ``--repro`` also times the default ``dvc repro features`` chain in
a temporary copy of the project (wall time and peak resident memory of the children).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edtalk.data import media
from edtalk.data.crop import crop_clip
from edtalk.data.detect import DlibDetector, groundtruth_array, make_detector
from edtalk.data.features import clip_features, groundtruth_crop_landmarks
from edtalk.data.synthetic import SyntheticSource
from edtalk.data.synthetic.corpus import render_spec

ROOT = Path(__file__).resolve().parent.parent


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _floor(videos: list[Path], out: Path) -> int:
    """Decode every frame and re-encode it unchanged: the cost no stage can beat."""
    n = 0
    for video in videos:
        frames, fps = media.read_frames(video)
        media.write_video(out / video.name, frames, fps)
        n += len(frames)
    return n


def bench(clips: int, repeats: int, render_size: int, crop_size: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    source = SyntheticSource(seed=0, identities=max(clips, 1), clips_per_identity=1,
                             render_size=render_size)
    specs = source.list_clips()[:clips]
    raw = work / "raw"
    generate = _median_time(lambda: [source.materialise(s, raw) for s in specs], repeats)
    videos = [raw / f"{s.clip_id}.mp4" for s in specs]
    n_frames = sum(media.probe(v).frames for v in videos)
    floor_raw = _median_time(lambda: _floor(videos, work / "floor_raw"), repeats)

    import pyarrow.parquet as pq

    def crop_and_features() -> None:
        for spec, video in zip(specs, videos):
            gt = pq.read_table(raw / f"{spec.clip_id}.gt.parquet").to_pandas()
            lms = groundtruth_array(gt)
            out = work / "crop" / f"{spec.clip_id}.mp4"
            result = crop_clip(video, raw / f"{spec.clip_id}.wav", out, out.with_suffix(".wav"),
                               crop_size, make_detector("groundtruth", groundtruth=lms))
            clip_features(spec.clip_id, out, out.with_suffix(".wav"),
                          {"split": "train", "identity": spec.identity, "emotion": spec.emotion,
                           "intensity": spec.intensity},
                          crop_landmarks=groundtruth_crop_landmarks(gt, result.boxes, crop_size))

    crop_feat = _median_time(crop_and_features, repeats)
    print(f"frames: {n_frames} in {len(specs)} clips, render {render_size} px, crop {crop_size} px")
    print(f"corpus generation      : {n_frames / generate:8.1f} frames/s  "
          f"(floor decode+encode {n_frames / floor_raw:8.1f} frames/s, ratio {generate / floor_raw:.2f}x)")
    print(f"crop + features        : {n_frames / crop_feat:8.1f} frames/s  "
          f"(ratio to floor {crop_feat / floor_raw:.2f}x)")
    shutil.rmtree(work, ignore_errors=True)


def dlib_share(render_size: int = 256, clips: int = 4, every: int = 5) -> None:
    """Share of synthetic frames in which dlib's real HOG detector finds exactly one face."""
    source = SyntheticSource(seed=0, identities=clips, clips_per_identity=1, render_size=render_size)
    detector = DlibDetector()
    found = total = 0
    for spec in source.list_clips():
        frames = render_spec(spec).frames[::every]
        for frame in frames:
            found += len(detector.detect(frame)) == 1
            total += 1
    print(f"dlib finds the face in : {found}/{total} = {found / total:.0%} of synthetic frames at {render_size} px")


def repro() -> None:
    """Wall time and peak memory of the default `dvc repro features` in a fresh copy."""
    work = Path(tempfile.mkdtemp(prefix="bench-repro-"))
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, work / name)
    for package in ("edtalk", "pipeline"):
        shutil.copytree(ROOT / package, work / package, ignore=shutil.ignore_patterns("__pycache__"))
    for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(cmd, cwd=work, check=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dvc", "repro", "features"], cwd=work, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"dvc repro (ingest, crop, features): {wall:.1f} s wall, peak child RSS {peak:.0f} MiB")
    shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--render-size", type=int, default=96)
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--repro", action="store_true")
    args = parser.parse_args()
    bench(args.clips, args.repeats, args.render_size, args.crop_size)
    dlib_share()
    if args.repro:
        repro()


if __name__ == "__main__":
    main()
