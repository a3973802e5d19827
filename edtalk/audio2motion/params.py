"""The Audio-to-Motion training configurations, read from params.yaml's ``audio2motion`` section.

The ``*_train_config`` functions turn the section, resolved for ``base.profile`` by
``edtalk.params.section``, into the typed configurations the trainers (``train_mouth``,
``train_pose``, ``train_expression``) take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoopConfig:
    steps: int = 200
    batch: int = 32
    lr: float = 1e-3
    seed: int = 0
    checkpoint_every: int = 50
    keep_checkpoints: int = 2
    log_every: int = 10


@dataclass(frozen=True)
class MouthTrainConfig:
    loop: LoopConfig = field(default_factory=LoopConfig)
    feature: str = "mfcc"            # mfcc (13 per step) | mel (80 per step)
    fea_weight: float = 1.0          # Eq. 11, L^m_fea
    rec_weight: float = 1.0          # Eq. 11, L^m_rec (generated frames)
    sync_weight: float = 0.1         # Eq. 12, L^m_sync (needs a SyncNet)
    rec_clips: int = 1               # 5-frame windows rendered per step for L_rec / L_sync
    rec_every: int = 1               # render every n-th step only (CPU cost)


@dataclass(frozen=True)
class PoseTrainConfig:
    loop: LoopConfig = field(default_factory=LoopConfig)
    feature: str = "mfcc"
    seq_len: int = 32                # frames per training crop
    mle_weight: float = 1.0          # Eq. 13
    rec_weight: float = 1.0          # Eq. 14, L^p_rec
    tem_weight: float = 1.0          # Eq. 14, L_tem
    jitter_ratio: float = 1.0        # cap: sampled jitter <= jitter_ratio x ground truth (train)
    max_rho: float = 0.9999          # upper end of the latent's lag-1 correlation
    noise: float | str = 0.0         # Gaussian dequantisation noise on W^p (x per-dim train std)
                                     # in L_MLE; the flow's Gaussian S is shrunk to match.
                                     # "auto": leave-one-identity-out choice from NOISE_GRID
    holdout: float = 0.25            # fraction of train identities kept out of the updates and
                                     # used for early stopping (0 = off, train on all)
    eval_every: int = 10             # held-out NLL + jitter every n steps; the best state is kept
    refit: bool = True               # then train afresh on all train clips for the chosen steps
    condition_on_expression: bool = False   # regress each clip's latent offset on its W^e
                                     # (PoseFlow); not in the paper: where PLN carries expression


@dataclass(frozen=True)
class ExpressionTrainConfig:
    loop: LoopConfig = field(default_factory=LoopConfig)
    crop_seconds: float = 2.0        # random waveform crop per sample (augmentation + speed)


def _loop(section: dict[str, Any], part: dict[str, Any], seed: int) -> LoopConfig:
    return LoopConfig(steps=int(part["steps"]), batch=int(part["batch"]), lr=float(part["lr"]),
                      seed=seed, checkpoint_every=int(part.get("checkpoint_every", section["checkpoint_every"])),
                      keep_checkpoints=int(section["keep_checkpoints"]),
                      log_every=int(section["log_every"]))


def mouth_train_config(section: dict[str, Any], seed: int) -> MouthTrainConfig:
    m = section["mouth"]
    return MouthTrainConfig(loop=_loop(section, m, seed), feature=m["feature"],
                            fea_weight=float(m["fea_weight"]), rec_weight=float(m["rec_weight"]),
                            sync_weight=float(m["sync_weight"]), rec_clips=int(m["rec_clips"]),
                            rec_every=int(m["rec_every"]))


def pose_train_config(section: dict[str, Any], seed: int) -> PoseTrainConfig:
    p = section["pose"]
    return PoseTrainConfig(loop=_loop(section, p, seed), feature=p["feature"], seq_len=int(p["seq_len"]),
                           mle_weight=float(p["mle_weight"]), rec_weight=float(p["rec_weight"]),
                           tem_weight=float(p["tem_weight"]), jitter_ratio=float(p["jitter_ratio"]),
                           noise=_noise_param(p.get("noise", 0.0)), max_rho=float(p.get("max_rho", 0.9999)),
                           holdout=float(p.get("holdout", 0.25)), eval_every=int(p.get("eval_every", 10)),
                           refit=bool(p.get("refit", True)),
                           condition_on_expression=bool(p.get("condition_on_expression", False)))


def _noise_param(v: Any) -> float | str:
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    return float(v)


def expression_train_config(section: dict[str, Any], seed: int) -> ExpressionTrainConfig:
    e = section["expression"]
    return ExpressionTrainConfig(loop=_loop(section, e, seed), crop_seconds=float(e["crop_seconds"]))
