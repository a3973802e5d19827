"""One training loop for every stage: seeded, step-based, resumable, DDP-aware, DVCLive-logged.

Per step: (1) the stage's generator losses, backward, gradients averaged over ranks, Adam
step on the stage's groups; (2) the discriminator's Eq. 6 on (real, detached fake), its
own Adam step. Every ``checkpoint_every`` steps (and at the end) rank 0 writes an atomic
checkpoint with the model, D, both optimisers, the RNG state and the step.

Resume (``resumable.py``, shared with every other trainer): a re-run loads the newest
checkpoint and continues. Batches are a pure function of (seed, step) (``data.py``) and
CPU kernels are deterministic for a fixed thread count, so a run killed with ``kill -9``
and re-run ends with the same weights, bit for bit, as one never interrupted.

Data parallel (``torchrun``, gloo on CPU, NCCL on GPU): every rank draws the combined
batch and keeps rows ``rank::world``; after backward the gradients of the trained
parameters are all-reduced and divided by the world size -- the averaging DDP performs.
(DDP's module wrapper is not used because a stage calls several model methods per step
and DDP's reducer only follows its wrapper's ``forward``.) Losses are batch means, so
this equals one process on the combined batch. The discriminator's minibatch-stddev
couples the samples it sees together; the interleaved split makes each rank's batch
exactly one stddev group of the combined batch when the per-rank batch equals D's group
size (4), so that case matches to float tolerance as well.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from edtalk.model import Discriminator, EDTalk, load_checkpoint, profile, save_checkpoint

from .config import StageConfig
from .data import FrameTable
from .losses import Perceptual, adv_discriminator
from .resumable import Checkpoints, log_step, open_live, world
from .stages import STAGES, Context, Stage, check_frozen, frozen_snapshot, identity_copy_start

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: EDTalk
    discriminator: Discriminator | None
    step: int                       # steps done in total
    resumed_from: int               # 0 = fresh start
    seconds: float                  # wall time of this run's steps
    samples_per_s: float
    last: dict[str, float]          # the last step's logged values
    live: Any = None                # the open DVCLive logger (rank 0); the caller ends it



def allreduce_mean_(tensors: list[torch.Tensor]) -> None:
    """In place: the mean over ranks (DDP's gradient averaging)."""
    rank, size = world()
    if size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for t in tensors:
        t.copy_(flat[offset: offset + t.numel()].view_as(t))
        offset += t.numel()


def resolve_device(name: str = "auto") -> torch.device:
    """The training device: ``auto`` is CUDA when available (under torchrun each rank takes
    its ``LOCAL_RANK`` GPU), else the CPU. An unavailable device is refused by name."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"training device {name!r} requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    elif dev.type != "cpu":
        raise ValueError(f"unsupported training device {name!r} (auto, cpu, cuda, cuda:N)")
    return dev


def _grads(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    return [p.grad for p in params]


# --- model construction -------------------------------------------------------------------

def build(cfg: StageConfig, init: str | Path | None = None) -> tuple[EDTalk, Discriminator]:
    """A seeded model and D; ``init`` (a previous stage's or an official checkpoint) overrides."""
    torch.manual_seed(cfg.seed)
    if init is not None and Path(init).is_file():
        model, extra = load_checkpoint(init)
    else:
        if init is not None:
            raise FileNotFoundError(f"initial checkpoint {init} does not exist")
        model, extra = EDTalk(profile(cfg.profile, **cfg.model_overrides)), {}
        if cfg.identity_copy_init:
            identity_copy_start(model)
    torch.manual_seed(cfg.seed + 1)
    disc = Discriminator(model.cfg)
    if extra.get("disc"):
        disc.load_state_dict(extra["disc"])
    return model, disc


# --- checkpoints ----------------------------------------------------------------------------

def _writer(model: EDTalk, disc: Discriminator | None, opt_g: torch.optim.Optimizer,
            opt_d: torch.optim.Optimizer | None, step: int, stage: str,
            fingerprint: str) -> Callable[[Path], None]:
    """Writes a stage checkpoint: a model file (``save_checkpoint``) carrying the loop's state."""
    def write(path: Path) -> None:
        save_checkpoint(path, model, disc=disc.state_dict() if disc else {},
                        opt_g=opt_g.state_dict(), opt_d=opt_d.state_dict() if opt_d else {},
                        step=step, stage=stage, rng=torch.get_rng_state(), fingerprint=fingerprint)
    return write


# --- the loop ---------------------------------------------------------------------------

def train(cfg: StageConfig, table: FrameTable, out_dir: str | Path, model: EDTalk,
          disc: Discriminator | None, live_dir: str | Path | None = None,
          motion_nets: list[Any] | None = None, stop_after: int | None = None,
          perceptual: Perceptual | None = None, fingerprint: str = "") -> TrainResult:
    """Train ``cfg.stage`` to ``cfg.steps`` steps, resuming from ``out_dir/checkpoints``.

    ``stop_after`` ends this call after that many steps (tests simulate a crash with it).
    ``fingerprint`` identifies what the run depends on besides the step count (config,
    initial weights): checkpoints written under another fingerprint are discarded.
    """
    stage: Stage = STAGES[cfg.stage]
    rank, size = world()
    if cfg.batch % size:
        raise ValueError(f"batch {cfg.batch} is not divisible by {size} ranks")
    ckpts = Checkpoints(Path(out_dir) / "checkpoints", fingerprint, cfg.keep_checkpoints, max_step=cfg.steps)
    dev = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed + 2)
    model.to(dev)
    if disc is not None:
        disc.to(dev)
    model.set_trainable(*stage.groups)
    model.train()
    frozen = frozen_snapshot(model, stage.groups)
    params = model.group_parameters(*stage.groups)
    opt_g = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
    use_d = disc is not None and cfg.weights.adv > 0
    if disc is not None and not use_d:
        disc = None
    opt_d = (torch.optim.Adam(disc.parameters(), lr=cfg.d_lr, betas=cfg.betas)
             if use_d and cfg.train_discriminator else None)
    start = 0
    found = ckpts.resume()
    if found:
        start, path, _ = found
        _, extra = load_checkpoint(path, model)
        if disc is not None and extra.get("disc"):
            disc.load_state_dict(extra["disc"])
        opt_g.load_state_dict(extra["opt_g"])
        if opt_d is not None and extra.get("opt_d"):
            opt_d.load_state_dict(extra["opt_d"])
        torch.set_rng_state(extra["rng"])
        check_frozen(model, frozen)
        log.info("%s: resumed from %s (step %d)", cfg.stage, path, start)
    perceptual = (perceptual or Perceptual(cfg.perceptual, seed=cfg.seed)).to(dev)
    ctx = Context(model, disc, perceptual, cfg, motion_nets or [])
    live = open_live(live_dir, start) if rank == 0 else None
    last: dict[str, float] = {}
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    t0 = time.perf_counter()
    for step in range(start, end):
        batch = {k: v.to(dev, non_blocking=True) for k, v in stage.make_batch(table, cfg, step, rank, size).items()}
        if disc is not None:
            disc.requires_grad_(False)
        out = stage.losses(ctx, batch)
        total = sum(out.terms.values())
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        allreduce_mean_(_grads(params))
        opt_g.step()
        values = {f"loss/{k}": v.detach() for k, v in out.terms.items()}
        values["loss/total"] = total.detach()
        if opt_d is not None:
            disc.requires_grad_(True)
            d_loss = adv_discriminator(disc(out.real), disc(out.fake.detach()))   # Eq. 6, D side
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            allreduce_mean_(_grads(list(disc.parameters())))
            opt_d.step()
            values["loss/disc"] = d_loss.detach()
        names = sorted(values)
        stacked = torch.stack([values[k].float() for k in names])
        allreduce_mean_([stacked])
        last = {k: float(v) for k, v in zip(names, stacked)}
        done = step + 1
        log_step(live, done, last, cfg.log_every, cfg.steps)
        if rank == 0 and (done % cfg.checkpoint_every == 0 or done == cfg.steps):
            ckpts.save(done, _writer(model, disc, opt_g, opt_d, done, cfg.stage, fingerprint))
        if size > 1 and done % cfg.checkpoint_every == 0:
            dist.barrier()
    seconds = time.perf_counter() - t0
    check_frozen(model, frozen)
    n = max(end - start, 0)
    model.requires_grad_(False).eval().cpu()        # callers (validation, saving) work on the CPU
    if disc is not None:
        disc.cpu()
    return TrainResult(model, disc, end, start, seconds, n * cfg.batch / seconds if n else 0.0, last, live)
