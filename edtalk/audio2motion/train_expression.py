"""Semantic expression training (§3.3, Eq. 15): E_S + MLP^e_A, E_T frozen.

E_S is the small configuration trained from scratch offline; the transcript embeddings
are precomputed (``data.transcript_embeddings``). L_exp = L1 with Eq. 15's modality
masking; the targets are the per-clip mean W^e.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from edtalk.train.data import step_generator, step_rng
from edtalk.train.resumable import LoopResult

from .config import ExpressionConfig
from .data import ClipData, clip_expressions
from .loop import run_loop
from .params import ExpressionTrainConfig
from .semantic_expression import SemanticExpression, expression_loss


def _crop_waves(waves: Sequence[np.ndarray], idx: np.ndarray, samples: int,
                rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random ``samples``-long crop of each chosen waveform (zero padded) + valid lengths."""
    out = np.zeros((len(idx), samples), np.float32)
    lengths = np.zeros(len(idx), np.int64)
    for i, k in enumerate(idx):
        w = waves[k]
        t = int(rng.integers(max(len(w) - samples, 0) + 1))
        seg = w[t:t + samples]
        out[i, :len(seg)] = seg
        lengths[i] = len(seg)
    return torch.from_numpy(out), torch.from_numpy(lengths)


def train_expression(clips: Sequence[ClipData], waves: Sequence[np.ndarray], text_emb: torch.Tensor,
                     cfg: ExpressionTrainConfig, exp_cfg: ExpressionConfig, out_dir: str | Path,
                     live_dir: str | Path | None = None, stop_after: int | None = None,
                     fingerprint: str = "", sample_rate: int = 16_000
                     ) -> tuple[SemanticExpression, LoopResult]:
    """E_S + MLP^e_A on (waveform crop, transcript embedding) -> per-clip mean W^e."""
    if text_emb.shape != (len(clips), exp_cfg.text_dim):
        raise ValueError(f"text embeddings {tuple(text_emb.shape)} do not match "
                         f"{len(clips)} clips x {exp_cfg.text_dim}")
    torch.manual_seed(cfg.loop.seed)
    model = SemanticExpression(exp_cfg)
    targets = clip_expressions(clips)
    samples = int(round(cfg.crop_seconds * sample_rate))

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = step_rng(cfg.loop.seed, step)
        idx = rng.integers(len(clips), size=cfg.loop.batch)
        wave, lengths = _crop_waves(waves, idx, samples, rng)
        pred, _ = model.training_forward(wave, text_emb[idx], lengths,
                                         generator=step_generator(cfg.loop.seed, step, 1))  # Eq. 15
        return {"exp": expression_loss(targets[idx], pred)}

    result = run_loop(model, step_fn, cfg.loop, Path(out_dir) / "checkpoints" / "expression",
                      live_dir, stop_after, fingerprint)
    return model, result
