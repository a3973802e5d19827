"""DVC stage `train_emotion`: the 8-class video emotion classifier, trained on the train split.

Writes ``models/evaluators/emotion.pt`` (``edtalk.experts.emotion_net.save_trained``; label
``emotion:trained-here@<hash>``) and ``reports/evaluators/emotion.json``: training time
and loss, video-level accuracy on the train split (fit) and on the val and test splits
against chance (1/8), and for the ``landmarks`` backbone the mean error of its points
(pixels) on each split. With `evaluators.emotion.pretrained` it fine-tunes that shipped
file (checked against this corpus, ``edtalk.train.experts.pretrained``). Step checkpoints under ``models/evaluators/checkpoints/emotion``
(one folder per training phase) let a killed run resume (``edtalk.train.experts.loop``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from edtalk.data import atomic
from edtalk.evaluation.experts import emotion_accuracy
from edtalk.experts import emotion_net as emo
from edtalk.train.experts import emotion_train
from edtalk.train.experts.corpus import load_corpus
from edtalk.train.experts.loop import Resume, loss_ends
from edtalk.train.experts.pretrained import plan_training
from edtalk.params import section
from pipeline.artifacts import publish_loss_curve, publish_summary
from pipeline.common import announce, main_with_params


@task(cache_policy=NO_CACHE)
def fit(features_dir: str, config: emotion_train.EmotionTrainConfig, out: str,
        resume: Resume | None = None, start: str | None = None) -> dict[str, Any]:
    """Train (or, from the pretrained file ``start``, fine-tune) and save the classifier."""
    init = emo.load(start)[0] if start else None
    result = emotion_train.train(load_corpus(features_dir, ("train",)), config, resume, init)
    emo.save_trained(result.net, out)
    # two phases, each counted from step 1: landmark pre-training (L1, px), then the classifier
    curves = {"loss": list(enumerate(result.losses, 1)),
              "landmark_l1_px": list(enumerate(result.landmark_losses, 1))}
    publish_loss_curve("train_emotion", {k: v for k, v in curves.items() if v},
                       f"{result.seconds:.1f} s")
    return {"seconds": result.seconds, **loss_ends(result.losses), "config": result.config,
            **loss_ends(result.landmark_losses, "landmark_loss_px")}


@task(cache_policy=NO_CACHE)
def heldout(features_dir: str, weights: str, split: str, max_frames: int | None) -> dict[str, Any]:
    net, label = emo.load(weights)
    clips = load_corpus(features_dir, (split,))
    out = {"backend": label, **emotion_accuracy(net, clips, max_frames)}
    out.update(emotion_train.heatmap_quality(net, clips, max_frames) or {})   # the M-/F-LMD instrument
    return out


@flow(name="train_emotion")
def train_emotion(params: dict[str, Any], features_dir: str = "data/features",
                  out: str = "models/evaluators/emotion.pt",
                  report: str = "reports/evaluators/emotion.json",
                  ckpt_dir: str = "models/evaluators/checkpoints/emotion") -> dict[str, Any]:
    ev = section(params, "evaluators")
    torch.set_num_threads(int(ev["threads"]))
    plan = plan_training(ev, "emotion", emotion_train.EmotionTrainConfig, int(params["base"]["seed"]),
                         features_dir, ckpt_dir)
    max_frames = section(params, "evaluate")["emotion_max_frames"]
    summary: dict[str, Any] = {"train": {**fit(features_dir, plan.config, out, plan.resume, plan.start),
                                         **plan.report()}}
    fit_split = heldout(features_dir, out, "train", max_frames)
    summary["train"]["accuracy"] = fit_split["accuracy"]                                   # fit
    if "landmark_error_px" in fit_split:
        summary["train"]["landmark_error_px"] = fit_split["landmark_error_px"]
    for split in ev["heldout_splits"]:
        summary[split] = heldout(features_dir, out, split, max_frames)
    atomic.write_json(Path(report), summary)
    accs = ", ".join(f"{s} {summary[s]['accuracy']:.3f}" for s in ev["heldout_splits"])
    how = f"fine-tuned from {plan.start}" if plan.start else "trained"
    message = (f"train_emotion: {summary[ev['heldout_splits'][0]]['backend']} {how} in "
               f"{summary['train']['seconds']:.1f} s; video accuracy {accs} (chance 0.125)")
    announce(message)
    publish_summary("train_emotion", summary)
    return summary


def main() -> None:
    main_with_params(train_emotion, __doc__)


if __name__ == "__main__":
    main()
