"""The one flow behind the three EDTalk training stages (paper §3.2).

Each stage module (``train_autoencoder``, ``train_mouth_pose``, ``train_expression``)
builds its flow here: read ``base.seed``, ``base.profile`` and ``train.*`` from
params.yaml, run ``edtalk.train.run_stage`` (which trains or resumes from the last
checkpoint), and log a summary. Outputs: ``models/train_<stage>/model.pt`` (final),
``models/train_<stage>/checkpoints/`` (persisted, so a killed run resumes),
``dvclive/train_<stage>/`` (per-step losses, metrics.json). For several processes:
``torchrun --nproc_per_node N -m edtalk.train.run --stage <stage>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger

from edtalk.train import run_stage, stage_config
from pipeline.common import announce_summary, load_params


def make_flow(stage: str) -> Callable[..., dict[str, Any]]:
    """The Prefect flow ``train_<stage>``."""

    @flow(name=f"train_{stage}")
    def train(params: dict[str, Any], features_dir: str = "data/features",
              models_dir: str = "models", live_dir: str = "dvclive") -> dict[str, Any]:
        logger = get_run_logger()
        cfg = stage_config(params, stage)
        logger.info("train_%s: %d steps at batch %d (profile %s, seed %d)", stage, cfg.steps,
                    cfg.batch, cfg.profile, cfg.seed)
        summary = run_stage(cfg, features_dir, models_dir, live_dir)
        announce_summary(f"train_{stage}", summary)
        return summary

    return train


def main(train: Callable[..., dict[str, Any]], description: str) -> None:
    """Command line of a training stage module."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--models", default="models")
    parser.add_argument("--live", default="dvclive")
    args = parser.parse_args()
    train(load_params(args.params), args.features, args.models, args.live)
