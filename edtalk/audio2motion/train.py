"""Training of the three Audio-to-Motion predictors (§3.3) from the cached weights.

* ``train_mouth``: E_a + MLP^m_A with L^m_fea + L^m_rec + L^m_sync (Eqs. 11-12). L^m_rec
  and L^m_sync need pixels: on a small sub-batch per step the frozen generator renders a
  5-frame window from the clip's identity frame, the *predicted* mouth weights and the
  ground-truth pose/expression weights (Eq. 2); the frozen SyncNet expert embeds that
  window (s) and its MFCC window (v) for Eq. 12. Only E_a and the head train.
* ``train_pose``: an own E_a + the flow phi_p with L_MLE + L^p_rec + L_tem (Eqs. 13-14) on
  random crops of the W^p sequences. The flow starts as the (shrunk) full-covariance
  Gaussian of all train W^p; its learned layers train on the train identities outside a
  held-out group (a part of the *train* split), and the state with the best held-out
  NLL is kept (early stopping; step 0, the Gaussian itself, included). The sampling
  latent's temporal structure is then fitted to the train sequences.
* ``train_expression``: E_S (small configuration, from scratch offline) + MLP^e_A, E_T
  frozen with precomputed transcript embeddings, L_exp = L1 with Eq. 15's masking;
  targets are the per-clip mean W^e.

All three share ``run_loop``: Adam, batches a pure function of (seed, step), atomic
checkpoints (module, optimiser, torch RNG state, step, fingerprint) every
``checkpoint_every`` steps, so a killed run resumes to the same weights, bit for bit,
as an uninterrupted one (fixed thread count). DVCLive logs the loss terms when a
``live_dir`` is given. No Prefect or DVC here.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from edtalk.data import atomic
from edtalk.train.loop import log_step
from edtalk.data.pixel_cache import PixelCache
from edtalk.data.schema import EMOTIONS
from edtalk.model import EDTalk

from . import weights_cache
from .audio_encoder import AudioEncoder, frame_windows
from .config import (A2MConfig, AudioEncoderConfig, ExpressionConfig, MouthConfig, PoseFlowConfig,
                     SemanticEncoderConfig)
from .mouth import AudioToMouth, mouth_feature_loss, sync_loss
from .pose_flow import PoseFlow, jitter, mle_loss, pose_losses, select_noise
from .semantic_expression import SemanticExpression, expression_loss

log = logging.getLogger(__name__)
FORMAT = "edtalk-a2m/1"
CKPT = re.compile(r"step-(\d{8})\.pt$")
SYNC_WINDOW = 5                   # SyncNet sees 5 video frames / 20 MFCC steps


# --- configuration -------------------------------------------------------------------------

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


@dataclass(frozen=True)
class ExpressionTrainConfig:
    loop: LoopConfig = field(default_factory=LoopConfig)
    crop_seconds: float = 2.0        # random waveform crop per sample (augmentation + speed)


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


def feature_encoder_config(base: AudioEncoderConfig, feature: str) -> AudioEncoderConfig:
    """E_a's config for the chosen per-step feature (13 MFCC or 80 mel coefficients)."""
    dims = {"mfcc": 13, "mel": 80}
    if feature not in dims:
        raise ValueError(f"feature must be 'mfcc' or 'mel', got {feature!r}")
    return replace(base, feature_dim=dims[feature])


# --- data ----------------------------------------------------------------------------------

@dataclass
class ClipData:
    """One clip's aligned audio features, cached weights and labels."""
    clip_id: str
    split: str
    emotion: str
    transcript: str
    mfcc: np.ndarray          # (T, 4, 13)
    mel: np.ndarray           # (T, 4, 80)
    mouth: np.ndarray         # (T, 20) W^m
    pose: np.ndarray          # (T, 6)  W^p
    exp: np.ndarray           # (T, 10) W^e
    pixel_index: np.ndarray   # (T,) rows of the pixel cache
    audio_path: str = ""
    identity: str = ""        # speaker / synthetic identity ("" when the manifest has none)

    def __len__(self) -> int:
        return len(self.mouth)

    def features(self, kind: str) -> np.ndarray:
        return self.mfcc if kind == "mfcc" else self.mel

    @property
    def label(self) -> int:
        return EMOTIONS.index(self.emotion) if self.emotion in EMOTIONS else -1


