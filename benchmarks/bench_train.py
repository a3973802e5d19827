"""Training throughput per stage (samples/s) and peak memory, at a profile's own size.

Runs the three stages in order (autoencoder -> mouth_pose -> expression) for a few steps
each through ``edtalk.train.run_stage``, in a scratch folder, on the pipeline's features
(``data/features``; frames are resized to the profile's size when it differs, landmarks
scaled alike). Samples/s is the stage's own figure (its training loop only: no model
construction, no checkpoint writing of the final model). The ``paper`` profile on CPU
is slow: one or two steps at batch 1 are enough for a figure.

    python benchmarks/bench_train.py --profile tiny --steps 20
    python benchmarks/bench_train.py --profile paper --steps 2 --batch 1
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from edtalk.model import profile as model_profile
from edtalk.params import load_params, section
from edtalk.train import run_stage, stage_config

STAGES = ("autoencoder", "mouth_pose", "expression")


def resized_features(src: Path, dst: Path, size: int, clips_per_split: int = 6) -> Path:
    """A features folder with the first clips of each split at ``size`` px."""
    frames = pd.read_parquet(src / "frames.parquet")
    keep = frames.groupby("split")["clip_id"].unique().apply(lambda c: list(sorted(c))[:clips_per_split])
    frames = frames[frames["clip_id"].isin([c for cs in keep for c in cs])].reset_index(drop=True)
    pixels = np.load(src / "pixels.npy", mmap_mode="r")[frames["pixel_index"].to_numpy()]
    scale = size / pixels.shape[1]
    if scale != 1:
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        pixels = x.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        frames["landmarks"] = [np.asarray(v) * scale for v in frames["landmarks"]]
    frames["pixel_index"] = np.arange(len(frames))
    dst.mkdir(parents=True, exist_ok=True)
    frames.to_parquet(dst / "frames.parquet")
    np.save(dst / "pixels.npy", pixels)
    return dst


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=0, help="0: the profile's own batch per stage")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    params["base"]["profile"] = args.profile
    size = model_profile(args.profile).size
    out: dict = {"profile": args.profile, "size": size, "steps": args.steps,
                 "threads": section(params, "train").get("threads") or torch.get_num_threads(), "stages": {}}
    with tempfile.TemporaryDirectory() as tmp:
        feats = resized_features(Path(args.features), Path(tmp) / "features", size)
        for stage in STAGES:
            over = {"steps": args.steps, "checkpoint_every": 10 ** 9, "device": args.device, "val_frames": 4}
            if args.batch:
                over["batch"] = args.batch
            if stage == "expression":
                over["aux_steps"] = 5          # the in-stage phi net: not what is timed here
            cfg = stage_config(params, stage, **over)
            t0 = time.perf_counter()
            s = run_stage(cfg, feats, Path(tmp) / "models", None)
            out["stages"][stage] = {"batch": cfg.batch, "samples_per_s": s["samples_per_s"],
                                    "loop_seconds": s["seconds"], "stage_seconds": time.perf_counter() - t0,
                                    "trainable_params": s["trainable_params"]}
            print(f"{args.profile} {stage:12s} batch {cfg.batch:3d}, {out['threads']} thread(s): "
                  f"{s['samples_per_s']:8.3f} samples/s "
                  f"({s['seconds']:.1f} s for {args.steps} steps)", flush=True)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2 ** 20
    print(f"peak RSS {out['peak_rss_mib']:.0f} MiB", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
