"""Pose training (§3.3, Eqs. 13-14): an own E_a + the flow phi_p with L_MLE + L^p_rec + L_tem.

Random crops of the W^p sequences. The flow starts as the (shrunk) full-covariance
Gaussian of all train W^p; its learned layers train on the train identities outside a
held-out group (a part of the *train* split), and the state with the best held-out NLL is
kept (early stopping; step 0, the Gaussian itself, included). The sampling latent's
temporal structure is then fitted to the train sequences.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edtalk.data import atomic
from edtalk.train.data import step_generator, step_rng
from edtalk.train.resumable import Checkpoints, LoopResult

from .audio_encoder import feature_encoder_config, frame_windows
from .audio_pose import AudioPose
from .config import A2MConfig
from .data import ClipData, clip_expressions
from .loop import run_loop
from .params import PoseTrainConfig
from .pose_flow import PROCESS_BUFFERS, jitter, mle_loss, pose_losses, select_noise


def _crops(clips: Sequence[ClipData], windows: dict[str, torch.Tensor], n: int, length: int,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random crops of ``length`` frames (clips too short are skipped): W^p and windows."""
    pool = [c for c in clips if len(c) >= length]
    ws, xs = [], []
    for _ in range(n):
        c = pool[int(rng.integers(len(pool)))]
        t = int(rng.integers(len(c) - length + 1))
        ws.append(torch.from_numpy(c.pose[t:t + length]))
        xs.append(windows[c.clip_id][t:t + length])
    return torch.stack(ws), torch.stack(xs)


def pose_windows(clips: Sequence[ClipData], feature: str, context: int) -> dict[str, torch.Tensor]:
    return {c.clip_id: frame_windows(c.features(feature), context) for c in clips}


NOISE_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)   # candidates of noise: auto


def _group(clip: ClipData) -> str:
    return clip.identity or clip.clip_id


def resolve_noise(noise: float | str, clips: Sequence[ClipData]) -> tuple[float, dict[float, float]]:
    """The dequantisation noise: the number given, or for "auto" the leave-one-identity-out
    best of ``NOISE_GRID`` for the Gaussian part (``pose_flow.select_noise``) and its scores."""
    if not (isinstance(noise, str) and noise == "auto"):
        return float(noise), {}
    by: dict[str, list[np.ndarray]] = {}
    for c in clips:
        by.setdefault(_group(c), []).append(c.pose)
    groups = [torch.from_numpy(np.concatenate(v)) for _, v in sorted(by.items())]
    return select_noise(groups, NOISE_GRID)


def holdout_split(clips: Sequence[ClipData], fraction: float, seed: int
                  ) -> tuple[list[ClipData], list[ClipData]]:
    """(fit, held): ``fraction`` of the identities (at least one, never all), drawn with ``seed``."""
    names = sorted({_group(c) for c in clips})
    n = min(max(int(round(fraction * len(names))), 1), len(names) - 1) if fraction > 0 else 0
    if n <= 0:
        return list(clips), []
    held = set(np.random.default_rng([seed, 11]).permutation(names)[:n].tolist())
    return [c for c in clips if _group(c) not in held], [c for c in clips if _group(c) in held]


class _BestState:
    """Early stopping: the state with the lowest held-out NLL among those whose held-out
    sample jitter is at most ``max_ratio`` x the ground truth's (if none is, the smoothest),
    persisted next to the loop's checkpoints (``ckpts``) so that a resumed run makes the
    same choice as an uninterrupted one."""

    def __init__(self, path: Path, ckpts: Checkpoints, max_ratio: float) -> None:
        self.path, self.fingerprint, self.max_ratio = path, ckpts.fingerprint, max_ratio
        self.nll, self.ratio, self.step, self.state = float("inf"), float("inf"), -1, None
        self.curve: list[tuple[int, float, float]] = []   # (step, NLL, jitter ratio) seen here
        resuming = ckpts.latest() is not None           # the loop will resume from a checkpoint
        if resuming and path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("fingerprint") == self.fingerprint:
                self.nll, self.ratio = float(saved["nll"]), float(saved["ratio"])
                self.step, self.state = int(saved["step"]), saved["model"]
        elif path.is_file():
            path.unlink()

    def _key(self, nll: float, ratio: float) -> tuple[bool, float]:
        ok = ratio <= self.max_ratio
        return (not ok, nll if ok else ratio)

    def offer(self, step: int, nll: float, ratio: float, module: nn.Module, persist: bool = True) -> None:
        self.curve.append((step, round(nll, 4), round(ratio, 3)))
        if self._key(nll, ratio) < self._key(self.nll, self.ratio):
            self.nll, self.ratio, self.step = nll, ratio, step
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            if persist:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with atomic.atomic_path(self.path) as tmp:
                    torch.save({"model": self.state, "nll": nll, "ratio": ratio, "step": step,
                                "fingerprint": self.fingerprint}, tmp)

    def restore(self, module: nn.Module) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