def load_clips(features_dir: str | Path, weights_path: str | Path,
               splits: Sequence[str] = ("train",), crop_dir: str | Path | None = None) -> list[ClipData]:
    """Clips of ``splits``: FRAMES features joined with the weight cache, sorted by clip id."""
    root = Path(features_dir)
    frames = pd.read_parquet(root / "frames.parquet",
                             columns=["clip_id", "frame", "split", "mfcc", "mel", "pixel_index"],
                             filters=[("split", "in", list(splits))])
    weights = weights_cache.read(weights_path, splits)
    df = frames.merge(weights.drop(columns="split"), on=["clip_id", "frame"], how="inner")
    manifest = pd.read_parquet(root / "clips.parquet").set_index("clip_id")
    out = []
    for clip_id, part in df.sort_values(["clip_id", "frame"]).groupby("clip_id", sort=True):
        meta = manifest.loc[clip_id]
        n = len(part)
        audio = str(Path(crop_dir) / meta["audio_path"]) if crop_dir is not None and meta["audio_path"] else ""
        out.append(ClipData(
            clip_id=str(clip_id), split=str(part["split"].iloc[0]), emotion=str(meta["emotion"]),
            transcript=str(meta["transcript"] or ""),
            mfcc=np.stack(part["mfcc"].to_numpy()).astype(np.float32).reshape(n, 4, 13),
            mel=np.stack(part["mel"].to_numpy()).astype(np.float32).reshape(n, 4, -1),
            mouth=np.stack(part["w_mouth"].to_numpy()).astype(np.float32),
            pose=np.stack(part["w_pose"].to_numpy()).astype(np.float32),
            exp=np.stack(part["w_exp"].to_numpy()).astype(np.float32),
            pixel_index=part["pixel_index"].to_numpy(np.int64), audio_path=audio,
            identity=str(meta["identity"]) if pd.notna(meta.get("identity")) else ""))
    if not out:
        raise ValueError(f"no clips of split(s) {list(splits)} in {root} joined with {weights_path}")
    return out


def emotion_means(clips: Sequence[ClipData]) -> torch.Tensor:
    """(8, 10) mean of the per-clip mean W^e for each emotion (NaN rows for absent classes)."""
    out = torch.full((len(EMOTIONS), clips[0].exp.shape[1]), float("nan"))
    for k, name in enumerate(EMOTIONS):
        rows = [c.exp.mean(0) for c in clips if c.emotion == name]
        if rows:
            out[k] = torch.from_numpy(np.mean(rows, axis=0))
    return out


def step_rng(seed: int, step: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, step, salt])


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(step_rng(seed, step, salt).integers(2**62)))


# --- the loop ------------------------------------------------------------------------------

@dataclass
class LoopResult:
    step: int
    resumed_from: int
    seconds: float
    last: dict[str, float]
    first: dict[str, float]


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob("step-*.pt") if (m := CKPT.search(p.name))]
    return sorted(found)


def _truncate_live(live_dir: Path, start: int) -> None:
    for tsv in (live_dir / "plots" / "metrics").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        if lines:
            col = lines[0].split("\t").index("step")
            kept = [lines[0]] + [ln for ln in lines[1:] if int(ln.split("\t")[col]) <= start]
            tsv.write_text("\n".join(kept) + "\n")


