"""DVC stage `train_syncnet`: the lip-sync expert evaluator, trained on the train split.

Writes ``models/evaluators/syncnet.pt`` (``edtalk.experts.syncnet.save_trained``; label
``syncnet:trained-here:w<width>-s<size>-d<dim>@<hash>``) and
``reports/evaluators/syncnet.json``: training time and loss, and the held-out offset
accuracy (val + test clips, audio delayed by known numbers of frames). With
`evaluators.syncnet.pretrained` it fine-tunes that shipped file (checked against this corpus,
``edtalk.train.experts.pretrained``) instead of training from scratch. Step checkpoints
under ``models/evaluators/checkpoints/syncnet`` let a killed run resume
(``edtalk.train.experts.loop``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from edtalk.data import atomic
from edtalk.data.media import read_audio
from edtalk.evaluation.experts import offset_accuracy
from edtalk.experts import syncnet as sync
from edtalk.train.experts import sync_train
from edtalk.train.experts.corpus import audio_paths, load_corpus
from edtalk.train.experts.loop import Resume, loss_ends
from edtalk.train.experts.pretrained import plan_training
from edtalk.params import section
from pipeline.artifacts import publish_loss_curve, publish_summary
from pipeline.common import announce, main_with_params


@task(cache_policy=NO_CACHE)
def fit(features_dir: str, config: sync_train.SyncTrainConfig, out: str,
        resume: Resume | None = None, start: str | None = None) -> dict[str, Any]:
    """Train (or, from the pretrained file ``start``, fine-tune) and save the SyncNet."""
    init = sync.load(start) if start else None
    result = sync_train.train(load_corpus(features_dir, ("train",)), config, resume, init)
    sync.save_trained(result.net, out)
    publish_loss_curve("train_syncnet", {"loss": list(enumerate(result.losses, 1))},
                       f"{result.seconds:.1f} s")
    return {"seconds": result.seconds, **loss_ends(result.losses), "config": result.config}


@task(cache_policy=NO_CACHE)
def heldout(features_dir: str, crop_dir: str, weights: str, splits: list[str],
            shifts: list[int]) -> dict[str, Any]:
    net = sync.load(weights)
    wavs = audio_paths(crop_dir, features_dir)
    items = [(c.frames, read_audio(wavs[c.clip_id])) for c in load_corpus(features_dir, splits)]
    res = offset_accuracy(net, items, tuple(shifts))
    return {"backend": net.backend, "splits": splits, **{k: v for k, v in res.items() if k != "trials"}}


@flow(name="train_syncnet")
def train_syncnet(params: dict[str, Any], features_dir: str = "data/features",
                  crop_dir: str = "data/crop", out: str = "models/evaluators/syncnet.pt",
                  report: str = "reports/evaluators/syncnet.json",
                  ckpt_dir: str = "models/evaluators/checkpoints/syncnet") -> dict[str, Any]:
    ev = section(params, "evaluators")
    torch.set_num_threads(int(ev["threads"]))
    plan = plan_training(ev, "syncnet", sync_train.SyncTrainConfig, int(params["base"]["seed"]),
                         features_dir, ckpt_dir)
    summary = {"train": {**fit(features_dir, plan.config, out, plan.resume, plan.start), **plan.report()},
               "heldout": heldout(features_dir, crop_dir, out, list(ev["heldout_splits"]),
                                  list(ev["sync_shifts"]))}
    atomic.write_json(Path(report), summary)
    h = summary["heldout"]
    how = f"fine-tuned from {plan.start}" if plan.start else "trained"
    message = (f"train_syncnet: {h['backend']} {how} in {summary['train']['seconds']:.1f} s; "
               f"held-out offset accuracy {h['offset_accuracy']:.3f} over {h['clips']} clips "
               f"x shifts {ev['sync_shifts']}; own audio within ±1 frame on {h.get('aligned_within_1')}, "
               f"told from shifted audio on {h.get('separated')}")
    announce(message)
    publish_summary("train_syncnet", summary)
    return summary


def main() -> None:
    main_with_params(train_syncnet, __doc__)


if __name__ == "__main__":
    main()
