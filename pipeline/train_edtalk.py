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

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from edtalk.train import run_stage, stage_config
from edtalk.train.run import DIRS
from pipeline.artifacts import dvclive_history, publish_loss_curve
from pipeline.common import announce_summary, main_with_params


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
        note = (f"loaded {summary['loaded']}" if "loaded" in summary else
                f"step {summary.get('step')}, resumed from {summary.get('resumed_from')}")
        publish_loss_curve(f"train_{stage}", dvclive_history(Path(live_dir) / DIRS[stage]), note)
        return summary

    return train


def main(train: Callable[..., dict[str, Any]], description: str) -> None:
    """Command line of a training stage module (``--features-dir``, ``--models-dir``, ``--live-dir``)."""
    main_with_params(train, description)