def run_loop(module: nn.Module, step_fn: Callable[[int], dict[str, torch.Tensor]], cfg: LoopConfig,
             ckpt_dir: str | Path, live_dir: str | Path | None = None, stop_after: int | None = None,
             fingerprint: str = "", params: Sequence[nn.Parameter] | None = None) -> LoopResult:
    """Adam on ``params`` (default: the module's trainable ones) to ``cfg.steps`` steps.

    ``step_fn(step)`` returns the weighted loss terms (summed for the update) and may add
    non-loss values under keys starting with ``"_"`` (logged, not optimised). Resumes from
    the newest checkpoint in ``ckpt_dir`` written under the same ``fingerprint``;
    ``stop_after`` ends this call early (tests simulate a crash with it).
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    params = list(params if params is not None else (p for p in module.parameters() if p.requires_grad))
    opt = torch.optim.Adam(params, lr=cfg.lr)
    torch.manual_seed(cfg.seed + 7)
    start = 0
    found = checkpoints(ckpt_dir)
    if found:
        state = torch.load(found[-1][1], map_location="cpu", weights_only=True)
        if state.get("fingerprint") != fingerprint:
            log.warning("checkpoints in %s belong to another configuration; starting afresh", ckpt_dir)
            for _, p in found:
                p.unlink(missing_ok=True)
        else:
            module.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            torch.set_rng_state(state["rng"])
            start = int(state["step"])
            log.info("resumed from %s (step %d)", found[-1][1], start)
    live = None
    if live_dir is not None:
        from dvclive import Live  # logging backend; the library runs without a DVC repo

        if start:
            _truncate_live(Path(live_dir), start)
        live = Live(str(live_dir), resume=bool(start), save_dvc_exp=False, dvcyaml=False)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    module.train()
    t0 = time.perf_counter()
    for step in range(start, end):
        terms = step_fn(step)
        total = sum(v for k, v in terms.items() if not k.startswith("_"))
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        last = {f"loss/{k.lstrip('_')}": float(v.detach()) for k, v in terms.items()}
        last["loss/total"] = float(total.detach())
        first = first or dict(last)
        done = step + 1
        log_step(live, done, last, cfg.log_every, cfg.steps)
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            with atomic.atomic_path(ckpt_dir / f"step-{done:08d}.pt") as tmp:
                torch.save({"model": module.state_dict(), "opt": opt.state_dict(),
                            "rng": torch.get_rng_state(), "step": done,
                            "fingerprint": fingerprint}, tmp)
            for _, old in checkpoints(ckpt_dir)[:-cfg.keep_checkpoints]:
                old.unlink(missing_ok=True)
    seconds = time.perf_counter() - t0
    if live is not None:
        live.end()
    module.eval()
    return LoopResult(end, start, seconds, last, first)


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


# --- audio -> mouth (Eqs. 11-12) -----------------------------------------------------------

@dataclass
class RenderContext:
    """The frozen generator, the optional SyncNet expert and per-clip identities."""
    model: EDTalk
    pixels: PixelCache
    syncnet: nn.Module | None = None
    identities: dict[str, tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None]] = field(
        default_factory=dict)

    def __post_init__(self) -> None:
        self.model.requires_grad_(False).eval()
        if self.syncnet is not None:
            self.syncnet.requires_grad_(False).eval()

    def identity(self, clip: ClipData) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor] | None]:
        """E(I^i) of the clip's first frame (its identity image), computed once, no grad."""
        if clip.clip_id not in self.identities:
            with torch.no_grad():
                img = weights_cache.to_images(self.pixels[clip.pixel_index[:1]])
                latent, skips = self.model.encode(img)
                cache = (self.model.dec.eem_cache(skips)
                         if self.model.dec.fineadainresblock is not None else None)
            self.identities[clip.clip_id] = (latent, skips, cache)
        return self.identities[clip.clip_id]

    def render(self, clip: ClipData, rows: np.ndarray, w_mouth: torch.Tensor) -> torch.Tensor:
        """Eq. 2 for frames ``rows`` of ``clip``: predicted W^m, ground-truth W^p and W^e."""
        latent, skips, cache = self.identity(clip)
        w_pose = torch.from_numpy(clip.pose[rows])
        w_exp = torch.from_numpy(clip.exp[rows]) if self.model.exp_fc is not None else None
        motion = self.model.motion(w_mouth, w_pose, w_exp)
        return self.model.generate(latent, skips, motion, eem_cache=cache)

    def sync_embeddings(self, frames: torch.Tensor, mfcc: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """v (audio) and s (video) of Eq. 12 for a 5-frame window (5,3,S,S) in [-1, 1]."""
        net = self.syncnet
        bgr = ((frames.clamp(-1, 1) + 1) * 127.5).flip(1)                  # RGB [-1,1] -> BGR 0-255
        size = net.config.image_size
        if bgr.shape[-1] != size:
            bgr = F.interpolate(bgr, size=(size, size), mode="bilinear", align_corners=False)
        lips = bgr.permute(1, 0, 2, 3).unsqueeze(0)                          # (1,3,5,S,S)
        cc = torch.from_numpy(mfcc.reshape(-1, 13).T.copy())[None, None]     # (1,1,13,20)
        return net.forward_aud(cc), net.forward_lip(lips)


def train_mouth(clips: Sequence[ClipData], cfg: MouthTrainConfig, mouth_cfg: MouthConfig,
                out_dir: str | Path, render: RenderContext | None = None,
                live_dir: str | Path | None = None, stop_after: int | None = None,
                fingerprint: str = "") -> tuple[AudioToMouth, LoopResult]:
    """E_a + MLP^m_A on every train frame's feature window (Eqs. 11-12)."""
    mouth_cfg = replace(mouth_cfg, encoder=feature_encoder_config(mouth_cfg.encoder, cfg.feature))
    torch.manual_seed(cfg.loop.seed)
    net = AudioToMouth(mouth_cfg)
    ctx = mouth_cfg.encoder.context_frames
    windows = torch.cat([frame_windows(c.features(cfg.feature), ctx) for c in clips])
    targets = torch.from_numpy(np.concatenate([c.mouth for c in clips]))
    use_rec = render is not None and cfg.rec_weight > 0
    use_sync = use_rec and render.syncnet is not None and cfg.sync_weight > 0
    long_clips = [c for c in clips if len(c) >= SYNC_WINDOW]
    clip_windows = {c.clip_id: frame_windows(c.features(cfg.feature), ctx) for c in long_clips}

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = step_rng(cfg.loop.seed, step)
        rows = rng.integers(len(windows), size=cfg.loop.batch)
        terms = {"fea": cfg.fea_weight * mouth_feature_loss(targets[rows], net(windows[rows]))}
        if use_rec and step % cfg.rec_every == 0 and long_clips:
            rec, syn = [], []
            for _ in range(cfg.rec_clips):
                clip = long_clips[int(rng.integers(len(long_clips)))]
                t = int(rng.integers(len(clip) - SYNC_WINDOW + 1))
                sl = np.arange(t, t + SYNC_WINDOW)
                fake = render.render(clip, sl, net(clip_windows[clip.clip_id][sl]))
                real = weights_cache.to_images(render.pixels[clip.pixel_index[sl]])
                rec.append(F.mse_loss(fake, real))                                  # Eq. 11, L^m_rec
                if use_sync:
                    v, s = render.sync_embeddings(fake, clip.mfcc[sl])
                    syn.append(sync_loss(v, s, mouth_cfg.sync_eps))                  # Eq. 12
            terms["rec"] = cfg.rec_weight * torch.stack(rec).mean()
            if syn:
                terms["sync"] = cfg.sync_weight * torch.stack(syn).mean()
        return terms

    result = run_loop(net, step_fn, cfg.loop, Path(out_dir) / "checkpoints" / "mouth", live_dir,
                      stop_after, fingerprint)
    return net, result


# --- pose flow (Eqs. 13-14) ----------------------------------------------------------------

class AudioPose(nn.Module):
    """f^a = E_a(a) per frame, then phi_p over W^p conditioned on the f^a sequence."""

    def __init__(self, encoder: AudioEncoderConfig, flow: PoseFlowConfig) -> None:
        super().__init__()
        if encoder.out_dim != flow.cond_dim:
            flow = replace(flow, cond_dim=encoder.out_dim)
        self.encoder = AudioEncoder(encoder)
        self.flow = PoseFlow(flow)

    def features(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, steps, D) windows -> f^a (B, T, C).

        With ``flow.cfg.audio_cmn`` the windows are mean-normalised per sequence first
        (cepstral mean normalisation over all frames and steps): the static voice of the
        speaker (and the channel) is removed, the pose is conditioned on how the speech
        moves, and the flow cannot learn the training speakers' W^p from their voices.
        """
        if self.flow.cfg.audio_cmn and windows.ndim == 4:
            windows = windows - windows.mean(dim=(1, 2), keepdim=True)
        return self.encoder(windows)


def _crops(clips: Sequence[ClipData], windows: dict[str, torch.Tensor], n: int, length: int,
           rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` random crops of ``length`` frames (clips too short are skipped): W^p and windows."""
    pool = [c for c in clips if len(c) >= length]
    ws, xs = [], []
    for _ in range(n):
        c = pool[int(rng.integers(len(pool)))]
        t = int(rng.integers(len(c) - length + 1))
        ws.append(torch.from_numpy(c.pose[t:t + length]))
        xs.append(windows[c.clip_id][t:t + length])
    return torch.stack(ws), torch.stack(xs)


def pose_windows(clips: Sequence[ClipData], feature: str, context: int) -> dict[str, torch.Tensor]:
    return {c.clip_id: frame_windows(c.features(feature), context) for c in clips}


NOISE_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)   # candidates of noise: auto


