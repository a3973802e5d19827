"""Generation: one identity image driven per factor by videos and/or predicted weights.

A *source* for a factor (``mouth``, ``pose``, ``exp``) is either

* driving frames, RGB uint8 (T, H, W, 3) at the model's size (other sizes are resized), or
* navigation weights over that factor's bank, float (T, n) -- e.g. from the audio
  models (EDTalk-A) or from a previous run;

``None`` keeps the identity's own factor: the weights the navigation heads give for
the identity image itself (so an all-``None`` call reproduces the identity's own
reconstruction).

Work is split in two passes that mirror the fast inference path
(:mod:`edtalk.model.inference`): :func:`factor_weights` encodes every distinct driving
video once per frame (passing the *same array* for several factors costs one encoder
pass per frame, batched), and :func:`render_weights` decodes frames in batches from the
identity encoded once (latent, skips, EEM statistics cached).

Unequal lengths: the output has ``n_frames`` frames when given (the audio's length in
the CLI and the pipeline), else the longest source's. A shorter source either holds its
last frame (``fit="hold"``, the default: a still tail instead of a jump) or starts over
(``fit="loop"``). Weights follow the same rule.

Mouth gain: a model file may carry ``mouth_gain`` g (our expression stage calibrates it,
``edtalk.train.mouth_gain``); :func:`load_model` keeps it as ``model.mouth_gain`` and
:func:`generate` renders W^m's motion over the clip scaled by g (:func:`scale_motion`).
Files without one, and models built in memory, render at g = 1 (the paper).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import cv2
import numpy as np
import torch

from edtalk.data import media
from edtalk.data.schema import FPS, SAMPLES_PER_FRAME
from edtalk.model import EDTalk, Identity, prepare_identity
from edtalk.weights import MissingModel

FACTORS: tuple[str, ...] = ("mouth", "pose", "exp")
Fit = Literal["hold", "loop"]
Source = np.ndarray  # frames (T,H,W,3) uint8 or weights (T,n) float


class MotionPredictor(Protocol):
    """What EDTalk-A needs from the audio models (``edtalk.audio2motion.driver.AudioDriver``,
    loaded by ``edtalk.audio2motion.driver.load_audio_driver``)."""

    def predict(self, audio: np.ndarray, n_frames: int, transcript: str | None = None,
                pose_seed: int | None = 0, temperature: float = 1.0,
                emotion: str | None = None) -> dict[str, np.ndarray]: ...


# --- loading ---------------------------------------------------------------------------

DEFAULT_CHECKPOINT = "models/train_expression/model.pt"
DEFAULT_AUDIO_MODELS = "models/audio2motion"   # what the audio2motion stages write


def load_model(path: str | Path = DEFAULT_CHECKPOINT) -> EDTalk:
    """Ours (``save_checkpoint``) or a released ``EDTalk.pt`` / ``EDTalk_lip_pose.pt``, in eval mode."""
    from edtalk.model import load_checkpoint

    path = Path(path)
    if not path.is_file():
        folder = path.parent.name if path.parent.name.startswith("train_") else "train_expression"
        stage = "train@" + folder.removeprefix("train_")      # dvc.yaml's foreach over the EDTalk stages
        raise MissingModel(
            f"checkpoint {path} not found: it is written by the DVC stage `{stage}` "
            f"(run `dvc repro {stage}`), or pass --checkpoint with our model.pt or an official EDTalk.pt")
    model, extra = load_checkpoint(path)
    model.mouth_gain = float(extra.get("mouth_gain", 1.0))
    return model.eval()


def scale_motion(weights: np.ndarray, gain: float) -> np.ndarray:
    """(T, n) weights with their motion over the clip scaled: mean + gain x (w_t - mean)."""
    w = np.asarray(weights, np.float32)
    if gain == 1.0 or len(w) == 0:
        return w
    mean = w.mean(axis=0, keepdims=True)
    return (mean + np.float32(gain) * (w - mean)).astype(np.float32)


# --- conversions -----------------------------------------------------------------------

def to_tensor(frames: np.ndarray, size: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """RGB uint8 (T,H,W,3) or (H,W,3) -> float (T,3,size,size) in [-1, 1] (resized if needed)."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be RGB uint8 (T,H,W,3), got {frames.dtype} {frames.shape}")
    if frames.shape[1:3] != (size, size):
        interp = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_CUBIC
        frames = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).to(dtype)
    return x / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float (T,3,H,W) in [-1, 1] -> RGB uint8 (T,H,W,3)."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def is_frames(source: Source) -> bool:
    return np.asarray(source).ndim == 4


