"""DVC stage `sync_sensitivity`: how far small image defects put LSE-C (and Acc_emo) below
ground truth.

With the SyncNet and the emotion evaluator the ``evaluate`` stage scores with (released
weights when present, else the ones trained here), every ``evaluate.split`` clip is scored
untouched, blurred by 1 px, re-encoded and with half its motion, next to the generated
videos of the ``generate`` stage (``edtalk.evaluation.sync_sensitivity``). Acc_emo is read
as Table 1 reads it (``evaluate.emotion_max_frames``) when every clip has one of the eight
labels. Writes ``reports/sync_sensitivity.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import flow

from edtalk.data import atomic
from edtalk.data.schema import EMOTIONS
from edtalk.evaluation import sync_sensitivity as sens
from edtalk.experts import emotion_net, syncnet
from edtalk.params import section
from metrics.backends import choose
from pipeline.artifacts import publish_summary
from pipeline.common import announce, main_with_params


@flow(name="sync_sensitivity")
def sync_sensitivity(params: dict[str, Any], features_dir: str = "data/features", crop_dir: str = "data/crop",
                     models_dir: str = "models/evaluators", generate_dir: str = "data/generate",
                     out: str = "reports/sync_sensitivity.md") -> pd.DataFrame:
    ev = section(params, "evaluate")
    torch.set_num_threads(int(ev["threads"]))
    # "rgb-pool8": no FD here, so choose need not load a network for it
    choice = choose(models_dir, fid="rgb-pool8", cache_dir=ev.get("weights_cache"))
    if choice.sync_weights is None:
        raise FileNotFoundError(f"no SyncNet weights in {models_dir}: run `dvc repro train_syncnet`")
    net = syncnet.load(choice.sync_weights).eval()
    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet")
    split = manifest.loc[manifest["split"] == ev["split"]].sort_values("clip_id")
    clip_ids = list(split["clip_id"])
    labels = dict(zip(split["clip_id"], split["emotion"]))
    classify, emotion_backend = None, None
    unlabelled = sorted(set(labels.values()) - set(EMOTIONS))
    if choice.emotion_weights is None or unlabelled:
        announce("sync_sensitivity: Acc_emo not read (" + (f"labels {unlabelled} are not emotions)" if unlabelled
                                                           else f"no emotion evaluator in {models_dir})"))
    else:
        emo_net, emotion_backend = emotion_net.load(choice.emotion_weights)
        max_frames = ev["emotion_max_frames"]
        classify = lambda frames: EMOTIONS[emotion_net.predict_video(frames, emo_net, max_frames)]  # noqa: E731
    t0 = time.perf_counter()
    scores = sens.score_clips(clip_ids, Path(crop_dir) / "clips", generate_dir, net, classify, labels)
    table = sens.summary(scores)
    text = sens.render_markdown(table, net.backend, len(clip_ids), ev["split"], time.perf_counter() - t0,
                                emotion_backend)
    atomic.write_text(Path(out), text)
    print(text)
    publish_summary("sync_sensitivity", text)
    return table


def main() -> None:
    main_with_params(sync_sensitivity, __doc__)


if __name__ == "__main__":
    main()
