"""EDTalk-V inference speed: our fast path vs the release's per-frame computation.

Random weights, 256 px ``paper`` profile by default. Every repeat times, back to back,
(a) ours with one video driving mouth, pose and expression, (b) ours with three
distinct source videos, (c) the official-style per-frame computation
(``edtalk.model.reference``: identity re-encoded per frame, four encoder passes, full
EEM), so machine load hits all three alike; medians are reported. Our timings include
encoding the identity once per video.

    python benchmarks/bench_inference.py --frames 8 --batch-size 8 --repeats 5
"""

from __future__ import annotations

import statistics
import time

import torch

from edtalk.model import drive, prepare_identity
from edtalk.model import reference
from speed_setup import random_model, speed_parser


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = speed_parser(__doc__, repeats=5)
    ap.add_argument("--frames", type=int, default=8, help="frames per video for our path")
    ap.add_argument("--official-frames", type=int, default=1, help="frames per repeat for the official-style path")
    ap.add_argument("--no-channels-last", action="store_true")
    args = ap.parse_args(argv)
    model = random_model(args)
    s, t = model.cfg.size, args.frames
    g = torch.Generator().manual_seed(0)
    src = torch.rand(1, 3, s, s, generator=g) * 2 - 1
    a, b, c = (torch.rand(t, 3, s, s, generator=g) * 2 - 1 for _ in range(3))
    cl = not args.no_channels_last

    def ours(m, p, e):
        ident = prepare_identity(model, src, cl)
        drive(model, ident, m, p, e, batch_size=args.batch_size, channels_last=cl)

    def official():
        with torch.no_grad():
            for i in range(args.official_frames):
                reference.edtalk_v_frame(model, src, a[i:i + 1], a[i:i + 1], a[i:i + 1])

    ours(a, a, a), official()                                     # warm-up
    runs: dict[str, list[float]] = {"one_video": [], "three_videos": [], "official_style": []}
    for r in range(args.repeats):
        runs["one_video"].append(t / _time(lambda: ours(a, a, a)))
        runs["three_videos"].append(t / _time(lambda: ours(a, b, c)))
        runs["official_style"].append(args.official_frames / _time(official))
        print(f"repeat {r + 1}/{args.repeats}: " + ", ".join(f"{k} {v[-1]:.3f} fps" for k, v in runs.items()),
              flush=True)
    med = {k: statistics.median(v) for k, v in runs.items()}
    result = {
        "profile": args.profile, "size": s, "threads": torch.get_num_threads(), "frames": t,
        "batch_size": args.batch_size, "channels_last": cl, "repeats": args.repeats,
        "median_fps": med,
        "speedup_one_video": med["one_video"] / med["official_style"],
        "speedup_three_videos": med["three_videos"] / med["official_style"],
        "official_style_s_per_frame": 1.0 / med["official_style"],
        "runs_fps": runs,
    }
    print(f"\n{args.profile} {s}px, {result['threads']} threads, batch {args.batch_size}, "
          f"channels_last={cl}, median of {args.repeats}:")
    print(f"  official-style per frame : {med['official_style']:.3f} frames/s ({1 / med['official_style']:.2f} s/frame)")
    print(f"  ours, one driving video  : {med['one_video']:.3f} frames/s  = {result['speedup_one_video']:.2f}x  (target >= 2.5x)")
    print(f"  ours, three source videos: {med['three_videos']:.3f} frames/s  = {result['speedup_three_videos']:.2f}x  (target >= 1.3x)")
    if args.json:
        from edtalk.data.atomic import write_json
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