def _group(clip: ClipData) -> str:
    return clip.identity or clip.clip_id


def resolve_noise(noise: float | str, clips: Sequence[ClipData]) -> tuple[float, dict[float, float]]:
    """The dequantisation noise: the number given, or for "auto" the leave-one-identity-out
    best of ``NOISE_GRID`` for the Gaussian part (``pose_flow.select_noise``) and its scores."""
    if not (isinstance(noise, str) and noise == "auto"):
        return float(noise), {}
    by: dict[str, list[np.ndarray]] = {}
    for c in clips:
        by.setdefault(_group(c), []).append(c.pose)
    groups = [torch.from_numpy(np.concatenate(v)) for _, v in sorted(by.items())]
    return select_noise(groups, NOISE_GRID)


def holdout_split(clips: Sequence[ClipData], fraction: float, seed: int
                  ) -> tuple[list[ClipData], list[ClipData]]:
    """(fit, held): ``fraction`` of the identities (at least one, never all), drawn with ``seed``."""
    names = sorted({_group(c) for c in clips})
    n = min(max(int(round(fraction * len(names))), 1), len(names) - 1) if fraction > 0 else 0
    if n <= 0:
        return list(clips), []
    held = set(np.random.default_rng([seed, 11]).permutation(names)[:n].tolist())
    return [c for c in clips if _group(c) not in held], [c for c in clips if _group(c) in held]


