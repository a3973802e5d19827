"""Typed per-stage training configuration, read from ``params.yaml``'s ``train`` section.

One config per stage (as Hallo does): the seed, the model profile, the step budget,
the optimiser, where checkpoints go, and the loss weights. A stage differs from another
only in its name (which picks the trained groups and the losses, see ``stages.py``) and
in these numbers. ``train.profiles.<profile>.<stage>`` overrides the per-stage values for
a model profile (e.g. the larger batches of ``paper``), applied by ``edtalk.params``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from edtalk.params import profile_name, section

STAGES = ("autoencoder", "mouth_pose", "expression")


@dataclass(frozen=True)
class LossWeights:
    """Paper §4.1: L_mot weighs 10, every other term 1."""
    rec: float = 1.0      # Eq. 5, L1
    per: float = 1.0      # Eq. 5, perceptual
    adv: float = 1.0      # Eq. 6, non-saturating
    self: float = 1.0     # L_self (self-reconstruction, mouth-pose stage)
    fea: float = 1.0      # Eq. 7
    mot: float = 10.0     # Eq. 9
    mc: float = 1.0       # Eq. 10
    mouth: float = 0.0    # not in the paper: L1 over the mouth box of each mouth-pose reconstruction
                          # (the mouth is ~5 % of a 64 px crop, so the whole-image L1 barely sees it)
    face: float = 0.0     # not in the paper: L1 over the boxes of brows + eyes and of the mouth
                          # (the regions the emotions move; autoencoder stage)


@dataclass(frozen=True)
class PerceptualConfig:
    network: str = "auto"     # auto | imagenet_vgg19 | random_vgg19 | image_gradients
    norm: str = "l1"          # l1 (official release) | l2 (paper's Eq. 5)
    scales: int = 4           # image pyramid levels (official: 4)
    slice_weight: float = 10.0  # weight of each Phi slice (official: 10)


@dataclass(frozen=True)
class StageConfig:
    stage: str
    seed: int = 0
    profile: str = "tiny"
    steps: int = 100
    batch: int = 8                     # combined batch (all DDP ranks together)
    lr: float = 2e-3                   # Adam, official 0.002
    d_lr: float = 2e-3
    betas: tuple[float, float] = (0.0, 0.99)   # official (0, 0.99); the paper says only "Adam"
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    log_every: int = 1
    weights: LossWeights = field(default_factory=LossWeights)
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    train_discriminator: bool = True
    threads: int | None = 1            # torch CPU threads (1: no OpenMP spin under a shared CPU)
    device: str = "auto"               # auto (CUDA when available, else CPU) | cpu | cuda | cuda:N
    # stage specifics
    identity_copy_init: bool = True    # fresh E and G start at the still identity (stages.identity_copy_start)
    pairs: str = "clip"                # autoencoder: identity/driving frames from one clip | one identity
    source_affine: float = 0.0         # autoencoder: random similarity warp of the identity frame
    pretrained: str | None = None      # a file to start from instead of the previous stage's model
                                       # (autoencoder: official EDTalk.pt or ours, loaded as it is;
                                       # mouth_pose, expression: ours, scripts/pretrain_stage.py)
    finetune_steps: int = 0            # steps trained on the pretrained file (0: take it as the stage's result)
    emotions: tuple[str, ...] | None = None   # train on clips of these emotions only (None = all):
                                       # the paper's mouth-pose stage sees HDTF alone (§4.1)
    restart_navigation: bool = False   # mouth_pose: fresh MLN, PLN, trunk on the loaded E, G
    mouth_margin: int = 3              # mouth_pose: pixels around landmarks 48-67
    mouth_region: str = "lips"         # mouth_pose: what the swap moves, lips | lips_chin (data.MOUTH_REGIONS)
    mouth_feather: int = 2             # mouth_pose: soft edge width of the pasted mouth
    window: int = 5                    # expression: K frames averaged for f^{r->e}
    neutral_start: bool = True         # expression: W^e = 0 and EEM = identity at the start
    emotion_checkpoint: str | None = None   # expression: psi of L_mot when present
    aux_steps: int = 150               # expression: steps of the in-stage landmark/emotion net
    mouth_gain: float | str = 1.0      # expression: gain on W^m's motion stored with the model
                                       # (1 = the paper); "calibrate" = measured on train clips
    gain_split: str = "val"            # expression: split of the calibration clips (train if empty)
    gain_clips: int = 8                # expression: clips the calibration renders
    val_frames: int = 64               # frames of the val split for the quality summary
    model_overrides: dict[str, Any] = field(default_factory=dict)  # EDTalkConfig fields (tests)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"unknown training stage {self.stage!r}; choose from {STAGES}")
        if self.perceptual.norm not in ("l1", "l2"):
            raise ValueError(f"perceptual norm must be l1 or l2, got {self.perceptual.norm!r}")
        if self.mouth_gain != "calibrate" and not (isinstance(self.mouth_gain, (int, float))
                                                  and self.mouth_gain > 0):
            raise ValueError(f"mouth_gain must be 'calibrate' or a number > 0, got {self.mouth_gain!r}")
        if self.steps < 0 or self.batch < 1 or self.checkpoint_every < 1:
            raise ValueError("steps >= 0, batch >= 1 and checkpoint_every >= 1 are required")


def _typed(cls: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise KeyError(f"unknown {cls.__name__} keys {sorted(unknown)}")
    return cls(**d)


def stage_config(params: dict[str, Any], stage: str, **overrides: Any) -> StageConfig:
    """The typed config of one stage: the ``train`` section resolved for ``base.profile``
    (``edtalk.params.section``), its shared keys, then ``train.<stage>``, then ``overrides``
    (for tests)."""
    train = section(params, "train")
    shared = {k: v for k, v in train.items() if k not in STAGES}
    merged: dict[str, Any] = {}
    for layer in (shared, train.get(stage, {}), overrides):
        for key, value in (layer or {}).items():   # nested sections (weights, perceptual) merge
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    merged["weights"] = _typed(LossWeights, dict(merged.get("weights", {})))
    merged["perceptual"] = _typed(PerceptualConfig, dict(merged.get("perceptual", {})))
    if merged.get("emotions") is not None:
        merged["emotions"] = tuple(str(e) for e in merged["emotions"])
    if "betas" in merged:
        merged["betas"] = tuple(float(b) for b in merged["betas"])
    for key in ("lr", "d_lr"):
        if key in merged:
            merged[key] = float(merged[key])
    merged.setdefault("seed", int(params.get("base", {}).get("seed", 0)))
    merged.setdefault("profile", profile_name(params))
    return _typed(StageConfig, {"stage": stage, **merged})
