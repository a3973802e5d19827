"""DVC stage `train_expression`: expression decoupling (paper §3.2, Eqs. 8-10): only ELN and EEM train.

Reads ``base.seed``, ``base.profile`` and ``train.*`` from params.yaml and runs
``edtalk.train.run_stage``. Outputs: ``models/train_expression/model.pt`` (final),
``models/train_expression/checkpoints/`` (persisted, so a killed run resumes from its last
checkpoint), ``dvclive/train_expression/`` (per-step losses, metrics.json). For several
processes run ``torchrun --nproc_per_node N -m edtalk.train.run --stage expression``.
"""

from __future__ import annotations

import argparse
from typing import Any

from prefect import flow, get_run_logger

from edtalk.train import run_stage, stage_config
from pipeline.common import load_params

STAGE = "expression"


@flow(name="train_expression")
def train_expression(params: dict[str, Any], features_dir: str = "data/features", models_dir: str = "models",
              live_dir: str = "dvclive") -> dict[str, Any]:
    """Train (or resume) the stage and log its summary."""
    logger = get_run_logger()
    cfg = stage_config(params, STAGE)
    logger.info("train_%s: %d steps at batch %d (profile %s, seed %d)", STAGE, cfg.steps, cfg.batch,
                cfg.profile, cfg.seed)
    summary = run_stage(cfg, features_dir, models_dir, live_dir)
    logger.info("train_%s: %s", STAGE, summary)
    print(f"train_{STAGE}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--features", default="data/features")
    parser.add_argument("--models", default="models")
    parser.add_argument("--live", default="dvclive")
    args = parser.parse_args()
    train_expression(load_params(args.params), args.features, args.models, args.live)


if __name__ == "__main__":
    main()
