"""DVC stage `evaluate_audio2motion`: held-out checks of the audio predictors -> reports/audio2motion.json.

Pose: flow log-likelihood of held-out W^p (per frame, and as whole sequences under the
latent process) vs a Gaussian fit, variance across seeds,
jitter vs ground truth. Expression: nearest per-emotion-mean agreement with the clip
label for audio+text, audio only, text only (chance 1/8). Mouth: L^m_fea vs the mean.
The expression modes are also rendered through the generator and read by the emotion
evaluator (``evaluate_expression_rendered``). Sync: EDTalk-A videos driven by the clip's speech delayed by k frames, scored by the
SyncNet (released weights when present, else the one trained here) against the original
speech: the offset at k = 0 and whether it moves by k (``sync_check``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from prefect import flow, get_run_logger

from edtalk import generate as gen
from edtalk.audio2motion.data import load_clips
from edtalk.audio2motion.driver import AudioDriver
from edtalk.data import atomic
from edtalk.data.pixel_cache import PixelCache
from edtalk.evaluation import audio2motion as evaluation
from edtalk.evaluation.baselines import identity_source
from edtalk.evaluation.sync_check import SyncItem, audio_shift_offsets
from edtalk.experts import emotion_net, syncnet
from edtalk.params import section
from metrics.backends import choose
from pipeline.a2m_common import clip_waves
from pipeline.artifacts import publish_summary
from pipeline.common import main_with_params

STAGE = "evaluate_audio2motion"


@flow(name=STAGE)
def evaluate_audio2motion(params: dict[str, Any], features_dir: str = "data/features",
                          crop_dir: str = "data/crop", weights: str = "data/weights/weights.parquet",
                          models_dir: str = "models/audio2motion",
                          report: str = "reports/audio2motion.json",
                          evaluators_dir: str = "models/evaluators") -> dict[str, Any]:
    a2m_params = section(params, "audio2motion")
    torch.set_num_threads(int(a2m_params["threads"]))
    ev = a2m_params["evaluate"]
    driver = AudioDriver.load(models_dir)
    train = load_clips(features_dir, weights, ("train",))
    test = load_clips(features_dir, weights, (ev["split"],), crop_dir)
    with np.load(Path(models_dir) / "text_embeddings.npz", allow_pickle=False) as z:
        table = dict(zip(z["texts"].tolist(), z["emb"]))
    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet", columns=["clip_id", "transcript"])
    text_of = dict(zip(manifest["clip_id"], manifest["transcript"].fillna("")))
    text = torch.from_numpy(np.stack([table[text_of[c.clip_id]] for c in test]).astype(np.float32))
    waves = clip_waves(test)
    summary = {"split": ev["split"],
               "pose": evaluation.evaluate_pose(driver, train, test, int(ev["seeds"]),
                                                float(ev["temperature"])),
               "expression": evaluation.evaluate_expression(driver, test, waves, text, train),
               "mouth": evaluation.evaluate_mouth(driver, train, test)}
    chosen = choose(evaluators_dir, cache_dir=section(params, "evaluate").get("weights_cache"))
    model = gen.load_model(a2m_params["edtalk_checkpoint"])
    # the generate stage's identity frame (another clip of the same identity; splits are by identity)
    clips_manifest = pd.DataFrame({"clip_id": [c.clip_id for c in test],
                                   "identity": [c.identity or c.clip_id for c in test]})
    pixels = PixelCache(Path(features_dir) / "pixels.npy")      # decoded crops, no mp4 decode
    first_row = {c.clip_id: int(c.pixel_index[0]) for c in test}
    identities = [pixels[first_row[identity_source(clips_manifest, c.clip_id)]] for c in test]
    if chosen.emotion_weights is not None:
        net, label = emotion_net.load(chosen.emotion_weights)
        summary["expression_rendered"] = {"backend": label, **evaluation.evaluate_expression_rendered(
            model, driver, test, waves, text, identities, lambda frames: emotion_net.predict_video(frames, net))}
    if chosen.sync_weights is not None and int(ev.get("sync_clips", 0)) > 0:
        gen_params = section(params, "generate")
        net = syncnet.load(chosen.sync_weights)
        items = [SyncItem(c.clip_id, ident, w, text_of.get(c.clip_id) or None)
                 for c, w, ident in list(zip(test, waves, identities))[: int(ev["sync_clips"])]]
        summary["sync"] = {"backend": net.backend,
                           **audio_shift_offsets(model, driver, items, net, tuple(ev["sync_shifts"]),
                                                 int(gen_params["pose_seed"]), float(gen_params["temperature"]),
                                                 tolerance=int(ev["sync_tolerance"]))}
    atomic.write_json(Path(report), summary)
    publish_summary(STAGE, summary)
    get_run_logger().info("%s: %s", STAGE, summary)
    p, e = summary["pose"], summary["expression"]
    print(f"{STAGE}: pose LL {p['loglik_flow']:.3f} vs Gaussian {p['loglik_gaussian']:.3f} nats/frame per frame, "
          f"{p['loglik_sequence']:.3f} as sequences (Gaussian with its own latent process "
          f"{p['loglik_sequence_gaussian']:.3f}), "
          f"seed variance {p['seed_variance']:.4g} (GT {p['gt_variance']:.4g}), jitter ratio "
          f"{p['jitter_ratio']:.3f}; expression agreement audio+text {e['accuracy_audio+text']:.3f}, "
          f"audio {e['accuracy_audio']:.3f}, text {e['accuracy_text']:.3f} (chance {e['chance']:.3f})")
    if "expression_rendered" in summary:
        r = summary["expression_rendered"]
        print(f"{STAGE}: rendered expression read by {r['backend']}: audio+text {r['accuracy_audio+text']:.3f}, "
              f"audio {r['accuracy_audio']:.3f}, text {r['accuracy_text']:.3f}, ground-truth W^e "
              f"{r['accuracy_gt_weights']:.3f}, identity's own W^e {r['accuracy_identity_own']:.3f}")
    if "sync" in summary:
        y = summary["sync"]
        print(f"{STAGE}: EDTalk-A sync offset within +-{y['tolerance_frames']} frame on "
              f"{y['aligned_within_tolerance']:.2f} of clips; delayed speech moves the offset by k on "
              f"{y['shift_followed']:.2f} of trials ({y['backend']})")
    return summary


def main() -> None:
    main_with_params(evaluate_audio2motion, __doc__)


if __name__ == "__main__":
    main()
