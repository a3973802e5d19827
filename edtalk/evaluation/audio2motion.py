"""Held-out checks of the Audio-to-Motion predictors (paper §3.3).

* pose: mean log-likelihood per frame (nats) of held-out W^p under the flow given the
  clip's audio vs under a full-covariance Gaussian fitted to the train W^p (both exact
  6-d densities of W^p in its own units: the flow's includes the log-det of every layer,
  its standardisation S too), and under the flow's Gaussian part alone (S and the
  decorrelating M, ``loglik_flow_base``: what the conditional layers add is the
  difference). The same for whole sequences (``loglik_sequence``: the pose generator's
  exact density of each held-out W^p sequence, flow + its latent process, per frame),
  next to the i.i.d. Gaussian and to that Gaussian with its own fitted latent process
  (``loglik_sequence_gaussian``: what the flow adds over a temporal Gaussian); variance of samples across seeds (per frame and dimension, averaged)
  next to the held-out W^p's own variance; frame-to-frame jitter of samples and of the
  deterministic mean path (temperature 0) vs ground truth.
* expression: nearest per-emotion mean W^e (train clips) of the predicted W^e-hat vs
  the clip's label, for audio+text, audio only and text only (chance 1/8), plus the
  same rule on the ground-truth per-clip mean W^e (the ceiling of this read-out: it is
  only as high as the frozen ELN's weights separate the emotions), and L_exp (L1) of
  each mode next to predicting the train mean; and the same modes rendered through the
  generator and read by the emotion evaluator (``evaluate_expression_rendered``).
* mouth: L^m_fea on held-out frames vs predicting the train mean W^m.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from edtalk import generate as gen
from edtalk.audio2motion.audio_encoder import frame_windows
from edtalk.audio2motion.data import ClipData, clip_expressions
from edtalk.audio2motion.driver import AudioDriver
from edtalk.audio2motion.latent_process import fit_process, process_log_prob
from edtalk.audio2motion.mouth import mouth_feature_loss
from edtalk.audio2motion.pose_flow import PoseFlow, gaussian_nll, jitter
from edtalk.data.schema import EMOTIONS


def nearest_emotion(w: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Index of the closest (Euclidean) per-emotion mean for each row of ``w`` (B, 10)."""
    d = torch.cdist(w.float(), torch.nan_to_num(means.float(), nan=1e6))
    return d.argmin(1)


@torch.no_grad()
def evaluate_pose(driver: AudioDriver, train: Sequence[ClipData], test: Sequence[ClipData],
                  seeds: int = 5, temperature: float = 1.0) -> dict[str, float]:
    model = driver.pose
    flow = model.flow
    ctx = model.encoder.cfg.context_frames
    lls, base, seq, seed_var, jit_s, jit_m, jit_g = [], [], [], [], [], [], []
    for c in test:
        w = torch.from_numpy(c.pose)[None]
        fa = model.features(frame_windows(c.features(driver.pose_feature), ctx)[None])
        exp = clip_expressions([c])         # the offset's covariate (no effect unless fitted with one)
        lls.append(flow.log_prob(w, fa)[0])
        seq.append(float(flow.sequence_log_prob(w, fa, exp)[0]))
        base.append(flow.base_log_prob(w)[0])
        samples = torch.cat([flow.sample(fa, temperature, generator=torch.Generator().manual_seed(s), exp=exp)
                             for s in range(seeds)])                                  # (S, T, 6)
        seed_var.append(samples.var(0).mean())
        jit_s.append(jitter(samples))
        jit_m.append(jitter(flow.sample(fa, 0.0, exp=exp)))
        jit_g.append(jitter(w))
    train_w = torch.from_numpy(np.concatenate([c.pose for c in train]))
    test_w = torch.from_numpy(np.concatenate([c.pose for c in test]))
    ll_flow = float(torch.cat(lls).mean())
    ll_gauss = -gaussian_nll(train_w, test_w)
    ll_seq = sum(seq) / int(test_w.shape[0])
    ll_seq_gauss = temporal_gaussian_loglik(flow, [c.pose for c in train], [c.pose for c in test])
    gt_jitter = max(float(np.mean(jit_g)), 1e-12)
    return {"clips": len(test), "frames": int(test_w.shape[0]),
            "loglik_flow": ll_flow, "loglik_gaussian": ll_gauss,
            "loglik_gain": ll_flow - ll_gauss, "loglik_flow_base": float(torch.cat(base).mean()),
            "loglik_sequence": ll_seq, "loglik_sequence_gain": ll_seq - ll_gauss,
            "loglik_sequence_gaussian": ll_seq_gauss,
            "seed_variance": float(np.mean(seed_var)), "gt_variance": float(test_w.var(0).mean()),
            "jitter_samples": float(np.mean(jit_s)), "jitter_gt": float(np.mean(jit_g)),
            "jitter_ratio": float(np.mean(jit_s)) / gt_jitter,
            "jitter_mean_path": float(np.mean(jit_m)),
            "jitter_ratio_mean_path": float(np.mean(jit_m)) / gt_jitter,
            "rho": float(flow.rho.mean()), "shared": float(flow.shared.mean()),
            # a flow with a W^e offset drew the samples above about each clip's own (true) W^e
            "offset_on_expression": bool(flow.exp_map.abs().sum() > 0),
            "seeds": seeds, "temperature": temperature}


