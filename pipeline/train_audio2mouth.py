"""DVC stage `train_audio2mouth`: E_a + MLP^m_A (paper §3.3, Eqs. 11-12), generator frozen.

Writes ``models/audio2motion/mouth.pt``, resume checkpoints under
``models/audio2motion/checkpoints/mouth`` and DVCLive curves under
``dvclive/train_audio2mouth``. L^m_sync uses ``audio2motion.syncnet`` when that file exists
(released syncnet_v2 or the expert trained by ``train_syncnet``), else it is skipped.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from prefect import flow, get_run_logger

from edtalk.audio2motion import a2m_config, train as a2m
from edtalk.data.pixel_cache import PixelCache
from edtalk.model import load_checkpoint
from pipeline.a2m_common import fingerprint, summarize
from pipeline.common import load_params

STAGE = "train_audio2mouth"


@flow(name=STAGE)
def train_audio2mouth(params: dict[str, Any], features_dir: str = "data/features",
                      weights: str = "data/weights/weights.parquet", out_dir: str = "models/audio2motion",
                      live_dir: str = f"dvclive/{STAGE}", model_path: str | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    profile = params["base"]["profile"]
    section = a2m.section_for_profile(params["audio2motion"], profile)
    torch.set_num_threads(int(section["threads"]))
    cfg = a2m.mouth_train_config(section, int(params["base"]["seed"]))
    clips = a2m.load_clips(features_dir, weights, ("train",))
    model, _ = load_checkpoint(model_path or section["edtalk_checkpoint"])
    syncnet = None
    if cfg.sync_weight > 0 and Path(section["syncnet"]).is_file():
        from metrics import sync
        syncnet = sync.load(section["syncnet"])
    elif cfg.sync_weight > 0:
        logger.warning("%s: no SyncNet at %s; L^m_sync is skipped", STAGE, section["syncnet"])
    render = a2m.RenderContext(model, PixelCache(Path(features_dir) / "pixels.npy"), syncnet)
    key = fingerprint(cfg, profile, weights, section["edtalk_checkpoint"], syncnet is not None)
    net, result = a2m.train_mouth(clips, cfg, a2m_config(profile).mouth, out_dir, render, live_dir,
                                  fingerprint=key)
    a2m.save_mouth(Path(out_dir) / "mouth.pt", net, cfg.feature,
                   syncnet=getattr(syncnet, "backend", None))
    return summarize(STAGE, result, clips=len(clips), sync=syncnet is not None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--model", default=None, help="frozen EDTalk checkpoint (default: params)")
    args = parser.parse_args()
    train_audio2mouth(load_params(args.params), model_path=args.model)


if __name__ == "__main__":
    main()
