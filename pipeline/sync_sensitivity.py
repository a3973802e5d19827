"""DVC stage `sync_sensitivity`: how far small image defects put LSE-C below ground truth.

With the SyncNet the ``evaluate`` stage scores with (released weights when present, else
the one ``train_syncnet`` trained), every ``evaluate.split`` clip is scored untouched,
blurred by 1 px and with half its motion, next to the generated videos of the
``generate`` stage (``edtalk.evaluation.sync_sensitivity``). Writes
``reports/sync_sensitivity.md``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import flow

from edtalk.data import atomic
from edtalk.evaluation import sync_sensitivity as sens
from edtalk.experts import syncnet
from edtalk.params import section
from metrics.backends import choose
from pipeline.artifacts import publish_summary
from pipeline.common import main_with_params


@flow(name="sync_sensitivity")
def sync_sensitivity(params: dict[str, Any], features_dir: str = "data/features", crop_dir: str = "data/crop",
                     models_dir: str = "models/evaluators", generate_dir: str = "data/generate",
                     out: str = "reports/sync_sensitivity.md") -> pd.DataFrame:
    ev = section(params, "evaluate")
    torch.set_num_threads(int(ev["threads"]))
    # only the SyncNet is used here; "rgb-pool8" keeps choose from loading the emotion net for FD
    weights = choose(models_dir, fid="rgb-pool8", cache_dir=ev.get("weights_cache")).sync_weights
    if weights is None:
        raise FileNotFoundError(f"no SyncNet weights in {models_dir}: run `dvc repro train_syncnet`")
    net = syncnet.load(weights).eval()
    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet")
    clip_ids = sorted(manifest.loc[manifest["split"] == ev["split"], "clip_id"])
    t0 = time.perf_counter()
    scores = sens.score_clips(clip_ids, Path(crop_dir) / "clips", generate_dir, net)
    table = sens.summary(scores)
    text = sens.render_markdown(table, net.backend, len(clip_ids), ev["split"], time.perf_counter() - t0)
    atomic.write_text(Path(out), text)
    print(text)
    publish_summary("sync_sensitivity", text)
    return table


def main() -> None:
    main_with_params(sync_sensitivity, __doc__)


if __name__ == "__main__":
    main()
