"""Pretrain the autoencoder (E, G, navigation) for longer than the pipeline's budget.

The paper starts from a pretrained autoencoder (LIA's). On 2 CPU cores the default
`train@autoencoder` stage can afford ~1000 steps, after which the tiny generator follows
head yaw but not yet the mouth; a longer run does. This script runs the very same stage
(``edtalk.train.run_stage`` with ``params.yaml``'s `train.autoencoder` recipe, only more
steps; resumable from its work folder) on the train split and writes a checkpoint that
records its training identities, for ``train.autoencoder.pretrained``. The stage refuses
such a file when any of those identities is held out (val/test) in the current corpus.

    python scripts/pretrain_autoencoder.py --steps 12000 \
        --out pretrained/edtalk-tiny-autoencoder.pt
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edtalk.model import load_checkpoint, save_checkpoint
from edtalk.params import load_params
from edtalk.train import run_stage, stage_config


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--work", default="data/cache/pretrain_autoencoder",
                    help="models folder of the run (checkpoints: resumable)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    cfg = stage_config(params, "autoencoder", steps=args.steps, pretrained=None,
                       checkpoint_every=1000, keep_checkpoints=2)
    t0 = time.perf_counter()
    summary = run_stage(cfg, args.features, args.work, None)
    if summary["step"] < args.steps:
        raise SystemExit(f"stopped at step {summary['step']} of {args.steps}; run again to resume")
    model, extra = load_checkpoint(Path(args.work) / "train_autoencoder" / "model.pt")
    save_checkpoint(Path(args.out), model, stage="autoencoder", step=extra["step"],
                    train_identities=extra["train_identities"], seed=cfg.seed,
                    recipe=f"scripts/pretrain_autoencoder.py --steps {args.steps} (params train.autoencoder)",
                    val_l1=summary.get("val/l1", float("nan")),
                    val_l1_still_identity=summary.get("val/l1_still_identity", float("nan")))
    print(f"{args.out}: {args.steps} steps, val L1 {summary.get('val/l1', float('nan')):.4f} "
          f"(still identity {summary.get('val/l1_still_identity', float('nan')):.4f}), "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return Path(args.out)


if __name__ == "__main__":
    main()
