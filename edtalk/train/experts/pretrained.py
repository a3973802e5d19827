"""Shipped pretrained evaluators: reading the params that name one, and the file's record.

An evaluator section of params.yaml may name a ``pretrained`` file (made by
``scripts/pretrain_evaluators.py``: the very trainer of the stage, run longer on the train
split). The stage then checks the file's corpus record
(:func:`edtalk.train.corpus_record.check_corpus_record`), fine-tunes it for
``finetune_steps`` at ``finetune_lr`` on the train split (so the stage still trains, and a
fine-tune that breaks the evaluator shows in the held-out figures it reports), and writes
the result where the in-run training would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edtalk.train.corpus_record import WrongCorpus, check_corpus_record
from edtalk.train.experts.loop import Resume, run_fingerprint
from edtalk.weights import load_state_dict

PRETRAIN_KEYS = ("pretrained", "finetune_steps", "finetune_lr", "finetune_landmark_steps",
                 "finetune_landmark_lr")


@dataclass(frozen=True)
class FineTune:
    """How the stage uses a shipped file: fine-tune ``steps`` (the whole SyncNet, emotion's
    classifier) at peak learning rate ``lr`` and ``landmark_steps`` (emotion's phase 1) at
    ``landmark_lr``; 0 steps only verify the file (held-out figures)."""

    path: str
    steps: int
    lr: float
    landmark_steps: int = 0
    landmark_lr: float = 0.0


def split_section(raw: dict[str, Any]) -> tuple[dict[str, Any], FineTune | None]:
    """An evaluator's params section -> (the trainer's config keys, the fine-tune plan or
    None when no pretrained file is named)."""
    trainer = {k: v for k, v in raw.items() if k not in PRETRAIN_KEYS}
    if not raw.get("pretrained"):
        return trainer, None
    lr = float(raw.get("finetune_lr", trainer.get("lr", 1e-3)))
    return trainer, FineTune(str(raw["pretrained"]), int(raw.get("finetune_steps", 0)), lr,
                             int(raw.get("finetune_landmark_steps", 0)),
                             float(raw.get("finetune_landmark_lr", lr)))


def finetune_config(config: Any, plan: FineTune) -> Any:
    """The trainer config for the fine-tune: the plan's steps and learning rate (both
    phases' for the emotion trainer)."""
    fields = {f.name for f in dataclasses.fields(config)}
    changes: dict[str, Any] = {"steps": plan.steps, "lr": plan.lr}
    if "landmark_steps" in fields:
        changes.update(landmark_steps=plan.landmark_steps, landmark_lr=plan.landmark_lr)
    return dataclasses.replace(config, **changes)


def pretrained_info(path: str | Path) -> dict[str, Any]:
    """The ``pretrained`` entry (recipe, steps, corpus record) of a shipped file."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"missing pretrained evaluator {path}: make it with "
                                "scripts/pretrain_evaluators.py, or set its `pretrained` to null "
                                "in params.yaml to train it here")
    info = load_state_dict(path).get("pretrained")
    if not isinstance(info, dict):
        raise WrongCorpus(f"{path} is not a pretrained evaluator of this project (no `pretrained` record)")
    return dict(info)


def check_pretrained(plan: FineTune, features_dir: str | Path, setting: str) -> dict[str, Any]:
    """The file's info without its bulky corpus record, after checking that record against
    this corpus (:class:`WrongCorpus` otherwise)."""
    info = pretrained_info(plan.path)
    check_corpus_record(info.get("corpus"), features_dir, plan.path, setting)
    return {k: v for k, v in info.items() if k != "corpus"}


@dataclass(frozen=True)
class TrainingPlan:
    """What an evaluator stage trains: the trainer config, where it resumes from, and the
    pretrained file it starts from (``start``; None = from scratch) with that file's info."""

    config: Any
    resume: Resume
    start: str | None = None
    origin: dict[str, Any] | None = None

    def report(self) -> dict[str, Any]:
        """The ``pretrained`` entry of the stage's report (empty when trained from scratch)."""
        return {} if self.start is None else {"pretrained": {"file": self.start, **(self.origin or {})}}


def plan_training(ev: dict[str, Any], name: str, config_type: type, seed: int, features_dir: str | Path,
                  ckpt_dir: str | Path) -> TrainingPlan:
    """The resolved `evaluators` section's ``name`` entry as a :class:`TrainingPlan`: a
    named pretrained file is checked against this corpus (:class:`WrongCorpus` otherwise)
    and fine-tuned; the resume fingerprint covers it."""
    keys, plan = split_section(ev[name])
    config = config_type(**keys, seed=seed)
    origin = None
    if plan is not None:
        origin = check_pretrained(plan, features_dir, f"evaluators.{name}.pretrained")
        config = finetune_config(config, plan)
    starts = [plan.path] if plan else []
    resume = Resume(ckpt_dir, run_fingerprint(config, features_dir, *starts), int(ev["checkpoint_every"]),
                    int(ev["keep_checkpoints"]))
    return TrainingPlan(config, resume, plan.path if plan else None, origin)
