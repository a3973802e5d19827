"""EDTalk-A inference speed: 16 kHz speech -> W^m, W^p, W^e per frame -> 256 px frames.

Random weights in the chosen profile (``paper`` by default: 256 px generator and the
paper-sized audio modules), unless ``--audio-models`` names trained ones. Every repeat
times, back to back: (a) the audio models (features, E_a + MLP^m_A, E_a + phi_p sampling,
E_S/MLP^e_A), (b) rendering those weights with the identity encoded once, at batch 1 and
at ``--batch-size``. Frames/s are medians over the repeats; the end-to-end figure is
frames / (audio models + batched rendering).

    python benchmarks/bench_audio_inference.py --seconds 2 --batch-size 8 --repeats 3
"""

from __future__ import annotations

import json
import statistics
import time

import numpy as np
import torch

from edtalk.audio2motion.audio_pose import AudioPose
from edtalk.audio2motion.config import a2m_config
from edtalk.audio2motion.driver import AudioDriver
from edtalk.audio2motion.mouth import AudioToMouth
from edtalk.audio2motion.semantic_expression import SemanticExpression
from edtalk.data.schema import EMOTIONS, SAMPLE_RATE
from edtalk.generate import render_weights
from edtalk.model import prepare_identity
from speed_setup import random_model, speed_parser


def random_driver(name: str) -> AudioDriver:
    """The three predictors of an Audio-to-Motion profile with random weights."""
    cfg = a2m_config(name)
    return AudioDriver(AudioToMouth(cfg.mouth), AudioPose(cfg.mouth.encoder, cfg.pose),
                       SemanticExpression(cfg.expression), torch.zeros(len(EMOTIONS), cfg.expression.n_weights))


def main(argv: list[str] | None = None) -> dict:
    ap = speed_parser(__doc__, repeats=3)    # --profile: EDTalk's and Audio-to-Motion's
    ap.add_argument("--audio-models", default=None, help="trained models/audio2motion (else random)")
    ap.add_argument("--seconds", type=float, default=2.0, help="speech length (25 fps frames)")
    args = ap.parse_args(argv)
    model = random_model(args)
    driver = AudioDriver.load(args.audio_models) if args.audio_models else random_driver(args.profile)
    n = int(round(args.seconds * 25))
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(n * SAMPLE_RATE // 25)).astype(np.float32)
    size = model.cfg.size
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1

    times: dict[str, list[float]] = {"audio_models": [], "render_b1": [], "render_batched": []}
    with torch.inference_mode():
        ident = prepare_identity(model, image)
        weights = driver.predict(audio, n)                      # warm-up
        render_weights(model, ident, {k: v[:2] for k, v in weights.items()}, 2)
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            weights = driver.predict(audio, n, pose_seed=0)
            t1 = time.perf_counter()
            render_weights(model, prepare_identity(model, image), weights, 1)
            t2 = time.perf_counter()
            render_weights(model, prepare_identity(model, image), weights, args.batch_size)
            t3 = time.perf_counter()
            times["audio_models"].append(t1 - t0)
            times["render_b1"].append(t2 - t1)
            times["render_batched"].append(t3 - t2)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "profile": args.profile, "size": size, "frames": n, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "repeats": args.repeats,
        "weights": "trained" if args.audio_models else "random",
        "audio_models_fps": n / med["audio_models"],
        "render_fps_batch1": n / med["render_b1"],
        "render_fps_batched": n / med["render_batched"],
        "end_to_end_fps_batched": n / (med["audio_models"] + med["render_batched"]),
        "median_seconds": med,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
