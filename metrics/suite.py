"""Every metric over paired videos: ground-truth folder vs generated folder, by clip id.

Clips are matched by file stem. Per clip: PSNR/SSIM over ``linspace``-paired frames
(generated frames resized to the ground truth's size when they differ, bilinear),
M-/F-LMD from a landmark backend, LSE-C/LSE-D on the generated frames against the
driving audio (``<stem>.wav`` beside the generated video, else its own audio track,
else the ground truth's), the emotion class, and frame features for the set-level
Fréchet distance. Dataset scores: PSNR/SSIM pooled over all paired frames, LMD and
LSE averaged over videos, FID/FD over all frames, Acc_emo over videos.

Metric keys carry their backends: ``lse_c[syncnet_v2]``, ``lse_c[syncnet:trained-here@<hash>]``,
``fid`` (pytorch-fid Inception) or ``fd[rgb-pool8]``, ``m_lmd`` with ``backends["lmd"]``.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from edtalk.data import atomic
from edtalk.data.media import read_audio, read_frames
from edtalk.data.quarantine import ClipRejected
from edtalk.data.schema import EMOTIONS, SAMPLE_RATE
from edtalk.experts import emotion_net, syncnet
from metrics import emotion as emo
from metrics import fid as fidm
from metrics import image, landmarks, sync
from metrics.align import pair, pair_indices

VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm")
Landmarker = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class SuiteConfig:
    """What to run. ``None`` for a network means that metric is left out (and said so)."""

    sync_weights: str | os.PathLike | None = None
    emotion_weights: str | os.PathLike | None = None
    fid_backend: fidm.FeatureBackend | None = None     # default: Inception if present, else rgb-pool8
    landmarker: Landmarker | str | None = "dlib68"
    labels: dict[str, str] | None = None                # clip id -> emotion; else parsed from the id
    dataset: str = "test"
    device: str | None = None
    sync_batch: int = 20
    emotion_max_frames: int | None = 64
    weights_cache: str | os.PathLike | None = None
    backends: dict[str, str] = field(default_factory=dict)


def match_clips(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike) -> list[tuple[str, Path, Path]]:
    """(clip id, gt path, pred path) for every stem present in both folders, sorted."""
    def index(d: str | os.PathLike) -> dict[str, Path]:
        d = Path(d)
        if not d.is_dir():
            raise ValueError(f"not a folder: {d}")
        return {p.stem: p for p in sorted(d.rglob("*")) if p.suffix.lower() in VIDEO_EXT}
    gt, pred = index(gt_dir), index(pred_dir)
    common = sorted(set(gt) & set(pred))
    if not common:
        raise ValueError(f"no clip id in common between {gt_dir} ({len(gt)} videos) "
                         f"and {pred_dir} ({len(pred)} videos)")
    return [(c, gt[c], pred[c]) for c in common]


def emotion_from_id(clip_id: str) -> str | None:
    """The MEAD emotion named in a clip id, if exactly one is.

    >>> emotion_from_id("M003_front_happy_level_1_001"), emotion_from_id("clip7")
    ('happy', None)
    """
    tokens = set(re.split(r"[^a-z]+", clip_id.lower()))
    found = [e for e in EMOTIONS if e in tokens]
    return found[0] if len(found) == 1 else None


def _driving_audio(gt: Path, pred: Path) -> np.ndarray | None:
    for cand in (pred.with_suffix(".wav"), pred, gt.with_suffix(".wav"), gt):
        if cand.exists():
            try:
                return read_audio(cand, SAMPLE_RATE)
            except ClipRejected:
                continue
    return None


class Suite:
    """Loaded networks + per-clip evaluation; ``run`` does a whole folder pair."""

    def __init__(self, config: SuiteConfig = SuiteConfig()) -> None:
        self.cfg = config
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.backends: dict[str, str] = dict(config.backends)
        self.notes: list[str] = []
        self.sync_net = None
        if config.sync_weights:
            self.sync_net = syncnet.load(config.sync_weights).to(self.device)
            self.backends["sync"] = self.sync_net.backend
        else:
            self.notes.append("LSE-C/LSE-D not computed: no SyncNet weights given")
        self.emo_net = None
        if config.emotion_weights:
            self.emo_net, self.backends["emotion"] = emotion_net.load(config.emotion_weights)
            self.emo_net.to(self.device)
        else:
            self.notes.append("Acc_emo not computed: no emotion classifier weights given")
        self.features = config.fid_backend or fidm.default_backend(self.device, config.weights_cache)
        self.backends["fid"] = self.features.label
        lm = config.landmarker
        if isinstance(lm, str):
            lm = landmarks.Dlib68() if lm == "dlib68" else None
        self.landmarker = lm
        if lm is not None:
            self.backends["lmd"] = getattr(lm, "label", "custom")
        else:
            self.notes.append("M-/F-LMD not computed: no landmark backend")

    def clip(self, clip_id: str, gt_path: Path, pred_path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
        """One clip's row plus its GT and generated frame features (for FID/FD)."""
        gt, _ = read_frames(gt_path)
        pred, _ = read_frames(pred_path)
        if pred.shape[1:3] != gt.shape[1:3]:
            h, w = gt.shape[1:3]
            pred = np.stack([cv2.resize(f, (w, h)) for f in pred])
        g, p = pair(gt, pred)
        psnr = image.psnr_frames(g, p)
        ssim = image.ssim_frames(g, p)
        row: dict = {"clip_id": clip_id, "frames_gt": len(gt), "frames_pred": len(pred),
                     "pairs": len(g), "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
                     "psnr_sum": float(np.sum(psnr)), "ssim_sum": float(np.sum(ssim))}
        if self.landmarker is not None:
            lg, vg = self.landmarker(gt)
            lp, vp = self.landmarker(pred)
            row.update(landmarks.lmd(lg, lp, vg, vp))
            gi, pi = pair_indices(len(gt), len(pred))
            row["lmd_valid"] = int((vg[gi] & vp[pi]).sum())
        if self.sync_net is not None:
            row.update(self._sync(pred, gt_path, pred_path))
        if self.emo_net is not None:
            label = (self.cfg.labels or {}).get(clip_id) or emotion_from_id(clip_id)
            pred_cls = emotion_net.predict_video(pred, self.emo_net, self.cfg.emotion_max_frames, self.device)
            row.update(emotion_pred=EMOTIONS[pred_cls], emotion_label=label)
        return row, self.features(gt), self.features(pred)

    def _sync(self, pred: np.ndarray, gt_path: Path, pred_path: Path) -> dict:
        """LSE-C/LSE-D/offset of the generated frames, or the reason they are missing."""
        audio = _driving_audio(gt_path, pred_path)
        if audio is None:
            return {"sync_error": "no driving audio found"}
        try:
            s = sync.score(pred, audio, SAMPLE_RATE, self.sync_net, self.cfg.sync_batch,
                           device=self.device)
        except ValueError as exc:
            return {"sync_error": str(exc)}
        return {"lse_c": s.lse_c, "lse_d": s.lse_d, "sync_offset": s.offset}

    def run(self, gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, method: str,
            out_dir: str | os.PathLike | None = None, progress: bool = True) -> dict:
        """Evaluate all matched clips; write ``clips.parquet`` and ``summary.json`` to ``out_dir``."""
        t0 = time.perf_counter()
        rows, fg, fp, failed = [], [], [], []
        for clip_id, g, p in tqdm(match_clips(gt_dir, pred_dir), desc=f"evaluate {method}",
                                  disable=not progress, unit="clip"):
            try:
                row, a, b = self.clip(clip_id, g, p)
            except (ClipRejected, ValueError) as exc:
                failed.append({"clip_id": clip_id, "reason": str(exc)})
                continue
            rows.append({"method": method, **row})
            fg.append(a)
            fp.append(b)
        if not rows:
            raise ValueError(f"no clip could be evaluated: {failed[:3]}")
        df = pd.DataFrame(rows)
        summary = {"method": method, "dataset": self.cfg.dataset,
                   "metrics": self._aggregate(df, np.concatenate(fg), np.concatenate(fp)),
                   "backends": self.backends, "clips": len(rows), "failed": failed,
                   "notes": self.notes, "sync_mode": "direct", "seconds": time.perf_counter() - t0}
        if out_dir is not None:
            out = Path(out_dir)
            with atomic.atomic_path(out / "clips.parquet") as tmp:
                df.to_parquet(tmp, index=False)
            atomic.write_json(out / "summary.json", summary)
        return summary

    def _aggregate(self, df: pd.DataFrame, fg: np.ndarray, fp: np.ndarray) -> dict[str, float]:
        m: dict[str, float] = {"psnr": float(df.psnr_sum.sum() / df.pairs.sum()),
                               "ssim": float(df.ssim_sum.sum() / df.pairs.sum())}
        if "m_lmd" in df:
            m["m_lmd"], m["f_lmd"] = float(df.m_lmd.mean()), float(df.f_lmd.mean())
        if len(fg) >= 2 and len(fp) >= 2:
            m[self.features.label] = fidm.frame_set_distance(fg, fp)
        if "lse_c" in df and df.lse_c.notna().any():
            b = self.backends["sync"]
            m[f"lse_c[{b}]"], m[f"lse_d[{b}]"] = float(df.lse_c.mean()), float(df.lse_d.mean())
        known = df[df.emotion_label.isin(EMOTIONS)] if "emotion_pred" in df else df.iloc[:0]
        if len(known):
            acc = emo.video_accuracy(known.emotion_pred.map(EMOTIONS.index).to_numpy(),
                                     known.emotion_label.map(EMOTIONS.index).to_numpy())
            m[f"acc_emo[{self.backends['emotion']}]"] = acc
        return m


def evaluate(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, method: str,
             out_dir: str | os.PathLike | None = None, config: SuiteConfig = SuiteConfig(),
             progress: bool = True) -> dict:
    """Convenience: ``Suite(config).run(...)``."""
    return Suite(config).run(gt_dir, pred_dir, method, out_dir, progress)
