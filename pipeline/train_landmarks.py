"""DVC stage `train_landmarks`: the 68-point landmark regressor used for M-/F-LMD at the
corpus' resolution (dlib finds no face in 64 px crops), trained on the train split.

Writes ``models/evaluators/landmarks.pt`` (``edtalk.experts.landmark_net.save``; label
``landmarks:trained-here@<hash>``) and ``reports/evaluators/landmarks.json``: training
time and loss, mean point error in crop pixels on the held-out splits. Step checkpoints
under ``models/evaluators/checkpoints/landmarks`` let a killed run resume
(``edtalk.train.experts.loop``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from edtalk.data import atomic
from edtalk.experts import landmark_net
from edtalk.train.experts import landmark_train
from edtalk.train.experts.corpus import load_corpus
from edtalk.train.experts.loop import Resume, loss_ends, run_fingerprint
from edtalk.params import section
from pipeline.artifacts import publish_loss_curve, publish_summary
from pipeline.common import announce, main_with_params


@task(cache_policy=NO_CACHE)
def fit(features_dir: str, config: landmark_train.LandmarkTrainConfig, out: str,
        resume: Resume | None = None) -> dict[str, Any]:
    result = landmark_train.train(load_corpus(features_dir, ("train",)), config, resume)
    landmark_net.save(result.net, out)
    publish_loss_curve("train_landmarks", {"loss": list(enumerate(result.losses, 1))},
                       f"{result.seconds:.1f} s")
    return {"seconds": result.seconds, **loss_ends(result.losses),
            "config": result.config}


@task(cache_policy=NO_CACHE)
def heldout(features_dir: str, weights: str, splits: list[str]) -> dict[str, Any]:
    landmarker = landmark_net.load(weights)
    return {"backend": landmarker.label, "splits": splits,
            **landmark_train.mean_error_px(landmarker, load_corpus(features_dir, splits))}


@flow(name="train_landmarks")
def train_landmarks(params: dict[str, Any], features_dir: str = "data/features",
                    out: str = "models/evaluators/landmarks.pt",
                    report: str = "reports/evaluators/landmarks.json",
                    ckpt_dir: str = "models/evaluators/checkpoints/landmarks") -> dict[str, Any]:
    ev = section(params, "evaluators")
    torch.set_num_threads(int(ev["threads"]))
    config = landmark_train.LandmarkTrainConfig(**ev["landmarks"], seed=int(params["base"]["seed"]))
    resume = Resume(ckpt_dir, run_fingerprint(config, features_dir), int(ev["checkpoint_every"]),
                    int(ev["keep_checkpoints"]))
    summary = {"train": fit(features_dir, config, out, resume),
               "heldout": heldout(features_dir, out, list(ev["heldout_splits"]))}
    atomic.write_json(Path(report), summary)
    h = summary["heldout"]
    message = (f"train_landmarks: {h['backend']} trained in {summary['train']['seconds']:.1f} s; "
               f"held-out mean error {h['mean_error_px']:.2f} px (mouth {h['mouth_error_px']:.2f} px) "
               f"at {h['image_size']} px")
    announce(message)
    publish_summary("train_landmarks", summary)
    return summary


def main() -> None:
    main_with_params(train_landmarks, __doc__)


if __name__ == "__main__":
    main()