def source_index(length: int, n: int, fit: Fit = "hold") -> np.ndarray:
    """Which of a source's ``length`` frames feeds each of ``n`` output frames.

    >>> source_index(3, 5).tolist(), source_index(3, 5, "loop").tolist()
    ([0, 1, 2, 2, 2], [0, 1, 2, 0, 1])
    """
    if length < 1:
        raise ValueError("a source needs at least one frame")
    t = np.arange(n)
    if fit == "hold":
        return np.minimum(t, length - 1)
    if fit == "loop":
        return t % length
    raise ValueError(f"fit must be 'hold' or 'loop', got {fit!r}")


def output_length(sources: Mapping[str, Source | None], n_frames: int | None = None) -> int:
    """``n_frames`` when given, else the longest source (at least one source is then needed)."""
    if n_frames is not None:
        if n_frames < 1:
            raise ValueError(f"n_frames must be >= 1, got {n_frames}")
        return int(n_frames)
    lengths = [len(s) for s in sources.values() if s is not None]
    if not lengths:
        raise ValueError("no driving source and no n_frames: nothing says how long the video is")
    return max(lengths)


def frames_for_audio(n_samples: int) -> int:
    """Video frames covering ``n_samples`` of 16 kHz audio at 25 fps (at least one)."""
    return max(1, math.ceil(n_samples / SAMPLES_PER_FRAME))


def _dtype(model: EDTalk) -> torch.dtype:
    return next(model.parameters()).dtype


def _chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


# --- the two passes ----------------------------------------------------------------------

def model_factors(model: EDTalk) -> tuple[str, ...]:
    """Factors the model has banks for (no ``exp`` in the lip/pose layout)."""
    return FACTORS if model.exp_fc is not None else FACTORS[:2]


def check_sources(model: EDTalk, sources: Mapping[str, Source | None]) -> None:
    unknown = set(sources) - set(FACTORS)
    if unknown:
        raise KeyError(f"unknown factors {sorted(unknown)}; expected {FACTORS}")
    sizes = {"mouth": model.cfg.n_mouth, "pose": model.cfg.n_pose, "exp": model.cfg.n_exp}
    for name, src in sources.items():
        if src is None:
            continue
        if name not in model_factors(model):
            raise ValueError(f"this model has no {name} bank (lip/pose layout); drop the {name} source")
        arr = np.asarray(src)
        if arr.ndim == 2 and arr.shape[1] != sizes[name]:
            raise ValueError(f"{name} weights must be (T, {sizes[name]}), got {arr.shape}")
        if arr.ndim not in (2, 4) or len(arr) == 0:
            raise ValueError(f"{name} source must be frames (T,H,W,3) or weights (T,n), got {arr.shape}")


@torch.inference_mode()
def factor_weights(model: EDTalk, identity: Identity, sources: Mapping[str, Source | None],
                   n_frames: int, fit: Fit = "hold", batch_size: int = 8,
                   channels_last: bool = True) -> dict[str, np.ndarray]:
    """Per-frame navigation weights (n_frames, n_c) of every factor of the model.

    Frame sources go through E once per distinct array and output frame (one batched E
    call per chunk for all distinct videos), then the shared trunk once and the heads;
    weight sources are indexed; missing factors repeat the identity's own weights.
    """
    check_sources(model, sources)
    heads = {"mouth": model.lip_fc, "pose": model.pose_fc, "exp": model.exp_fc}
    videos: list[np.ndarray] = []          # distinct frame sources, by object identity
    uses: dict[str, int] = {}
    out: dict[str, np.ndarray] = {}
    for name in model_factors(model):
        src = sources.get(name)
        if src is None:
            out[name] = identity.own[name].cpu().numpy().repeat(n_frames, axis=0)
        elif is_frames(src):
            k = next((i for i, v in enumerate(videos) if v is src), None)
            if k is None:
                videos.append(src)
                k = len(videos) - 1
            uses[name] = k
        else:
            w = np.asarray(src)
            out[name] = w[source_index(len(w), n_frames, fit)]
    if videos:
        index = [source_index(len(v), n_frames, fit) for v in videos]
        parts: dict[str, list[torch.Tensor]] = {name: [] for name in uses}
        size, dtype = model.cfg.size, _dtype(model)
        for sl in _chunks(n_frames, batch_size):
            batch = torch.cat([to_tensor(v[i[sl]], size, dtype) for v, i in zip(videos, index)])
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            trunk = model.fc(model.encode(batch)[0]).split(sl.stop - sl.start)
            for name, k in uses.items():
                parts[name].append(heads[name](trunk[k]))
        for name, p in parts.items():
            out[name] = torch.cat(p).cpu().numpy()
    return out


