"""Audio -> mouth training (§3.3, Eqs. 11-12): E_a + MLP^m_A with L^m_fea + L^m_rec + L^m_sync.

L^m_rec and L^m_sync need pixels: on a small sub-batch per step the frozen generator
renders a 5-frame window from the clip's identity frame, the *predicted* mouth weights and
the ground-truth pose/expression weights (Eq. 2); the frozen SyncNet expert embeds that
window (s) and its MFCC window (v) for Eq. 12. Only E_a and the head train.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edtalk.data.pixel_cache import PixelCache
from edtalk.experts.syncnet import SYNC_FRAMES, SyncNet, embed_rgb_window
from edtalk.model import EDTalk
from edtalk.train.data import step_rng
from edtalk.train.resumable import LoopResult

from . import weights_cache
from .audio_encoder import feature_encoder_config, frame_windows
from .config import MouthConfig
from .data import ClipData
from .loop import run_loop
from .mouth import AudioToMouth, mouth_feature_loss, sync_loss
from .params import MouthTrainConfig



@dataclass
class RenderContext:
    """The frozen generator, the optional SyncNet expert and per-clip identities."""
    model: EDTalk
    pixels: PixelCache
    syncnet: SyncNet | None = None
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
        s, v = embed_rgb_window(self.syncnet, frames, mfcc)
        return v, s


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
    long_clips = [c for c in clips if len(c) >= SYNC_FRAMES]
    clip_windows = {c.clip_id: frame_windows(c.features(cfg.feature), ctx) for c in long_clips}

    def step_fn(step: int) -> dict[str, torch.Tensor]:
        rng = step_rng(cfg.loop.seed, step)
        rows = rng.integers(len(windows), size=cfg.loop.batch)
        terms = {"fea": cfg.fea_weight * mouth_feature_loss(targets[rows], net(windows[rows]))}
        if use_rec and step % cfg.rec_every == 0 and long_clips:
            rec, syn = [], []
            for _ in range(cfg.rec_clips):
                clip = long_clips[int(rng.integers(len(long_clips)))]
                t = int(rng.integers(len(clip) - SYNC_FRAMES + 1))
                sl = np.arange(t, t + SYNC_FRAMES)
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
