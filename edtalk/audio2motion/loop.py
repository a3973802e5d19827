"""How the three Audio-to-Motion trainers use the one resumable loop (``edtalk.train.resumable``).

Adam on the module's trainable parameters; the checkpoints hold {"model", "opt", "rng",
"step", "fingerprint"}; the torch RNG is seeded with ``seed + 7`` before a fresh start.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from edtalk.train.resumable import LoopResult, run_steps

from .params import LoopConfig


def run_loop(module: nn.Module, step_fn: Callable[[int], dict[str, torch.Tensor]], cfg: LoopConfig,
             ckpt_dir: str | Path, live_dir: str | Path | None = None, stop_after: int | None = None,
             fingerprint: str = "", params: Sequence[nn.Parameter] | None = None) -> LoopResult:
    """Adam on ``params`` (default: the module's trainable ones) to ``cfg.steps`` steps.

    ``step_fn(step)`` returns the weighted loss terms (summed for the update) and may add
    non-loss values under keys starting with ``"_"`` (logged, not optimised). Resumes from
    the newest checkpoint in ``ckpt_dir`` written under the same ``fingerprint``;
    ``stop_after`` ends this call early (tests simulate a crash with it).
    """
    params = list(params if params is not None else (p for p in module.parameters() if p.requires_grad))
    opt = torch.optim.Adam(params, lr=cfg.lr)
    torch.manual_seed(cfg.seed + 7)
    return run_steps(step_fn, {"model": module, "opt": opt}, ckpt_dir, cfg.steps, cfg.checkpoint_every,
                     cfg.keep_checkpoints, fingerprint, live_dir, cfg.log_every, stop_after)
