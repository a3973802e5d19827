"""Semantically-aware expression generation (§3.3, Eq. 15).

    W^e-hat = MLP^e_A( [ M?(E_S(a)) ; M?(E_T(T)) ] )

E_S (``semantic_encoder.SemanticEncoder``, HuBERT-style, trainable transformer) embeds
the utterance's waveform; E_T (``text_encoder.TextEncoder``, frozen) its transcript.
Modality masking M (Eq. 15): per training sample draw p ~ U(0, 1);
p >= 0.5 keeps both embeddings, 0.25 <= p < 0.5 masks the audio embedding, p < 0.25 masks
the text embedding. Masking *replaces* the embedding by a learned mask token of the same
size (initialised to zeros, so at the start masking equals zeroing); at inference a
missing modality (``None``) is replaced by the same token, so audio-only and text-only
prediction use exactly the state seen in training. Loss: L_exp = ||W^e - W^e-hat||_1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ExpressionConfig
from .semantic_encoder import SemanticEncoder
from .text_encoder import TextEncoder

BOTH, MASK_AUDIO, MASK_TEXT = 0, 1, 2
BRANCH_NAMES = {BOTH: "audio+text", MASK_AUDIO: "text only (audio masked)",
                MASK_TEXT: "audio only (text masked)"}


def modality_branch(p: torch.Tensor, p_both: float = 0.5, p_mask_audio: float = 0.25) -> torch.Tensor:
    """Eq. 15's case split for draws p in [0, 1]: BOTH, MASK_AUDIO or MASK_TEXT (long tensor).

    >>> modality_branch(torch.tensor([0.9, 0.5, 0.3, 0.25, 0.1])).tolist()
    [0, 0, 1, 1, 2]
    """
    lower = p_both - p_mask_audio                     # 0.25 for the paper's thresholds
    return torch.where(p >= p_both, BOTH, torch.where(p >= lower, MASK_AUDIO, MASK_TEXT)).long()


def sample_branches(n: int, generator: torch.Generator | None = None,
                    p_both: float = 0.5, p_mask_audio: float = 0.25) -> torch.Tensor:
    """One Eq. 15 branch per sample: p ~ U(0, 1), then ``modality_branch``."""
    return modality_branch(torch.rand(n, generator=generator), p_both, p_mask_audio)


class ExpressionHead(nn.Module):
    """MLP^e_A with the modality mask tokens: (audio emb, text emb) -> W^e-hat (B, 10)."""

    def __init__(self, audio_dim: int, cfg: ExpressionConfig = ExpressionConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.audio_dim, self.text_dim = audio_dim, cfg.text_dim
        self.audio_mask = nn.Parameter(torch.zeros(audio_dim))       # learned M(E_S(a))
        self.text_mask = nn.Parameter(torch.zeros(cfg.text_dim))     # learned M(E_T(T))
        self.mlp = nn.Sequential(nn.Linear(audio_dim + cfg.text_dim, cfg.hidden), nn.GELU(),
                                 nn.Linear(cfg.hidden, cfg.hidden), nn.GELU(),
                                 nn.Linear(cfg.hidden, cfg.n_weights))

    def forward(self, audio_emb: torch.Tensor | None, text_emb: torch.Tensor | None,
                branch: torch.Tensor | None = None) -> torch.Tensor:
        """W^e-hat. ``None`` for a modality masks it; ``branch`` (B,) applies Eq. 15 per sample."""
        if audio_emb is None and text_emb is None:
            raise ValueError("need at least one of the audio and text embeddings")
        ref = audio_emb if audio_emb is not None else text_emb
        b = ref.shape[0]
        if audio_emb is None:
            audio_emb = self.audio_mask.expand(b, -1)
        if text_emb is None:
            text_emb = self.text_mask.expand(b, -1)
        if audio_emb.shape != (b, self.audio_dim) or text_emb.shape != (b, self.text_dim):
            raise ValueError(f"expected ({b}, {self.audio_dim}) audio and ({b}, {self.text_dim}) "
                             f"text embeddings, got {tuple(audio_emb.shape)}, {tuple(text_emb.shape)}")
        if branch is not None:                                           # Eq. 15
            audio_emb = torch.where((branch == MASK_AUDIO)[:, None], self.audio_mask, audio_emb)
            text_emb = torch.where((branch == MASK_TEXT)[:, None], self.text_mask, text_emb)
        return self.mlp(torch.cat([audio_emb, text_emb], dim=1))


class SemanticExpression(nn.Module):
    """E_S + MLP^e_A; E_T stays outside (frozen, text embeddings are precomputed/cached).

    ``normalize_audio`` standardises each waveform (zero mean, unit variance) before E_S;
    keep it True for the scratch model, False for fairseq HuBERT-base weights (trained on
    raw waveforms).
    """

    def __init__(self, cfg: ExpressionConfig = ExpressionConfig(),
                 semantic: SemanticEncoder | None = None, normalize_audio: bool = True) -> None:
        super().__init__()
        self.cfg = cfg
        self.semantic = semantic if semantic is not None else SemanticEncoder(cfg.semantic)  # E_S
        self.head = ExpressionHead(self.semantic.out_dim, cfg)                                # MLP^e_A
        self.normalize_audio = normalize_audio

    def embed_audio(self, wave: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """E_S(a) for (B, samples) 16 kHz waveforms (``lengths`` = valid samples per row)."""
        if self.normalize_audio:
            if lengths is None:
                wave = (wave - wave.mean(1, keepdim=True)) / wave.std(1, keepdim=True).clamp(min=1e-5)
            else:
                valid = (torch.arange(wave.shape[1], device=wave.device)[None] < lengths[:, None]).float()
                n = valid.sum(1, keepdim=True).clamp(min=1.0)
                mean = (wave * valid).sum(1, keepdim=True) / n
                var = ((wave - mean).pow(2) * valid).sum(1, keepdim=True) / n
                wave = (wave - mean) / var.sqrt().clamp(min=1e-5) * valid
        return self.semantic(wave, lengths)

    def forward(self, wave: torch.Tensor | None, text_emb: torch.Tensor | None,
                lengths: torch.Tensor | None = None, branch: torch.Tensor | None = None) -> torch.Tensor:
        """W^e-hat (B, 10) from audio and/or text; ``branch`` applies Eq. 15 masking."""
        audio_emb = None if wave is None else self.embed_audio(wave, lengths)
        return self.head(audio_emb, text_emb, branch)

    def training_forward(self, wave: torch.Tensor, text_emb: torch.Tensor,
                         lengths: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass with Eq. 15's random masking; returns (W^e-hat, branches)."""
        branch = sample_branches(wave.shape[0], generator, self.cfg.p_both, self.cfg.p_mask_audio)
        return self.forward(wave, text_emb, lengths, branch.to(wave.device)), branch

    @torch.no_grad()
    def predict(self, wave: torch.Tensor | None = None, text: list[str] | None = None,
                text_encoder: TextEncoder | None = None, text_emb: torch.Tensor | None = None,
                lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Inference from audio and/or text (either alone works): W^e-hat (B, 10)."""
        if text is not None and text_emb is None:
            text_emb = (text_encoder or TextEncoder()).encode(text)
        return self.forward(wave, text_emb, lengths)


def expression_loss(w_true: torch.Tensor, w_pred: torch.Tensor) -> torch.Tensor:
    """L_exp = ||W^e - W^e-hat||_1 (§3.3), mean absolute error over weights and samples."""
    if w_true.shape != w_pred.shape:
        raise ValueError(f"shape mismatch {tuple(w_true.shape)} vs {tuple(w_pred.shape)}")
    return F.l1_loss(w_pred, w_true)