@torch.inference_mode()
def decode_weights(model: EDTalk, identity: Identity, weights: Mapping[str, np.ndarray],
                   batch_size: int = 8) -> Iterator[torch.Tensor]:
    """Images (B,3,H,W), unclamped, batch by batch, from per-frame weights (Eq. 1-2, 8)."""
    q, dtype = model.bases(), _dtype(model)
    for sl in _chunks(len(weights["mouth"]), batch_size):
        w = {k: torch.as_tensor(np.ascontiguousarray(v[sl])).to(dtype) for k, v in weights.items()}
        motion = model.motion(w["mouth"], w["pose"], w.get("exp"), bases=q)
        yield model.generate(identity.latent, identity.skips, motion, eem_cache=identity.eem_cache)


def render_weights(model: EDTalk, identity: Identity, weights: Mapping[str, np.ndarray],
                   batch_size: int = 8) -> np.ndarray:
    """Frames (T,H,W,3) uint8 generated from per-frame weights of every factor."""
    with torch.inference_mode():
        return np.concatenate([to_uint8(x) for x in decode_weights(model, identity, weights, batch_size)])


@dataclass
class Generated:
    frames: np.ndarray                 # (T,H,W,3) uint8
    weights: dict[str, np.ndarray]     # per factor (T, n_c): what drove each frame (the mouth's after
                                       # the gain: render them again with mouth_gain=1.0)
    own: dict[str, np.ndarray]         # the identity's own weights (1, n_c)


def resolve_mouth_gain(model: EDTalk, mouth_gain: float | None = None) -> float:
    """The gain a render applies: ``mouth_gain`` when given, else the model's own (1 without one)."""
    return getattr(model, "mouth_gain", 1.0) if mouth_gain is None else mouth_gain


def generate(model: EDTalk, identity: np.ndarray, mouth: Source | None = None, pose: Source | None = None,
             exp: Source | None = None, n_frames: int | None = None, fit: Fit = "hold",
             batch_size: int = 8, channels_last: bool = True, mouth_gain: float | None = None) -> Generated:
    """EDTalk with per-factor sources (see the module docstring); the identity is RGB uint8 (H,W,3).
    ``mouth_gain`` overrides the model's own (``model.mouth_gain``, 1 when it has none)."""
    model.eval()
    sources = {"mouth": mouth, "pose": pose, "exp": exp}
    n = output_length(sources, n_frames)
    ident = prepare_identity(model, to_tensor(identity, model.cfg.size, _dtype(model)), channels_last)
    w = factor_weights(model, ident, sources, n, fit, batch_size, channels_last)
    gain = resolve_mouth_gain(model, mouth_gain)
    if mouth is not None:
        w["mouth"] = scale_motion(w["mouth"], gain)
    frames = render_weights(model, ident, w, batch_size)
    return Generated(frames, w, {k: v.cpu().numpy() for k, v in ident.own.items()})


def audio_sources(predictor: MotionPredictor, audio: np.ndarray, n_frames: int, *,
                  transcript: str | None = None, pose_seed: int | None = 0, temperature: float = 1.0,
                  emotion: str | None = None, pose: Source | None = None,
                  exp: Source | None = None, factors: Sequence[str] = FACTORS) -> dict[str, Source]:
    """EDTalk-A sources: mouth from the audio; pose sampled from the flow unless a pose source
    is given; expression from audio (+ transcript, or the named emotion) unless given, and
    none when ``factors`` (the model's, ``model_factors``) has no ``exp``."""
    pred = predictor.predict(np.asarray(audio, np.float32), n_frames, transcript=transcript,
                             pose_seed=pose_seed, temperature=temperature, emotion=emotion)
    for key in ("mouth", "pose", "exp"):
        if key in pred and len(pred[key]) != n_frames:
            raise ValueError(f"audio models returned {len(pred[key])} {key} frames, expected {n_frames}")
    return {"mouth": pred["mouth"],
            "pose": pred["pose"] if pose is None else pose,
            "exp": None if "exp" not in factors else pred.get("exp") if exp is None else exp}


def write(path: str | Path, frames: np.ndarray, audio: np.ndarray | None) -> None:
    """Atomic mp4 at 25 fps; the audio (if any) is fitted to the video's length."""
    media.write_video(path, frames, fps=FPS,
                      audio=None if audio is None else media.fit_audio(audio, len(frames)))