class _BestState:
    """Early stopping: the state with the lowest held-out NLL among those whose held-out
    sample jitter is at most ``max_ratio`` x the ground truth's (if none is, the smoothest),
    persisted next to the loop's checkpoints so that a resumed run makes the same choice
    as an uninterrupted one."""

    def __init__(self, path: Path, fingerprint: str, max_ratio: float) -> None:
        self.path, self.fingerprint, self.max_ratio = path, fingerprint, max_ratio
        self.nll, self.ratio, self.step, self.state = float("inf"), float("inf"), -1, None
        self.curve: list[tuple[int, float, float]] = []   # (step, NLL, jitter ratio) seen here
        found = checkpoints(path.parent)
        resuming = bool(found) and torch.load(found[-1][1], map_location="cpu",
                                              weights_only=True).get("fingerprint") == fingerprint
        if resuming and path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            if saved.get("fingerprint") == fingerprint:
                self.nll, self.ratio = float(saved["nll"]), float(saved["ratio"])
                self.step, self.state = int(saved["step"]), saved["model"]
        elif path.is_file():
            path.unlink()

    def _key(self, nll: float, ratio: float) -> tuple[bool, float]:
        ok = ratio <= self.max_ratio
        return (not ok, nll if ok else ratio)

    def offer(self, step: int, nll: float, ratio: float, module: nn.Module, persist: bool = True) -> None:
        self.curve.append((step, round(nll, 4), round(ratio, 3)))
        if self._key(nll, ratio) < self._key(self.nll, self.ratio):
            self.nll, self.ratio, self.step = nll, ratio, step
            self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            if persist:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with atomic.atomic_path(self.path) as tmp:
                    torch.save({"model": self.state, "nll": nll, "ratio": ratio, "step": step,
                                "fingerprint": self.fingerprint}, tmp)

    def restore(self, module: nn.Module) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


