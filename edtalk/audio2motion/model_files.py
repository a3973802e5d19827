"""The final Audio-to-Motion predictor files (written by the trainers, read by ``driver.AudioDriver``).

Each is one ``weights_only`` torch file: {"format", "kind", "config", "state_dict", **extra},
the configuration stored as plain dicts and lists.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edtalk.data import atomic
from edtalk.data.schema import EMOTIONS

from .audio_pose import AudioPose
from .config import AudioEncoderConfig, ExpressionConfig, MouthConfig, SemanticEncoderConfig
from .mouth import AudioToMouth
from .semantic_expression import SemanticExpression

FORMAT = "edtalk-a2m/1"


def _tuplify(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A (nested) frozen dataclass as a plain dict (lists for tuples): safe for weights_only."""
    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(asdict(cfg)) if is_dataclass(cfg) else plain(cfg)


def mouth_config_from_dict(d: dict[str, Any]) -> MouthConfig:
    rest = {k: v for k, v in d.items() if k != "encoder"}
    return MouthConfig(encoder=AudioEncoderConfig(**_tuplify(d["encoder"])), **rest)


def expression_config_from_dict(d: dict[str, Any]) -> ExpressionConfig:
    rest = {k: v for k, v in d.items() if k != "semantic"}
    return ExpressionConfig(semantic=SemanticEncoderConfig(**_tuplify(d["semantic"])), **rest)


def save_model(path: str | Path, kind: str, module: nn.Module, config: dict[str, Any],
               **extra: Any) -> None:
    """Atomically write a final predictor: {"format", "kind", "config", "state_dict", **extra}."""
    with atomic.atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "kind": kind, "config": config,
                    "state_dict": module.state_dict(), **extra}, tmp)


def load_model_file(path: str | Path, kind: str) -> dict[str, Any]:
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT or obj.get("kind") != kind:
        raise ValueError(f"{path} is not an Audio-to-Motion {kind!r} file ({FORMAT})")
    return obj


def save_mouth(path: str | Path, net: AudioToMouth, feature: str, **extra: Any) -> None:
    save_model(path, "mouth", net, config_to_dict(net.cfg), feature=feature, **extra)


def save_pose(path: str | Path, model: AudioPose, feature: str, **extra: Any) -> None:
    cfg = {"encoder": config_to_dict(model.encoder.cfg), "flow": config_to_dict(model.flow.cfg)}
    save_model(path, "pose", model, cfg, feature=feature, rho=model.flow.rho.clone(), **extra)


def save_expression(path: str | Path, model: SemanticExpression, means: torch.Tensor,
                    text_backend: str, **extra: Any) -> None:
    save_model(path, "expression", model, config_to_dict(model.cfg), emotion_means=means,
               emotions=list(EMOTIONS), text_backend=text_backend, **extra)
