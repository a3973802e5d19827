"""The one resumable training loop: step checkpoints, resume from the newest, DVCLive history.

A run writes ``<ckpt_dir>/step-XXXXXXXX.pt`` atomically every ``checkpoint_every`` steps
and at its last step: the states it trains (modules, optimisers, schedulers), the torch
RNG state, the step and a fingerprint of what the weights depend on besides the step
count (configuration, input files). A re-run resumes from the newest checkpoint within
its step budget when that fingerprint matches, and deletes the checkpoints when it does
not. With batches a pure function of (seed, step) and deterministic kernels at a fixed
thread count, a run killed at any moment (``kill -9``) and re-run ends with the weights
of a run never interrupted, bit for bit.

Two levels of use:

* ``run_steps``: the whole loop for modules + optimisers driven by a step function that
  returns the loss terms (the Audio-to-Motion predictors, the expert networks);
* ``Checkpoints``, ``open_live`` and ``log_step``: the pieces, for a loop with its own
  step body (the EDTalk stages: two optimisers, a discriminator step, DDP).
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from edtalk.data import atomic

log = logging.getLogger(__name__)
CKPT = re.compile(r"step-(\d{8})\.pt$")
# Config fields that change how long a run is or how it reports, not what its weights are.
BOOKKEEPING = ("steps", "checkpoint_every", "keep_checkpoints", "log_every")
RESERVED = ("rng", "step", "fingerprint")


def world() -> tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def run_config(cfg: Any, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """A (nested) config dataclass as a dict for a fingerprint, without the bookkeeping
    fields (``BOOKKEEPING`` + ``drop``) at any depth: resuming with a larger step budget
    keeps the checkpoints."""
    skip = set(BOOKKEEPING) | set(drop)

    def strip(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: strip(x) for k, x in v.items() if k not in skip}
        return v
    return strip(asdict(cfg))


def checkpoints(ckpt_dir: str | Path, max_step: int | None = None) -> list[tuple[int, Path]]:
    """(step, path) of the step checkpoints in ``ckpt_dir``, oldest first (at most ``max_step``)."""
    found = [(int(m.group(1)), p) for p in Path(ckpt_dir).glob("step-*.pt") if (m := CKPT.search(p.name))]
    return sorted(f for f in found if max_step is None or f[0] <= max_step)


def _read(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


class Checkpoints:
    """The step checkpoints of one run: which one to resume from, writing, keeping the newest."""

    def __init__(self, ckpt_dir: str | Path, fingerprint: str = "", keep: int = 2,
                 max_step: int | None = None) -> None:
        self.dir, self.fingerprint, self.keep, self.max_step = Path(ckpt_dir), fingerprint, keep, max_step
        self.dir.mkdir(parents=True, exist_ok=True)

    def latest(self) -> tuple[int, Path] | None:
        """The newest checkpoint within the budget if it was written under this fingerprint."""
        found = checkpoints(self.dir, self.max_step)
        if found and _read(found[-1][1]).get("fingerprint") == self.fingerprint:
            return found[-1]
        return None

    def resume(self) -> tuple[int, Path, dict[str, Any]] | None:
        """(step, path, contents) to resume from, or None for a fresh start.

        Checkpoints of another fingerprint are deleted (by rank 0; every rank waits).
        """
        found = checkpoints(self.dir, self.max_step)      # never past the budget
        if not found:
            return None
        step, path = found[-1]
        state = _read(path)
        if state.get("fingerprint") == self.fingerprint:
            return step, path, state
        rank, size = world()
        if rank == 0:
            log.warning("checkpoints in %s belong to another configuration; starting afresh", self.dir)
            for _, old in found:
                old.unlink(missing_ok=True)
        if size > 1:
            dist.barrier()
        return None

    def save(self, step: int, write: Callable[[Path], None]) -> None:
        """``write(path)`` the checkpoint of ``step`` (atomically), then keep the newest ``keep``."""
        write(self.dir / f"step-{step:08d}.pt")
        for _, old in checkpoints(self.dir)[:-self.keep]:
            old.unlink(missing_ok=True)


def truncate_live(live_dir: str | Path, start: int) -> None:
    """Drop DVCLive history rows logged after the checkpoint we resume from."""
    for tsv in (Path(live_dir) / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        if not lines:
            continue
        col = lines[0].split("\t").index("step")
        kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[col]) <= start]
        tsv.write_text("\n".join(kept) + "\n")


def open_live(live_dir: str | Path | None, start: int) -> Any:
    """A DVCLive logger continuing at ``start`` (history after it dropped), or a fresh one
    with no history of an older run; None without ``live_dir``."""
    if live_dir is None:
        return None
    from dvclive import Live  # logging backend; the library runs without a DVC repo

    if start:
        truncate_live(live_dir, start)
    else:
        for old in (Path(live_dir) / "plots", Path(live_dir) / "metrics.json"):
            shutil.rmtree(old, ignore_errors=True) if old.is_dir() else old.unlink(missing_ok=True)
    return Live(str(live_dir), resume=bool(start), save_dvc_exp=False, dvcyaml=False)


def log_step(live: Any, step: int, values: dict[str, float], log_every: int, last_step: int) -> None:
    """Log ``values`` to DVCLive (if any) at every ``log_every``-th step and at the last one."""
    if live is None or (step % log_every and step != last_step):
        return
    live.step = step
    for key, value in values.items():
        live.log_metric(key, value)
    live.next_step()


@dataclass
class LoopResult:
    step: int                       # steps done in total
    resumed_from: int               # 0 = fresh start
    seconds: float                  # wall time of this call's steps
    last: dict[str, float]          # the last step's logged values
    first: dict[str, float]         # the first logged values of this call


def run_steps(step_fn: Callable[[int], dict[str, torch.Tensor]], states: Mapping[str, Any],
              ckpt_dir: str | Path, steps: int, checkpoint_every: int, keep: int = 2,
              fingerprint: str = "", live_dir: str | Path | None = None, log_every: int = 10,
              stop_after: int | None = None) -> LoopResult:
    """Train to ``steps`` steps, resuming from ``ckpt_dir``; returns what was done.

    ``states`` names everything a checkpoint holds, by the key it is stored under:
    modules (set to train mode, eval mode at the end), optimisers (zeroed and stepped each
    step, in the given order) and learning-rate schedulers (stepped after them). Each step,
    ``step_fn(step)`` returns the loss terms; their sum is back-propagated. Terms whose key
    starts with ``"_"`` are logged only. ``stop_after`` ends this call after that many
    steps (tests simulate a crash with it). The caller seeds the torch RNG before the
    call; a resumed run restores the RNG state of its checkpoint instead.
    """
    clash = set(states) & set(RESERVED)
    if clash:
        raise ValueError(f"state names {sorted(clash)} are reserved for the loop")
    modules = [v for v in states.values() if isinstance(v, nn.Module)]
    optimisers = [v for v in states.values() if isinstance(v, torch.optim.Optimizer)]
    schedulers = [v for v in states.values() if isinstance(v, torch.optim.lr_scheduler.LRScheduler)]
    ckpts = Checkpoints(ckpt_dir, fingerprint, keep, max_step=steps)
    start = 0
    found = ckpts.resume()
    if found:
        start, path, saved = found
        for name, obj in states.items():
            obj.load_state_dict(saved[name])
        torch.set_rng_state(saved["rng"])
        log.info("resumed from %s (step %d)", path, start)
    live = open_live(live_dir, start)
    end = steps if stop_after is None else min(steps, start + stop_after)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    for m in modules:
        m.train()
    t0 = time.perf_counter()
    for step in range(start, end):
        terms = step_fn(step)
        total = sum(v for k, v in terms.items() if not k.startswith("_"))
        for opt in optimisers:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt in optimisers:
            opt.step()
        for sched in schedulers:
            sched.step()
        last = {f"loss/{k.lstrip('_')}": float(v.detach()) for k, v in terms.items()}
        last["loss/total"] = float(total.detach())
        first = first or dict(last)
        done = step + 1
        log_step(live, done, last, log_every, steps)
        if done % checkpoint_every == 0 or done == steps:
            ckpts.save(done, lambda path: _save_states(path, states, done, fingerprint))
    seconds = time.perf_counter() - t0
    if live is not None:
        live.end()
    for m in modules:
        m.eval()
    return LoopResult(end, start, seconds, last, first)


def _save_states(path: Path, states: Mapping[str, Any], step: int, fingerprint: str) -> None:
    payload = {name: obj.state_dict() for name, obj in states.items()}
    payload.update(rng=torch.get_rng_state(), step=step, fingerprint=fingerprint)
    with atomic.atomic_path(path) as tmp:
        torch.save(payload, tmp)