def train_pose(clips: Sequence[ClipData], cfg: PoseTrainConfig, a2m: A2MConfig, out_dir: str | Path,
               live_dir: str | Path | None = None, stop_after: int | None = None,
               fingerprint: str = "") -> tuple[AudioPose, LoopResult, float]:
    """L_MLE + L^p_rec + L_tem on random crops with early stopping; then fit the sampling latent.

    S (the flow's Gaussian) is fitted to all train clips. The learned layers train on the
    clips outside a held-out group of train identities (``cfg.holdout``); every
    ``cfg.eval_every`` steps the held-out NLL per frame and sample jitter are measured and
    the best state is kept (lowest NLL among states whose jitter ratio is within
    ``cfg.jitter_ratio``; step 0, the Gaussian itself, competes too). With ``cfg.refit``
    a fresh model then trains on all train clips for the chosen number of steps. The
    returned loop is the selection run's (its seconds include the refit);
    ``model.train_info`` records the noise, the held-out identities, the curve and the
    chosen step. Returns (model, loop, rho).
    """
    # E_a's layout with per-step layer norm: the flow was measured with it, and its audio_cmn
    # already normalises each sequence
    enc = feature_encoder_config(replace(a2m.mouth.encoder, input_norm="layer"), cfg.feature)
    noise, noise_scores = resolve_noise(cfg.noise, clips)
    all_w = torch.from_numpy(np.concatenate([c.pose for c in clips]))
    fit, held = holdout_split(clips, cfg.holdout, cfg.loop.seed)
    windows = pose_windows(clips, cfg.feature, enc.context_frames)
    ckpt_dir = Path(out_dir) / "checkpoints" / "pose"

    def fresh() -> AudioPose:
        torch.manual_seed(cfg.loop.seed)
        m = AudioPose(enc, a2m.pose)
        m.flow.fit_normalization(all_w, noise)
        return m

    def make_step(model: AudioPose, train_clips: Sequence[ClipData],
                  best: _BestState | None = None) -> Callable[[int], dict[str, torch.Tensor]]:
        length = min(cfg.seq_len, min(len(c) for c in train_clips))

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            extra = {}
            if best is not None and step % cfg.eval_every == 0:   # weights before this update
                nll, ratio = heldout_scores(model, fit, held, windows, cfg)
                best.offer(step, nll, ratio, model)
                extra = {"_heldout_nll": torch.tensor(nll), "_heldout_jitter_ratio": torch.tensor(ratio)}
            w, x = _crops(train_clips, windows, cfg.loop.batch, length, step_rng(cfg.loop.seed, step))
            fa = model.features(x)
            terms = pose_losses(model.flow, w, fa)
            if noise > 0:
                g = step_generator(cfg.loop.seed, step, 2)
                noisy = w + noise * model.flow.std * torch.randn(w.shape, generator=g)
                terms["mle"] = mle_loss(model.flow, noisy, fa)
            return {"mle": cfg.mle_weight * terms["mle"], "rec": cfg.rec_weight * terms["rec"],
                    "tem": cfg.tem_weight * terms["tem"], **extra}
        return step_fn

    model = fresh()
    best = (_BestState(ckpt_dir / "best.pt", Checkpoints(ckpt_dir, fingerprint, max_step=cfg.loop.steps),
                       cfg.jitter_ratio) if held else None)
    result = run_loop(model, make_step(model, fit, best), cfg.loop, ckpt_dir, live_dir, stop_after,
                      fingerprint)
    chosen, refit_steps = result.step, 0
    if best is not None:
        complete = result.step == cfg.loop.steps
        best.offer(result.step, *heldout_scores(model, fit, held, windows, cfg), model, persist=complete)
        best.restore(model)
        chosen = best.step
        if cfg.refit and complete and chosen > 0:     # the chosen length, on every train identity
            model = fresh()
            again = run_loop(model, make_step(model, clips), replace(cfg.loop, steps=chosen),
                             ckpt_dir / "refit", None, None, f"{fingerprint}|refit:{chosen}")
            result = replace(result, seconds=result.seconds + again.seconds)
            refit_steps = chosen
    model.eval()
    model.train_info = {"noise": noise, "noise_scores": noise_scores,
                        "heldout_identities": sorted({_group(c) for c in held}),
                        "best_step": chosen, "refit_steps": refit_steps,
                        "best_heldout_nll": best.nll if best else float("nan"),
                        "best_heldout_jitter_ratio": best.ratio if best else float("nan"),
                        "heldout_curve": best.curve if best else []}
    rho = calibrate_pose(model, clips, cfg)
    return model, result, rho


