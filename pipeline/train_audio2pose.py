"""DVC stage `train_audio2pose`: flow-based probabilistic pose phi_p (paper §3.3, Eqs. 13-14).

Trains E_a + phi_p on the cached W^p sequences with L_MLE + L^p_rec + L_tem. The flow
starts as the (shrunk) Gaussian of the train W^p; the dequantisation noise is chosen by
leave-one-identity-out likelihood (``noise: auto``), and early stopping keeps the state
with the best NLL on held-out *train* identities among those whose held-out sample jitter
is within the ground truth's. The sampling latent (shared offset + smooth motion) is then
fitted to the train sequences. Writes
``models/audio2motion/pose.pt``, checkpoints under ``models/audio2motion/checkpoints/pose``
and DVCLive curves under ``dvclive/train_audio2pose``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from prefect import flow

from edtalk.audio2motion import a2m_config
from edtalk.audio2motion.data import load_clips
from edtalk.audio2motion.model_files import save_pose
from edtalk.audio2motion.params import pose_train_config
from edtalk.audio2motion.train_pose import train_pose
from edtalk.data.resume import file_key, fingerprint
from edtalk.params import profile_name, section
from edtalk.train.resumable import run_config
from pipeline.a2m_common import summarize
from pipeline.artifacts import dvclive_history, publish_loss_curve
from pipeline.common import main_with_params

STAGE = "train_audio2pose"


@flow(name=STAGE)
def train_audio2pose(params: dict[str, Any], features_dir: str = "data/features",
                     weights: str = "data/weights/weights.parquet", out_dir: str = "models/audio2motion",
                     live_dir: str = f"dvclive/{STAGE}") -> dict[str, Any]:
    profile = profile_name(params)
    a2m_params = section(params, "audio2motion")
    torch.set_num_threads(int(a2m_params["threads"]))
    cfg = pose_train_config(a2m_params, int(params["base"]["seed"]))
    clips = load_clips(features_dir, weights, ("train",))
    key = fingerprint(run_config(cfg), profile, file_key(weights))
    model, result, rho = train_pose(clips, cfg, a2m_config(profile), out_dir, live_dir, fingerprint=key)
    save_pose(Path(out_dir) / "pose.pt", model, cfg.feature)
    info = model.train_info
    summary = summarize(STAGE, result, clips=len(clips), rho=round(rho, 4),
                        shared=round(float(model.flow.shared.mean()), 4), noise=info["noise"],
                        heldout_identities=info["heldout_identities"], best_step=info["best_step"],
                        refit_steps=info["refit_steps"],
                        best_heldout_nll=round(info["best_heldout_nll"], 4),
                        best_heldout_jitter_ratio=round(info["best_heldout_jitter_ratio"], 4))
    publish_loss_curve(STAGE, dvclive_history(live_dir), f"step {result.step}, best step {info['best_step']}")
    return summary


def main() -> None:
    main_with_params(train_audio2pose, __doc__)


if __name__ == "__main__":
    main()