def train_pose(clips: Sequence[ClipData], cfg: PoseTrainConfig, a2m: A2MConfig, out_dir: str | Path,
               live_dir: str | Path | None = None, stop_after: int | None = None,
               fingerprint: str = "") -> tuple[AudioPose, LoopResult, float]:
    """L_MLE + L^p_rec + L_tem on random crops with early stopping; then fit the sampling latent.

    S (the flow's Gaussian) is fitted to all train clips. The learned layers train on the
    clips outside a held-out group of train identities (``cfg.holdout``); every
    ``cfg.eval_every`` steps the held-out NLL per frame and sample jitter are measured and
    the best state is kept (lowest NLL among states whose jitter ratio is within
    ``cfg.jitter_ratio``; step 0, the Gaussian itself, competes too). With ``cfg.refit``
    a fresh model then trains on all train clips for the chosen number of steps. The
    returned loop is the selection run's (its seconds include the refit);
    ``model.train_info`` records the noise, the held-out identities, the curve and the
    chosen step. Returns (model, loop, rho).
    """
    enc = feature_encoder_config(a2m.mouth.encoder, cfg.feature)
    noise, noise_scores = resolve_noise(cfg.noise, clips)
    all_w = torch.from_numpy(np.concatenate([c.pose for c in clips]))
    fit, held = holdout_split(clips, cfg.holdout, cfg.loop.seed)
    windows = pose_windows(clips, cfg.feature, enc.context_frames)
    ckpt_dir = Path(out_dir) / "checkpoints" / "pose"

    def fresh() -> AudioPose:
        torch.manual_seed(cfg.loop.seed)
        m = AudioPose(enc, a2m.pose)
        m.flow.fit_normalization(all_w, noise)
        return m

    def make_step(model: AudioPose, train_clips: Sequence[ClipData],
                  best: _BestState | None = None) -> Callable[[int], dict[str, torch.Tensor]]:
        length = min(cfg.seq_len, min(len(c) for c in train_clips))

        def step_fn(step: int) -> dict[str, torch.Tensor]:
            extra = {}
            if best is not None and step % cfg.eval_every == 0:   # weights before this update
                nll, ratio = heldout_scores(model, fit, held, windows, cfg)
                best.offer(step, nll, ratio, model)
                extra = {"_heldout_nll": torch.tensor(nll), "_heldout_jitter_ratio": torch.tensor(ratio)}
            w, x = _crops(train_clips, windows, cfg.loop.batch, length, step_rng(cfg.loop.seed, step))
            fa = model.features(x)
            terms = pose_losses(model.flow, w, fa)
            if noise > 0:
                g = step_generator(cfg.loop.seed, step, 2)
                noisy = w + noise * model.flow.std * torch.randn(w.shape, generator=g)
                terms["mle"] = mle_loss(model.flow, noisy, fa)
            return {"mle": cfg.mle_weight * terms["mle"], "rec": cfg.rec_weight * terms["rec"],
                    "tem": cfg.tem_weight * terms["tem"], **extra}
        return step_fn

    model = fresh()
    best = _BestState(ckpt_dir / "best.pt", fingerprint, cfg.jitter_ratio) if held else None
    result = run_loop(model, make_step(model, fit, best), cfg.loop, ckpt_dir, live_dir, stop_after,
                      fingerprint)
    chosen, refit_steps = result.step, 0
    if best is not None:
        complete = result.step == cfg.loop.steps
        best.offer(result.step, *heldout_scores(model, fit, held, windows, cfg), model, persist=complete)
        best.restore(model)
        chosen = best.step
        if cfg.refit and complete and chosen > 0:     # the chosen length, on every train identity
            model = fresh()
            again = run_loop(model, make_step(model, clips), replace(cfg.loop, steps=chosen),
                             ckpt_dir / "refit", None, None, f"{fingerprint}|refit:{chosen}")
            result = replace(result, seconds=result.seconds + again.seconds)
            refit_steps = chosen
    model.eval()
    model.train_info = {"noise": noise, "noise_scores": noise_scores,
                        "heldout_identities": sorted({_group(c) for c in held}),
                        "best_step": chosen, "refit_steps": refit_steps,
                        "best_heldout_nll": best.nll if best else float("nan"),
                        "best_heldout_jitter_ratio": best.ratio if best else float("nan"),
                        "heldout_curve": best.curve if best else []}
    rho = calibrate_pose(model, clips, cfg)
    return model, result, rho


