"""DVC stage `train_audio2exp`: semantically-aware expression (paper §3.3, Eq. 15).

E_S (a small HuBERT-style configuration trained here; no HuBERT offline) + frozen E_T
(EmoBERTa when registered, else the bundled MiniLM) -> MLP^e_A, L_exp with Eq. 15's
modality masking, targets the per-clip mean W^e. Transcript embeddings of every clip
are cached in ``models/audio2motion/text_embeddings.npz``. Writes
``models/audio2motion/expression.pt`` (with the per-emotion mean W^e of the train clips),
checkpoints under ``models/audio2motion/checkpoints/expression`` and DVCLive curves
under ``dvclive/train_audio2exp``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from prefect import flow

from edtalk.audio2motion import TextEncoder, a2m_config
from edtalk.audio2motion.data import emotion_means, load_clips, transcript_embeddings
from edtalk.audio2motion.model_files import save_expression
from edtalk.audio2motion.params import expression_train_config
from edtalk.audio2motion.train_expression import train_expression
from edtalk.data.resume import file_key, fingerprint
from edtalk.params import profile_name, section
from edtalk.train.resumable import run_config
from pipeline.a2m_common import clip_waves, summarize
from pipeline.artifacts import dvclive_history, publish_loss_curve
from pipeline.common import main_with_params

STAGE = "train_audio2exp"


def text_embeddings(features_dir: str, backend: str, cache: Path) -> tuple[dict[str, torch.Tensor], str]:
    """E_T of every clip's transcript (all splits), cached; returns (clip -> embedding, backend)."""
    import pandas as pd

    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet", columns=["clip_id", "transcript"])
    encoder = TextEncoder(backend)
    texts = [t or "" for t in manifest["transcript"]]
    emb = transcript_embeddings(texts, encoder.encode, encoder.backend, cache)
    return dict(zip(manifest["clip_id"], emb)), encoder.backend


@flow(name=STAGE)
def train_audio2exp(params: dict[str, Any], features_dir: str = "data/features", crop_dir: str = "data/crop",
                    weights: str = "data/weights/weights.parquet", out_dir: str = "models/audio2motion",
                    live_dir: str = f"dvclive/{STAGE}") -> dict[str, Any]:
    profile = profile_name(params)
    a2m_params = section(params, "audio2motion")
    torch.set_num_threads(int(a2m_params["threads"]))
    cfg = expression_train_config(a2m_params, int(params["base"]["seed"]))
    clips = load_clips(features_dir, weights, ("train",), crop_dir)
    table, backend = text_embeddings(features_dir, a2m_params["expression"]["text_backend"],
                                     Path(out_dir) / "text_embeddings.npz")
    exp_cfg = a2m_config(profile).expression
    if backend == "minilm" and exp_cfg.text_dim != 384:
        exp_cfg = replace(exp_cfg, text_dim=384)
    text = torch.stack([table[c.clip_id] for c in clips])
    key = fingerprint(run_config(cfg), profile, file_key(weights), backend)
    model, result = train_expression(clips, clip_waves(clips), text, cfg, exp_cfg, out_dir, live_dir,
                                     fingerprint=key)
    save_expression(Path(out_dir) / "expression.pt", model, emotion_means(clips), backend)
    summary = summarize(STAGE, result, clips=len(clips), text_backend=backend)
    publish_loss_curve(STAGE, dvclive_history(live_dir), f"step {result.step}")
    return summary


def main() -> None:
    main_with_params(train_audio2exp, __doc__)


if __name__ == "__main__":
    main()