@torch.no_grad()
def temporal_gaussian_loglik(flow: PoseFlow, train: Sequence[np.ndarray], test: Sequence[np.ndarray]) -> float:
    """Per-frame log-likelihood of the ``test`` W^p sequences under the flow's Gaussian part
    (S and M: the train W^p's Gaussian) with a latent process of its own, fitted by
    maximum likelihood to the ``train`` sequences: the temporal baseline without the flow's
    conditional layers."""
    def latents(w: np.ndarray) -> tuple[torch.Tensor, float]:
        z, ld = flow.base_latent(torch.from_numpy(w).to(flow.mean))
        return z.double().cpu(), float(ld) * len(w)

    kernel = flow.cfg.temporal_kernel
    params = fit_process([latents(w)[0] for w in train if len(w) >= 3], kernel)
    total = sum(float(process_log_prob(z, *params, kernel)) + ld for z, ld in map(latents, test))
    return total / sum(len(w) for w in test)


@torch.no_grad()
def evaluate_expression(driver: AudioDriver, test: Sequence[ClipData], waves: Sequence[np.ndarray],
                        text_emb: torch.Tensor, train: Sequence[ClipData] | None = None) -> dict[str, Any]:
    labels = torch.tensor([c.label for c in test])
    means = driver.emotion_means
    out: dict[str, Any] = {"clips": len(test), "chance": 1.0 / len(EMOTIONS)}
    gt = clip_expressions(test)
    modes = {"audio+text": (True, True), "audio": (True, False), "text": (False, True)}
    for name, (use_a, use_t) in modes.items():
        preds = []
        for k, wave in enumerate(waves):
            a = torch.from_numpy(np.asarray(wave, np.float32))[None] if use_a else None
            t = text_emb[k:k + 1] if use_t else None
            preds.append(driver.expression(a, t))
        pred = torch.cat(preds)
        out[f"accuracy_{name}"] = float((nearest_emotion(pred, means) == labels).float().mean())
        out[f"l1_{name}"] = float((pred - gt).abs().mean())
    if train is not None:   # L_exp of always predicting the train clips' mean W^e
        mean = clip_expressions(train).mean(0)
        out["l1_mean_baseline"] = float((mean - gt).abs().mean())
    out["accuracy_gt_weights"] = float((nearest_emotion(gt, means) == labels).float().mean())
    return out


@torch.no_grad()
def evaluate_expression_rendered(model: Any, driver: AudioDriver, test: Sequence[ClipData],
                                 waves: Sequence[np.ndarray], text_emb: torch.Tensor,
                                 identities: Sequence[np.ndarray], classify: Callable[[np.ndarray], int],
                                 n_frames: int = 16) -> dict[str, Any]:
    """Emotion of the predicted W^e-hat *through the generator and the emotion evaluator*.

    Each test clip's identity frame (``identities``) is rendered for ``n_frames`` frames
    with the clip's own ground-truth mouth and pose weights and, per mode, W^e-hat from
    audio+text, audio only or text only; ``classify`` (frames -> class index) reads the
    video's emotion, compared with the clip's label. Two references: the clip's ground-truth
    W^e (what a perfect predictor scores through this generator) and the identity frame's
    own W^e (no expression prediction: what the mouth and pose weights alone carry).
    """
    modes: dict[str, tuple[bool, bool] | str] = {"audio+text": (True, True), "audio": (True, False),
                                                 "text": (False, True), "gt_weights": "gt",
                                                 "identity_own": "own"}
    hits: dict[str, list[bool]] = {m: [] for m in modes}
    for k, (c, wave, identity) in enumerate(zip(test, waves, identities)):
        idx = np.linspace(0, len(c) - 1, n_frames).round().astype(int)
        drive = {"mouth": c.mouth[idx], "pose": c.pose[idx]}
        for name, mode in modes.items():
            if mode == "gt":
                exp = c.exp[idx]
            elif mode == "own":
                exp = None
            else:
                a = torch.from_numpy(np.asarray(wave, np.float32))[None] if mode[0] else None
                t = text_emb[k:k + 1] if mode[1] else None
                exp = driver.expression(a, t).cpu().numpy().repeat(n_frames, axis=0)
            frames = gen.generate(model, identity, exp=exp, n_frames=n_frames, **drive).frames
            hits[name].append(classify(frames) == c.label)
    return {"clips": len(test), "frames": n_frames, "chance": 1.0 / len(EMOTIONS),
            **{f"accuracy_{m}": float(np.mean(h)) for m, h in hits.items()}}


@torch.no_grad()
def evaluate_mouth(driver: AudioDriver, train: Sequence[ClipData], test: Sequence[ClipData]) -> dict[str, float]:
    ctx = driver.mouth.cfg.encoder.context_frames
    true = torch.from_numpy(np.concatenate([c.mouth for c in test]))
    pred = torch.cat([driver.mouth(frame_windows(c.features(driver.mouth_feature), ctx)) for c in test])
    mean = torch.from_numpy(np.concatenate([c.mouth for c in train]).mean(0)).expand_as(true)
    return {"fea_loss": float(mouth_feature_loss(true, pred)),
            "fea_loss_mean_baseline": float(mouth_feature_loss(true, mean)),
            "correlation": float(np.corrcoef(true.flatten().numpy(), pred.flatten().numpy())[0, 1])}