@torch.no_grad()
def heldout_scores(model: AudioPose, fit: Sequence[ClipData], held: Sequence[ClipData],
                   windows: dict[str, torch.Tensor], cfg: PoseTrainConfig,
                   max_fit_clips: int = 8) -> tuple[float, float]:
    """(NLL per frame, sample jitter / ground-truth jitter) of the held-out clips.

    For the jitter, the sampling latent is fitted to at most ``max_fit_clips`` of the
    ``fit`` clips spread over the list (the module's rho / shared / white buffers are left as they
    were); one sample per held-out clip, seeded.
    """
    flow = model.flow
    picks = np.unique(np.linspace(0, len(fit) - 1, min(max_fit_clips, len(fit))).round().astype(int))
    fit = [fit[i] for i in picks]
    feats = {c.clip_id: model.features(windows[c.clip_id][None]) for c in (*fit, *held)}
    total = sum(float(flow.log_prob(torch.from_numpy(c.pose)[None], feats[c.clip_id]).sum()) for c in held)
    nll = -total / sum(len(c) for c in held)
    kept = flow.rho.clone(), flow.shared.clone(), flow.white.clone()
    flow.fit_temporal_correlation([torch.from_numpy(c.pose)[None] for c in fit],
                                  [feats[c.clip_id] for c in fit], max_rho=cfg.max_rho)
    g = torch.Generator().manual_seed(cfg.loop.seed)
    jit_s = [jitter(flow.sample(feats[c.clip_id], generator=g)) for c in held]
    for buf, value in zip((flow.rho, flow.shared, flow.white), kept):
        buf.copy_(value)
    jit_g = [jitter(torch.from_numpy(c.pose)[None]) for c in held]
    return nll, float(np.mean(jit_s)) / max(float(np.mean(jit_g)), 1e-12)


