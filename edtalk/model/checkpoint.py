"""Checkpoints: the released ``EDTalk.pt`` / ``EDTalk_lip_pose.pt`` and our own.

Official files are dicts whose ``"gen"`` entry is the generator state dict; ours add
``"format"`` and ``"config"`` (a plain dict) and may carry more entries (optimiser,
step, discriminator). Everything is read with ``torch.load(weights_only=True)`` and
checked key by key and shape by shape before any tensor is copied; a mismatch is
refused with the first differing keys. Writes are atomic (temp file + rename).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from edtalk.data.atomic import write_bytes

from .config import EDTalkConfig, profile
from .edtalk import EDTalk

FORMAT = "edtalk-repro/1"
OFFICIAL_KEY = "gen"


class CheckpointMismatch(ValueError):
    """The state dict does not have the layout the model expects."""


def layout_differences(expected: dict[str, torch.Tensor], found: dict[str, Any]) -> list[str]:
    """Human-readable differences, in the expected key order, then unexpected keys."""
    diffs = []
    for k, v in expected.items():
        if k not in found:
            diffs.append(f"missing key {k!r} (expected shape {tuple(v.shape)})")
        elif not isinstance(found[k], torch.Tensor):
            diffs.append(f"key {k!r} is a {type(found[k]).__name__}, not a tensor")
        elif tuple(found[k].shape) != tuple(v.shape):
            diffs.append(f"shape of {k!r}: expected {tuple(v.shape)}, found {tuple(found[k].shape)}")
    diffs += [f"unexpected key {k!r} (shape {tuple(getattr(found[k], 'shape', ()))})"
              for k in found if k not in expected]
    return diffs


def check_layout(model: torch.nn.Module, state: dict[str, Any], source: str = "state dict", show: int = 5) -> None:
    diffs = layout_differences(model.state_dict(), state)
    if diffs:
        more = f" (and {len(diffs) - show} more)" if len(diffs) > show else ""
        raise CheckpointMismatch(f"{source} does not match the model layout; first differences: "
                                 + "; ".join(diffs[:show]) + more)


def official_config(state: dict[str, Any]) -> EDTalkConfig:
    """The configuration a released state dict was built with (paper shapes, EEM or not)."""
    return profile("paper", with_expression="direction_exp.weight" in state)


def _read(path: str | os.PathLike) -> dict[str, Any]:
    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise CheckpointMismatch(f"{path}: expected a dict, found {type(obj).__name__}")
    return obj


def load_state(model: EDTalk, state: dict[str, Any], source: str = "state dict") -> EDTalk:
    check_layout(model, state, source)
    model.load_state_dict(state, strict=True)
    return model


def load_official(path: str | os.PathLike, model: EDTalk | None = None) -> EDTalk:
    """Load a released ``EDTalk.pt`` or ``EDTalk_lip_pose.pt`` ({"gen": state_dict})."""
    obj = _read(path)
    state = obj.get(OFFICIAL_KEY, obj)
    model = EDTalk(official_config(state)) if model is None else model
    return load_state(model, state, str(path))


def save_checkpoint(path: str | os.PathLike, model: EDTalk, **extra: Any) -> None:
    """Atomically write {"format", "config", "gen": state_dict, **extra}.

    Serialised in memory first: saved to a path, the zip archive is named after the
    temporary file, so the same weights would give other bytes and DVC would re-run every
    stage downstream of an unchanged model."""
    payload = {"format": FORMAT, "config": model.cfg.to_dict(), OFFICIAL_KEY: model.state_dict(), **extra}
    buf = io.BytesIO()
    torch.save(payload, buf)
    write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, model: EDTalk | None = None) -> tuple[EDTalk, dict[str, Any]]:
    """Load ours or an official file; returns the model and the remaining entries."""
    obj = _read(path)
    if OFFICIAL_KEY not in obj:
        raise CheckpointMismatch(f"{path}: no {OFFICIAL_KEY!r} entry; keys are {sorted(obj)[:10]}")
    state = obj[OFFICIAL_KEY]
    if model is None:
        cfg = EDTalkConfig.from_dict(obj["config"]) if "config" in obj else official_config(state)
        model = EDTalk(cfg)
    load_state(model, state, str(path))
    return model, {k: v for k, v in obj.items() if k not in (OFFICIAL_KEY,)}


def random_state_from_layout(layout: list[dict[str, Any]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with random values from a key/shape list such as the reference JSON's
    ``state_dict`` entries ({"key", "shape", "dtype"}); fixed blur kernels stay fixed."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for e in layout:
        shape = tuple(e["shape"])
        if e["key"].endswith(".kernel") and shape == (4, 4):
            t = torch.tensor([1.0, 3.0, 3.0, 1.0])
            k = t[:, None] * t[None, :] / 64
            out[e["key"]] = k * (4 if (".upsample." in e["key"] or ".blur." in e["key"]) else 1)
        else:
            out[e["key"]] = torch.randn(shape, generator=g, dtype=getattr(torch, e.get("dtype", "float32")))
    return out
