"""Pretrain an evaluator (SyncNet or the emotion classifier) for longer than the pipeline's budget.

The paper scores with networks trained elsewhere, long before (syncnet_v2, Emotion-FAN).
Ours are trained on the default corpus' train identities; inside `dvc repro` on 2 CPU
cores they get a few minutes. This script runs the stage's own trainer
(``edtalk.train.experts``, params.yaml's `evaluators.<name>` recipe, only more steps;
resumable from its work folder) on the train split and writes a file that records the
corpus it saw (``edtalk.train.corpus_record``) for `evaluators.<name>.pretrained`. The
stage refuses the file for another corpus, fine-tunes it briefly, and reports its held-out
figures. Deterministic on CPU with one thread: the command reproduces the file.

    python scripts/pretrain_evaluators.py syncnet --steps 4000 --out pretrained/edtalk-tiny-syncnet.pt
    python scripts/pretrain_evaluators.py emotion --steps 800 --landmark-steps 6000 \\
        --out pretrained/edtalk-tiny-emotion.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch

from edtalk.experts import emotion_net as emo
from edtalk.experts import syncnet as sync
from edtalk.params import load_params, section
from edtalk.train.corpus_record import train_corpus_record
from edtalk.train.experts import emotion_train, sync_train
from edtalk.train.experts.corpus import load_corpus
from edtalk.train.experts.loop import Resume, run_fingerprint
from edtalk.train.experts.pretrained import split_section


def _syncnet(args: argparse.Namespace, ev: dict[str, Any], seed: int, resume_dir: Path) -> tuple[Any, Any]:
    keys, _ = split_section(ev["syncnet"])
    config = sync_train.SyncTrainConfig(**{**keys, "steps": args.steps}, seed=seed)
    resume = Resume(resume_dir, run_fingerprint(config, args.features), 500, 2)
    result = sync_train.train(load_corpus(args.features, ("train",)), config, resume)
    return result, config


def _emotion(args: argparse.Namespace, ev: dict[str, Any], seed: int, resume_dir: Path) -> tuple[Any, Any]:
    keys, _ = split_section(ev["emotion"])
    overrides = {"steps": args.steps}
    if args.landmark_steps:
        overrides["landmark_steps"] = args.landmark_steps
    config = emotion_train.EmotionTrainConfig(**{**keys, **overrides}, seed=seed)
    resume = Resume(resume_dir, run_fingerprint(config, args.features), 500, 2)
    result = emotion_train.train(load_corpus(args.features, ("train",)), config, resume)
    return result, config


def heldout_figures(name: str, path: Path, features: str, crop: str, params: dict[str, Any]) -> dict[str, Any]:
    """The held-out figures the stage itself reports for this file (its own functions)."""
    from pipeline import train_emotion, train_syncnet

    ev = section(params, "evaluators")
    if name == "syncnet":
        return train_syncnet.heldout.fn(features, crop, str(path), list(ev["heldout_splits"]),
                                        list(ev["sync_shifts"]))
    max_frames = section(params, "evaluate")["emotion_max_frames"]
    return {s: train_emotion.heldout.fn(features, str(path), s, max_frames) for s in ev["heldout_splits"]}


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evaluator", choices=["syncnet", "emotion"])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--features", default="data/features")
    ap.add_argument("--crop", default="data/crop", help="crop stage output (the held-out audio)")
    ap.add_argument("--steps", type=int, required=True, help="SyncNet steps / emotion classifier steps")
    ap.add_argument("--landmark-steps", type=int, default=0, help="emotion: phase-1 steps (0: params')")
    ap.add_argument("--work", default=None, help="checkpoint folder (resumable); "
                    "default data/cache/pretrain_<evaluator>")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    params = load_params(args.params)
    ev = section(params, "evaluators")
    torch.set_num_threads(1)            # bit-reproducible on CPU
    work = Path(args.work or f"data/cache/pretrain_{args.evaluator}")
    t0 = time.perf_counter()
    train = _syncnet if args.evaluator == "syncnet" else _emotion
    result, config = train(args, ev, int(params["base"]["seed"]), work)
    if result.losses == [] or (args.evaluator == "syncnet" and len(result.losses) < args.steps):
        raise SystemExit("stopped early; run the same command again to resume")
    seconds = time.perf_counter() - t0
    # Nothing run-dependent (paths, seconds) goes in: the same command gives the same bytes.
    recipe = f"python scripts/pretrain_evaluators.py {args.evaluator} --steps {args.steps}"
    if args.landmark_steps:
        recipe += f" --landmark-steps {args.landmark_steps}"
    info = {"recipe": recipe, "config": dataclasses.asdict(config),
            "corpus": train_corpus_record(args.features)}
    out = Path(args.out)
    save = sync.save_trained if args.evaluator == "syncnet" else emo.save_trained
    save(result.net, out, info)
    figures = heldout_figures(args.evaluator, out, args.features, args.crop, params)
    print(json.dumps({"out": str(out), "seconds": round(seconds, 1), "train_seconds": round(result.seconds, 1),
                      "heldout": figures}, indent=1), flush=True)
    return out


if __name__ == "__main__":
    main()
