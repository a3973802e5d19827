"""DVC stage `train_audio2mouth`: E_a + MLP^m_A (paper §3.3, Eqs. 11-12), generator frozen.

Writes ``models/audio2motion/mouth.pt``, resume checkpoints under
``models/audio2motion/checkpoints/mouth`` and DVCLive curves under
``dvclive/train_audio2mouth``. L^m_sync uses ``audio2motion.syncnet`` when that file exists
(released syncnet_v2 or the expert trained by ``train_syncnet``), else it is skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import flow, get_run_logger

from edtalk.audio2motion import a2m_config
from edtalk.audio2motion.data import load_clips
from edtalk.audio2motion.model_files import save_mouth
from edtalk.audio2motion.params import mouth_train_config
from edtalk.audio2motion.train_mouth import RenderContext, train_mouth
from edtalk.data.pixel_cache import PixelCache
from edtalk.data.resume import file_key, fingerprint
from edtalk.experts.syncnet import load as load_syncnet
from edtalk.model import load_checkpoint
from edtalk.params import profile_name, section
from edtalk.train.resumable import run_config
from pipeline.a2m_common import summarize
from pipeline.artifacts import dvclive_history, publish_loss_curve
from pipeline.common import main_with_params

STAGE = "train_audio2mouth"


@flow(name=STAGE)
def train_audio2mouth(params: dict[str, Any], features_dir: str = "data/features",
                      weights: str = "data/weights/weights.parquet", out_dir: str = "models/audio2motion",
                      live_dir: str = f"dvclive/{STAGE}", model_path: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    profile = profile_name(params)
    a2m_params = section(params, "audio2motion")
    torch.set_num_threads(int(a2m_params["threads"]))
    cfg = mouth_train_config(a2m_params, int(params["base"]["seed"]))
    clips = load_clips(features_dir, weights, ("train",))
    model, _ = load_checkpoint(model_path or a2m_params["edtalk_checkpoint"])
    syncnet = None
    if cfg.sync_weight > 0 and Path(a2m_params["syncnet"]).is_file():
        syncnet = load_syncnet(a2m_params["syncnet"])
    elif cfg.sync_weight > 0:
        logger.warning("%s: no SyncNet at %s; L^m_sync is skipped", STAGE, a2m_params["syncnet"])
    render = RenderContext(model, PixelCache(Path(features_dir) / "pixels.npy"), syncnet)
    key = fingerprint(run_config(cfg), profile, file_key(weights), file_key(a2m_params["edtalk_checkpoint"]),
                      syncnet is not None)
    net, result = train_mouth(clips, cfg, a2m_config(profile).mouth, out_dir, render, live_dir,
                              fingerprint=key)
    save_mouth(Path(out_dir) / "mouth.pt", net, cfg.feature,
               syncnet=getattr(syncnet, "backend", None))
    summary = summarize(STAGE, result, clips=len(clips), sync=syncnet is not None)
    publish_loss_curve(STAGE, dvclive_history(live_dir), f"step {result.step}")
    return summary


def main() -> None:
    main_with_params(train_audio2mouth, __doc__)


if __name__ == "__main__":
    main()
