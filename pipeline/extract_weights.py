"""DVC stage `extract_weights`: ground-truth W^m, W^p, W^e of every frame (paper §3.3 targets).

Runs the frozen video-driven model (``audio2motion.edtalk_checkpoint``, by default the
``train_expression`` output) as E -> trunk -> MLN / PLN / ELN over the pixel cache in
batches under inference mode, and writes ``data/weights/weights.parquet`` (schema
``edtalk.audio2motion.weights_cache.WEIGHTS``: clip_id, frame, split, w_mouth[20],
w_pose[6], w_exp[10]) atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import flow
from tqdm.auto import tqdm

from edtalk.audio2motion import weights_cache
from edtalk.data.pixel_cache import PixelCache
from edtalk.model import load_checkpoint
from edtalk.params import section
from pipeline.artifacts import publish_summary
from pipeline.common import announce_summary, main_with_params


@flow(name="extract_weights")
def extract_weights(params: dict[str, Any], features_dir: str = "data/features",
                    model_path: str | None = None, out: str = "data/weights/weights.parquet") -> dict[str, Any]:
    a2m_params = section(params, "audio2motion")
    torch.set_num_threads(int(a2m_params["threads"]))
    model_path = model_path or a2m_params["edtalk_checkpoint"]
    model, _ = load_checkpoint(model_path)
    root = Path(features_dir)
    frames = pd.read_parquet(root / "frames.parquet", columns=["clip_id", "frame", "split", "pixel_index"])
    t0 = time.perf_counter()
    table = weights_cache.extract(model, frames, PixelCache(root / "pixels.npy"),
                                  int(a2m_params["extract_batch"]),
                                  progress=lambda r: tqdm(r, desc="extract_weights", unit="batch"))
    weights_cache.write(table, out)
    summary = {"frames": len(table), "clips": int(table["clip_id"].nunique()),
               "seconds": round(time.perf_counter() - t0, 2), "model": str(model_path)}
    announce_summary("extract_weights", summary)
    publish_summary("extract_weights", summary)
    return summary


def main() -> None:
    main_with_params(extract_weights, __doc__)


if __name__ == "__main__":
    main()