@torch.no_grad()
def calibrate_pose(model: AudioPose, clips: Sequence[ClipData], cfg: PoseTrainConfig,
                   max_clips: int = 8) -> float:
    """Fit the latent process (rho, shared a, white e) to all train clips, then cap the jitter.

    The cap (rho only ever raised) holds sampled jitter to ``jitter_ratio`` x the ground
    truth on equal-length crops of at most ``max_clips`` clips spread over the list.
    Returns max(rho).
    """
    windows = pose_windows(clips, cfg.feature, model.encoder.cfg.context_frames)
    model.flow.fit_temporal_correlation([torch.from_numpy(c.pose)[None] for c in clips],
                                        [model.features(windows[c.clip_id][None]) for c in clips],
                                        max_rho=cfg.max_rho)
    picks = np.linspace(0, len(clips) - 1, min(max_clips, len(clips))).round().astype(int)
    clips = [clips[i] for i in np.unique(picks)]
    length = min(len(c) for c in clips)
    w = torch.stack([torch.from_numpy(c.pose[:length]) for c in clips])
    fa = model.features(torch.stack([windows[c.clip_id][:length] for c in clips]))
    return model.flow.calibrate_temporal_correlation(w, fa, target_ratio=cfg.jitter_ratio,
                                                     seed=cfg.loop.seed, iters=16, max_rho=cfg.max_rho)


# --- semantic expression (Eq. 15) ----------------------------------------------------------

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
    targets = torch.from_numpy(np.stack([c.exp.mean(0) for c in clips]))
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


# --- final files (read by driver.AudioDriver) ----------------------------------------------

def save_mouth(path: str | Path, net: AudioToMouth, feature: str, **extra: Any) -> None:
    save_model(path, "mouth", net, config_to_dict(net.cfg), feature=feature, **extra)


def save_pose(path: str | Path, model: AudioPose, feature: str, **extra: Any) -> None:
    cfg = {"encoder": config_to_dict(model.encoder.cfg), "flow": config_to_dict(model.flow.cfg)}
    save_model(path, "pose", model, cfg, feature=feature, rho=model.flow.rho.clone(), **extra)


def save_expression(path: str | Path, model: SemanticExpression, means: torch.Tensor,
                    text_backend: str, **extra: Any) -> None:
    save_model(path, "expression", model, config_to_dict(model.cfg), emotion_means=means,
               emotions=list(EMOTIONS), text_backend=text_backend, **extra)


def transcript_embeddings(texts: Sequence[str], encode: Callable[[list[str]], torch.Tensor],
                          backend: str, cache: str | Path | None = None) -> torch.Tensor:
    """E_T(T) of each transcript (frozen), reusing rows cached in ``cache`` (npz) for this backend."""
    known: dict[str, np.ndarray] = {}
    if cache is not None and Path(cache).is_file():
        with np.load(cache, allow_pickle=False) as z:
            if str(z["backend"]) == backend:
                known = dict(zip(z["texts"].tolist(), z["emb"]))
    todo = sorted({t for t in texts if t not in known})
    if todo:
        for t, e in zip(todo, encode(todo).numpy()):
            known[t] = e
        if cache is not None:
            keys = sorted(known)
            with atomic.atomic_path(cache) as tmp, open(tmp, "wb") as fh:
                np.savez(fh, backend=np.array(backend), texts=np.array(keys),
                         emb=np.stack([known[k] for k in keys]).astype(np.float32))
    return torch.from_numpy(np.stack([known[t] for t in texts]).astype(np.float32))


# --- params.yaml -> configurations ---------------------------------------------------------

def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def section_for_profile(section: dict[str, Any], profile: str) -> dict[str, Any]:
    """The ``audio2motion`` params with ``profiles.<profile>`` merged over them."""
    return _merge({k: v for k, v in section.items() if k != "profiles"},
                  (section.get("profiles") or {}).get(profile, {}))


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
                           refit=bool(p.get("refit", True)))


def _noise_param(v: Any) -> float | str:
    if isinstance(v, str) and v.strip().lower() == "auto":
        return "auto"
    return float(v)


def expression_train_config(section: dict[str, Any], seed: int) -> ExpressionTrainConfig:
    e = section["expression"]
    return ExpressionTrainConfig(loop=_loop(section, e, seed), crop_seconds=float(e["crop_seconds"]))
