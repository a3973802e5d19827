"""How the expert trainers use the one resumable loop (``edtalk.train.resumable``).

Each trainer runs Adam(W) under a one-cycle schedule and draws its batches from one
seeded NumPy generator. Besides the network, optimiser, schedule and torch RNG, a step
checkpoint therefore holds that generator's state (``"sampler"``) and the loss values
and training seconds so far (``"history"``): a run killed at any moment and re-run draws
the same batches, ends with the weights of a run never interrupted and reports the
whole run's losses.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk.data.resume import file_key, fingerprint
from edtalk.train.experts.corpus import CORPUS_FILES
from edtalk.train.resumable import run_config, run_steps


@dataclass(frozen=True)
class Resume:
    """Where a trainer keeps its step checkpoints, and under which fingerprint."""

    ckpt_dir: str | Path
    fingerprint: str = ""
    checkpoint_every: int = 50
    keep: int = 2
    stop_after: int | None = None     # end the call after this many steps (tests simulate a crash)

    def phase(self, name: str, done: int = 0) -> Resume:
        """The checkpoints of one phase of a several-phase training, in a sub-folder; ``done``
        steps of this call's ``stop_after`` already spent on earlier phases."""
        left = None if self.stop_after is None else max(0, self.stop_after - done)
        return replace(self, ckpt_dir=Path(self.ckpt_dir) / name, stop_after=left)


def run_fingerprint(config: Any, features_dir: str | Path, *starts: str | Path) -> str:
    """What an expert's weights depend on: its config (``steps`` included, since the
    one-cycle schedule spans it), the corpus files it reads and the files it starts from
    (a pretrained evaluator it fine-tunes)."""
    return fingerprint(run_config(config), {"steps": config.steps},
                       *(file_key(Path(features_dir) / name) for name in CORPUS_FILES),
                       *(file_key(path) for path in starts))


class Sampler:
    """A NumPy generator as a checkpoint state (its bit generator's state)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def state_dict(self) -> dict[str, Any]:
        return self.rng.bit_generator.state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state


class History:
    """Each loss term's value per step and the training seconds of earlier calls."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}
        self.seconds = 0.0
        self._since: float | None = None

    def record(self, terms: dict[str, torch.Tensor]) -> None:
        if self._since is None:
            self._since = time.perf_counter()
        for key, value in terms.items():
            self.values.setdefault(key, []).append(value.item())

    def state_dict(self) -> dict[str, Any]:
        now = 0.0 if self._since is None else time.perf_counter() - self._since
        return {"values": {k: list(v) for k, v in self.values.items()}, "seconds": self.seconds + now}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.values = {k: list(v) for k, v in state["values"].items()}
        self.seconds = float(state["seconds"])
        self._since = None


@dataclass
class Phase:
    """A resumable training run: per-term losses of every step and seconds, over all calls."""

    losses: dict[str, list[float]]
    seconds: float
    finished: bool                   # all steps done
    ran: int                         # steps done by this call


def train_steps(net: torch.nn.Module, opt: torch.optim.Optimizer, steps: int, lr: float,
                batch_loss: Callable[[], dict[str, torch.Tensor]], rng: np.random.Generator,
                resume: Resume | None) -> Phase:
    """``steps`` steps of ``opt`` on the summed terms of ``batch_loss()`` (a dict of loss
    tensors) under a one-cycle schedule peaking at ``lr``; ``net`` is left in eval mode.

    ``rng`` is the generator ``batch_loss`` samples from. With ``resume`` the run resumes
    from and checkpoints to ``resume.ckpt_dir``; without, it runs start to end in a
    temporary folder.
    """
    if steps <= 0:      # a pretrained net only verified, not fine-tuned
        net.eval()
        return Phase({}, 0.0, True, 0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
    history = History()

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        terms = batch_loss()
        history.record(terms)
        return terms

    states = {"net": net, "opt": opt, "sched": sched, "sampler": Sampler(rng), "history": history}
    if resume is None:
        with tempfile.TemporaryDirectory(prefix="expert-") as tmp:
            result = run_steps(step_fn, states, tmp, steps, steps, keep=1)
    else:
        result = run_steps(step_fn, states, resume.ckpt_dir, steps, resume.checkpoint_every, resume.keep,
                           resume.fingerprint, stop_after=resume.stop_after)
    return Phase(history.values, history.seconds + result.seconds, result.step >= steps,
                 result.step - result.resumed_from)


def loss_ends(losses: list[float], prefix: str = "loss") -> dict[str, float]:
    """``{prefix}_first`` and ``{prefix}_last`` of a run's losses; empty when it took no step."""
    return {f"{prefix}_first": losses[0], f"{prefix}_last": losses[-1]} if losses else {}
