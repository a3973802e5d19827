"""Pretrain one EDTalk training stage for longer than the pipeline's budget.

The paper starts from pretrained networks (LIA's autoencoder) and trains each stage to
convergence; on 2 CPU cores `dvc repro` affords a few minutes per stage. This script runs
the very same stage (``edtalk.train.run_stage`` with ``params.yaml``'s `train.<stage>`
recipe, only more steps; resumable from its work folder) on the train split, starting from
``--start`` (the previous stage's file), and writes a checkpoint that records its training
corpus (``edtalk.train.corpus_record``) for `train.<stage>.pretrained`. The stage refuses
such a file for another corpus and fine-tunes it for `finetune_steps` (0: takes it as it
is). Deterministic on CPU with one thread: the command reproduces the file.

    python scripts/pretrain_stage.py autoencoder --steps 12000 --weight face=0 --out data/cache/autoencoder-12000.pt
    python scripts/pretrain_stage.py autoencoder --steps 4000 --start data/cache/autoencoder-12000.pt \\
        --weight face=20 --work data/cache/pretrain_autoencoder_face --out data/cache/autoencoder-face20.pt
    python scripts/pretrain_stage.py autoencoder --steps 4000 --start data/cache/autoencoder-face20.pt \\
        --work data/cache/pretrain_autoencoder_face50 --out pretrained/edtalk-tiny-autoencoder.pt
    python scripts/pretrain_stage.py mouth_pose --steps 5000 --then-finetune 1000 \\
        --start pretrained/edtalk-tiny-autoencoder.pt --out pretrained/edtalk-tiny-mouth-pose.pt
    python scripts/pretrain_stage.py expression --steps 3000 \\
        --start data/cache/pretrain_mouth_pose/train_mouth_pose/model.pt \\
        --emotion pretrained/edtalk-tiny-emotion.pt --out pretrained/edtalk-tiny-expression.pt

(``--then-finetune N``: then the stage's fine-tune path on that result, as `dvc repro` runs it
with ``finetune_steps: N``, so the file can hold what the run would train and the run take it
with ``finetune_steps: 0``. The expression file starts from the mouth-pose stage's 5000-step
model, which the mouth-pose command leaves in its work folder.)

(The 12 000-step start is the autoencoder file shipped before 2026-12-05, made by the first
command under this script's earlier name, ``scripts/pretrain_autoencoder.py``, before the
face-box L1 existed: ``--weight face=0`` is that recipe.) For the autoencoder, ``--start``
continues an autoencoder file (the stage's fine-tune path, a fresh optimiser) instead of
training from scratch; the second command does so at face-box weight 20, the third at
`params.yaml`'s (50).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from edtalk.model import load_checkpoint, save_checkpoint
from edtalk.params import load_params
from edtalk.train import run_stage, stage_config
from edtalk.train.config import STAGES
from edtalk.train.corpus_record import train_corpus_record
from edtalk.train.run import DIRS, PREVIOUS


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", choices=STAGES)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--start", default=None, help="the previous stage's model (mouth_pose, expression); "
                    "autoencoder: an autoencoder file to continue")
    ap.add_argument("--emotion", default=None,
                    help="expression: the emotion evaluator used as psi of L_mot (Eq. 9)")
    ap.add_argument("--work", default=None, help="models folder of the run (checkpoints: resumable); "
                    "default data/cache/pretrain_<stage>")
    ap.add_argument("--then-finetune", type=int, default=0, metavar="N",
                    help="mouth_pose, expression: then fine-tune that result N steps exactly as `dvc repro` "
                    "does with finetune_steps N (same start, batches and optimiser restart)")
    ap.add_argument("--weight", action="append", default=[], metavar="NAME=VALUE",
                    help="override one loss weight of train.<stage>.weights (e.g. face=0)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.then_finetune and args.stage not in PREVIOUS:
        ap.error("--then-finetune is for mouth_pose and expression (the autoencoder: --start continues)")
    params = load_params(args.params)
    work = Path(args.work or f"data/cache/pretrain_{args.stage}")
    overrides = {"steps": args.steps, "pretrained": None, "finetune_steps": 0,
                 "checkpoint_every": 500, "keep_checkpoints": 2, "threads": 1}
    if args.weight:
        overrides["weights"] = parse_weights(ap, args.weight)
    if args.stage == "expression":
        if not args.emotion:
            ap.error("expression needs --emotion (psi of L_mot)")
        overrides["emotion_checkpoint"] = args.emotion
    if args.stage == "autoencoder" and args.start:   # continue it: the stage's fine-tune path
        overrides.update(pretrained=args.start, finetune_steps=args.steps)
    if args.stage in PREVIOUS:
        if not args.start:
            ap.error(f"{args.stage} needs --start (the {PREVIOUS[args.stage]} stage's model)")
        start = work / DIRS[PREVIOUS[args.stage]] / "model.pt"
        start.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.start, start)
    cfg = stage_config(params, args.stage, **overrides)
    t0 = time.perf_counter()
    summary = run_stage(cfg, args.features, work, None)
    if summary["step"] < args.steps:
        raise SystemExit(f"stopped at step {summary['step']} of {args.steps}; run again to resume")
    result = work / DIRS[args.stage] / "model.pt"
    if args.then_finetune:
        result, summary = fine_tune(params, args.stage, overrides, result, args.then_finetune, start,
                                    args.features, work / "then_finetune")
    model, extra = load_checkpoint(result)
    start_flag = f" --start {args.start}" if args.start else ""
    then_flag = f" --then-finetune {args.then_finetune}" if args.then_finetune else ""
    weight_flags = "".join(f" --weight {w}" for w in args.weight)
    recipe = (f"scripts/pretrain_stage.py {args.stage} --steps {args.steps}{start_flag}{then_flag}{weight_flags} "
              f"(params train.{args.stage})")
    save_checkpoint(Path(args.out), model, stage=args.stage, step=args.steps + args.then_finetune,
                    train_identities=extra["train_identities"], seed=cfg.seed, recipe=recipe,
                    mot_networks=extra.get("mot_networks", []),
                    corpus=train_corpus_record(args.features),
                    val_l1=summary.get("val/l1", float("nan")),
                    val_l1_still_identity=summary.get("val/l1_still_identity", float("nan")))
    steps = f"{args.steps} + {args.then_finetune}" if args.then_finetune else str(args.steps)
    print(f"{args.out}: {args.stage} {steps} steps, val L1 {summary.get('val/l1', float('nan')):.4f} "
          f"(still identity {summary.get('val/l1_still_identity', float('nan')):.4f}), "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return Path(args.out)


def parse_weights(ap: argparse.ArgumentParser, items: list[str]) -> dict[str, float]:
    """``["face=0", ...]`` -> {"face": 0.0}; a malformed item is a usage error."""
    out: dict[str, float] = {}
    for item in items:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            ap.error(f"--weight expects NAME=NUMBER, got {item!r}")
    return out


def fine_tune(params: dict, stage: str, overrides: dict, pretrained: Path, steps: int, start: Path,
              features: str, work: Path) -> tuple[Path, dict]:
    """The stage's fine-tune path (as `dvc repro` runs it with ``finetune_steps: steps``) on
    ``pretrained``, over the previous stage's model ``start``; its own resumable work folder."""
    previous = work / DIRS[PREVIOUS[stage]] / "model.pt"
    previous.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(start, previous)
    cfg = stage_config(params, stage, **{**overrides, "pretrained": str(pretrained), "finetune_steps": steps})
    summary = run_stage(cfg, features, work, None)
    if summary["step"] < steps:
        raise SystemExit(f"fine-tune stopped at step {summary['step']} of {steps}; run again to resume")
    return work / DIRS[stage] / "model.pt", summary


if __name__ == "__main__":
    main()