@torch.no_grad()
def heldout_scores(model: AudioPose, fit: Sequence[ClipData], held: Sequence[ClipData],
                   windows: dict[str, torch.Tensor], cfg: PoseTrainConfig,
                   max_fit_clips: int = 8) -> tuple[float, float]:
    """(NLL per frame, sample jitter / ground-truth jitter) of the held-out clips.

    For the jitter, the sampling latent is fitted to at most ``max_fit_clips`` of the
    ``fit`` clips spread over the list (the module's rho / shared / white buffers are left as they
    were); one sample per held-out clip, seeded.
    """
    flow = model.flow
    picks = np.unique(np.linspace(0, len(fit) - 1, min(max_fit_clips, len(fit))).round().astype(int))
    fit = [fit[i] for i in picks]
    feats = {c.clip_id: model.features(windows[c.clip_id][None]) for c in (*fit, *held)}
    total = sum(float(flow.log_prob(torch.from_numpy(c.pose)[None], feats[c.clip_id]).sum()) for c in held)
    nll = -total / sum(len(c) for c in held)
    kept = {name: getattr(flow, name).clone() for name in PROCESS_BUFFERS}
    flow.fit_temporal_correlation([torch.from_numpy(c.pose)[None] for c in fit],
                                  [feats[c.clip_id] for c in fit], max_rho=cfg.max_rho,
                                  exp=clip_expressions(fit) if cfg.condition_on_expression else None)
    g = torch.Generator().manual_seed(cfg.loop.seed)
    jit_s = [jitter(flow.sample(feats[c.clip_id], generator=g, exp=clip_expressions([c])))
             for c in held]
    for name, value in kept.items():
        getattr(flow, name).copy_(value)
    jit_g = [jitter(torch.from_numpy(c.pose)[None]) for c in held]
    return nll, float(np.mean(jit_s)) / max(float(np.mean(jit_g)), 1e-12)


@torch.no_grad()
def calibrate_pose(model: AudioPose, clips: Sequence[ClipData], cfg: PoseTrainConfig,
                   max_clips: int = 8) -> float:
    """Fit the latent process (rho, shared a, white e, its axes and, with
    ``cfg.condition_on_expression``, its W^e offset) to all train clips, then cap the jitter.

    The cap (rho only ever raised) holds sampled jitter to ``jitter_ratio`` x the ground
    truth on equal-length crops of at most ``max_clips`` clips spread over the list.
    Returns max(rho).
    """
    windows = pose_windows(clips, cfg.feature, model.encoder.cfg.context_frames)
    model.flow.fit_temporal_correlation([torch.from_numpy(c.pose)[None] for c in clips],
                                        [model.features(windows[c.clip_id][None]) for c in clips],
                                        max_rho=cfg.max_rho,
                                        exp=clip_expressions(clips) if cfg.condition_on_expression else None)
    picks = np.linspace(0, len(clips) - 1, min(max_clips, len(clips))).round().astype(int)
    clips = [clips[i] for i in np.unique(picks)]
    length = min(len(c) for c in clips)
    w = torch.stack([torch.from_numpy(c.pose[:length]) for c in clips])
    fa = model.features(torch.stack([windows[c.clip_id][:length] for c in clips]))
    return model.flow.calibrate_temporal_correlation(w, fa, target_ratio=cfg.jitter_ratio,
                                                     seed=cfg.loop.seed, iters=16, max_rho=cfg.max_rho,
                                                     exp=clip_expressions(clips))
