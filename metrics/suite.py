"""Every metric over paired videos: ground-truth folder vs generated folder, by clip id.

Clips are matched by file stem (``match_clips``: a generated video without ground truth is
an error listing the names; ``strict`` makes missing generated videos one too). Both videos
of a clip are streamed frame by frame (``metrics.stream``): no clip is ever held whole.
Per clip: PSNR/SSIM over ``linspace``-paired frames (generated frames resized to the
ground truth's size when they differ, bilinear),
M-/F-LMD from a landmark backend, LSE-C/LSE-D on the generated frames against the
driving audio (``<stem>.wav`` beside the generated video, else its own audio track,
else the ground truth's), the emotion class, and frame features for the set-level
Fréchet distance; with ``extras``, CSIM/LPIPS/CPBD on evenly spaced sampled pairs and
head-motion diversity/beat alignment from the generated frames' landmarks. Dataset
scores: PSNR/SSIM pooled over all paired frames, LMD, LSE and the extras averaged over
videos, FID/FD over all frames, Acc_emo over videos.

Metric keys carry their backends: ``lse_c[syncnet_v2]``, ``lse_c[syncnet:trained-here@<hash>]``,
``fid`` (pytorch-fid Inception) or ``fd[rgb-pool8]``, ``m_lmd`` with ``backends["lmd"]``.
"""

from __future__ import annotations

import glob
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
from edtalk.data.media import read_audio
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.schema import EMOTIONS, SAMPLE_RATE
from edtalk.experts import emotion_net, syncnet
from edtalk.experts.syncnet import SYNC_FRAMES
from metrics import emotion as emo
from metrics import fid as fidm
from metrics import image, landmarks, stream
from metrics.align import pair_indices

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
    audio_dir: str | os.PathLike | None = None          # driving audio <clip id>.wav, before any other
    extras: bool = False                                 # CSIM, LPIPS, CPBD, diversity, beat alignment
    extras_frames: int = 32                              # evenly spaced pairs those are scored on
    backends: dict[str, str] = field(default_factory=dict)


def index_videos(d: str | os.PathLike) -> dict[str, Path]:
    """Clip id (file stem) -> video path for every video under folder ``d`` or matching
    glob ``d`` (``"out/*_gen.mp4"``); ValueError on a stem found twice."""
    d = str(d)
    if any(c in d for c in "*?["):
        found = sorted(Path(p) for p in glob.glob(d, recursive=True))
    elif Path(d).is_dir():
        found = sorted(Path(d).rglob("*"))
    else:
        raise ValueError(f"not a folder nor a glob: {d}")
    out: dict[str, Path] = {}
    for p in found:
        if p.is_file() and p.suffix.lower() in VIDEO_EXT:
            if p.stem in out:
                raise ValueError(f"clip id {p.stem!r} twice under {d}: {out[p.stem]} and {p}")
            out[p.stem] = p
    return out


def _names(ids: list[str], limit: int = 20) -> str:
    more = f" ... and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def match_clips(gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, strict: bool = False
                ) -> list[tuple[str, Path, Path]]:
    """(clip id, gt path, pred path) for every stem present in both, sorted by id.

    ``strict``: a stem on one side only is an error that lists them all (the command
    line's default); otherwise ground-truth clips without a generated video are skipped
    (the pipeline scores a method on the clips it generated), but a generated video
    without ground truth is always an error: it would silently go unscored.
    """
    gt, pred = index_videos(gt_dir), index_videos(pred_dir)
    common = sorted(set(gt) & set(pred))
    no_gt = sorted(set(pred) - set(gt))
    no_pred = sorted(set(gt) - set(pred)) if strict else []
    if no_gt or no_pred or not common:
        parts = []
        if no_gt:
            parts.append(f"{len(no_gt)} generated video(s) without ground truth in {gt_dir}: {_names(no_gt)}")
        if no_pred:
            parts.append(f"{len(no_pred)} ground-truth video(s) without a generated one in {pred_dir}: "
                         f"{_names(no_pred)}")
        if not common:
            parts.append(f"no clip id in common between {gt_dir} ({len(gt)} videos) "
                         f"and {pred_dir} ({len(pred)} videos)")
        raise ValueError("clips do not match by file name (stem): " + "; ".join(parts))
    return [(c, gt[c], pred[c]) for c in common]


def emotion_from_id(clip_id: str) -> str | None:
    """The MEAD emotion named in a clip id, if exactly one is.

    >>> emotion_from_id("M003_front_happy_level_1_001"), emotion_from_id("clip7")
    ('happy', None)
    """
    tokens = set(re.split(r"[^a-z]+", clip_id.lower()))
    found = [e for e in EMOTIONS if e in tokens]
    return found[0] if len(found) == 1 else None


def _driving_audio(gt: Path, pred: Path, audio_dir: str | os.PathLike | None = None
                   ) -> np.ndarray | None:
    """``<audio_dir>/<stem>.wav`` when given, else the first of: wav beside the generated
    video, its own audio track, wav beside the ground truth, the ground truth's track."""
    first = [Path(audio_dir) / f"{pred.stem}.wav"] if audio_dir else []
    for cand in (*first, pred.with_suffix(".wav"), pred, gt.with_suffix(".wav"), gt):
        if cand.exists():
            try:
                return read_audio(cand, SAMPLE_RATE)
            except ClipRejected:
                continue
    return None


def _frame_extras(gt: np.ndarray, pred: np.ndarray, gt_head: np.ndarray, device: str) -> dict:
    """CSIM, LPIPS, CPBD on sampled pairs: ``<name>`` value and ``<name>_backend``, or
    ``<name>_error`` with the reason (missing weights, no face)."""
    from metrics import identity, lpips_metric, sharpness

    out: dict = {}

    def put(name: str, fn: Callable[[], tuple[float, str]]) -> None:
        try:
            out[name], out[f"{name}_backend"] = fn()
        except Exception as exc:                  # one metric's failure must not lose the clip
            out[f"{name}_error"] = f"{type(exc).__name__}: {exc}"

    put("csim", lambda: identity.csim(pred, gt_head, max_frames=None))
    ok, why = lpips_metric.lpips_available()
    if ok:
        put("lpips", lambda: lpips_metric.lpips(pred, gt, device=device))
    else:
        out["lpips_error"] = why
    put("cpbd", lambda: sharpness.cpbd(pred, max_frames=None))
    return out


def _motion_extras(lm: np.ndarray, valid: np.ndarray, fps: float, gt_path: Path, pred_path: Path,
                   audio_dir: str | os.PathLike | None) -> dict:
    """Head-motion diversity and beat alignment from the generated frames' landmarks."""
    from metrics import motion_stats

    lm = np.where(valid[:, None, None], lm, np.nan)
    out: dict = {}
    try:
        out["head_motion_diversity"], out["head_motion_diversity_backend"] = \
            motion_stats.head_motion_diversity(lm)
        audio = _driving_audio(gt_path, pred_path, audio_dir)
        if audio is not None:
            out["beat_align"], out["beat_align_backend"] = motion_stats.beat_alignment(
                lm, audio, SAMPLE_RATE, fps)
    except ValueError as exc:
        out["motion_error"] = str(exc)
    return out


class _ClipWalk:
    """Accumulates one clip's metrics while its frames stream past, in chunks of ``CHUNK``:
    every GT and generated frame feeds the FID features, every generated frame SyncNet,
    every pair PSNR/SSIM/landmarks, the sampled generated frames the emotion classifier."""

    CHUNK = 64

    def __init__(self, suite: "Suite", n_gt: int, n_pred: int, gt_path: Path, pred_path: Path) -> None:
        self.s = suite
        self.n_gt, self.n_pred = n_gt, n_pred
        self.hw: tuple[int, int] | None = None
        self.buf: dict[str, list[np.ndarray]] = {"gt": [], "pred": []}
        self.feats: dict[str, list[np.ndarray]] = {"gt": [], "pred": []}
        self.pairs: list[tuple[np.ndarray, np.ndarray]] = []
        self.psnr: list[np.ndarray] = []
        self.ssim: list[np.ndarray] = []
        self.lm: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self.p_index = 0
        self.row: dict = {}
        self.lips = None
        if suite.sync_net is not None:
            self.lips, self.row = suite._sync_stream(n_pred, gt_path, pred_path)
        self.emo_at: set[int] = set()
        self.emo_frames: list[np.ndarray] = []
        self.k = 0
        n_pairs = min(n_gt, n_pred)
        self.sample_at = set(np.linspace(0, n_pairs, min(n_pairs, suite.cfg.extras_frames), endpoint=False)
                             .astype(int).tolist()) if suite.cfg.extras else set()
        self.samples: list[tuple[np.ndarray, np.ndarray]] = []
        self.gt_head: list[np.ndarray] = []       # first GT frames: CSIM's source face
        self.audio_path = (gt_path, pred_path)
        if suite.emo_net is not None:
            m = suite.cfg.emotion_max_frames
            take = np.arange(n_pred) if m is None or n_pred <= m else \
                np.linspace(0, n_pred, m, endpoint=False).astype(int)
            self.emo_at = set(take.tolist())

    def _features(self, side: str, final: bool = False) -> None:
        if self.buf[side] and (final or len(self.buf[side]) >= self.CHUNK):
            self.feats[side].append(self.s.features(np.stack(self.buf[side])))
            self.buf[side] = []

    def gt_frame(self, frame: np.ndarray) -> None:
        if self.hw is None:
            self.hw = frame.shape[:2]
        self.buf["gt"].append(frame)
        self._features("gt")

    def pred_frame(self, frame: np.ndarray) -> np.ndarray:
        """Resize to the GT size (bilinear) when it differs, feed the streams; return it."""
        if self.hw is not None and frame.shape[:2] != self.hw:
            frame = cv2.resize(frame, (self.hw[1], self.hw[0]))
        if self.lips is not None:
            self.lips.push(frame)
        if self.p_index in self.emo_at:
            self.emo_frames.append(frame)
        self.p_index += 1
        self.buf["pred"].append(frame)
        self._features("pred")
        return frame

    def pair(self, gt: np.ndarray, pred: np.ndarray) -> None:
        if self.k in self.sample_at:
            self.samples.append((gt, pred))
        if self.s.cfg.extras and len(self.gt_head) < 8:
            self.gt_head.append(gt)
        self.k += 1
        self.pairs.append((gt, pred))
        if len(self.pairs) >= self.CHUNK:
            self._flush_pairs()

    def _flush_pairs(self) -> None:
        if not self.pairs:
            return
        g = np.stack([a for a, _ in self.pairs])
        p = np.stack([b for _, b in self.pairs])
        self.pairs = []
        self.psnr.append(image.psnr_frames(g, p))
        self.ssim.append(image.ssim_frames(g, p))
        if self.s.landmarker is not None:
            self.lm.append((*self.s.landmarker(g), *self.s.landmarker(p)))

    def finish(self, clip_id: str) -> tuple[dict, np.ndarray, np.ndarray]:
        self._flush_pairs()
        self._features("gt", final=True)
        self._features("pred", final=True)
        psnr, ssim = np.concatenate(self.psnr), np.concatenate(self.ssim)
        row: dict = {"clip_id": clip_id, "frames_gt": self.n_gt, "frames_pred": self.n_pred,
                     "pairs": len(psnr), "psnr": float(np.mean(psnr)), "ssim": float(np.mean(ssim)),
                     "psnr_sum": float(np.sum(psnr)), "ssim_sum": float(np.sum(ssim))}
        if self.lm:
            lg, vg, lp, vp = (np.concatenate([c[i] for c in self.lm]) for i in range(4))
            row.update(landmarks.lmd(lg, lp, vg, vp))
            row["lmd_valid"] = int((vg & vp).sum())
            if self.s.cfg.extras:
                # landmarks of the paired frames: a subsample when the prediction is longer
                fps = 25.0 * len(lp) / self.n_pred
                row.update(_motion_extras(lp, vp, fps, *self.audio_path, self.s.cfg.audio_dir))
        if self.samples:
            row.update(_frame_extras(np.stack([g for g, _ in self.samples]),
                                     np.stack([p for _, p in self.samples]), np.stack(self.gt_head),
                                     self.s.device))
        row.update(self.row)
        if self.lips is not None:
            s = self.lips.result()
            row.update(lse_c=s.lse_c, lse_d=s.lse_d, sync_offset=s.offset, sync_windows=s.windows,
                       sync_short=s.windows < stream.FULL_SEARCH_FRAMES - SYNC_FRAMES)
        if self.s.emo_net is not None:
            label = (self.s.cfg.labels or {}).get(clip_id) or emotion_from_id(clip_id)
            cls = emotion_net.predict_video(np.stack(self.emo_frames), self.s.emo_net, None, self.s.device)
            row.update(emotion_pred=EMOTIONS[cls], emotion_label=label)
        return row, np.concatenate(self.feats["gt"]), np.concatenate(self.feats["pred"])


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

    def clip(self, clip_id: str, gt_path: Path, pred_path: Path, progress: bool = False
             ) -> tuple[dict, np.ndarray, np.ndarray]:
        """One clip's row plus its GT and generated frame features (for FID/FD).

        Streams both videos (see ``metrics.stream``): memory stays bounded by the chunk
        size whatever the clip's length.
        """
        n_gt, n_pred = stream.count_frames(gt_path), stream.count_frames(pred_path)
        if not n_gt or not n_pred:
            raise ClipRejected(Reason.CORRUPT, f"no video frame in {gt_path.name if not n_gt else pred_path.name}")
        gi, pi = pair_indices(n_gt, n_pred)
        walk = _ClipWalk(self, n_gt, n_pred, gt_path, pred_path)
        gt_it, pred_it = stream.frames(gt_path), stream.frames(pred_path)
        g_at, p_at, g_frame, p_frame = -1, -1, None, None
        bar = tqdm(total=len(gi), desc=clip_id, unit="frame", leave=False, disable=not progress)
        for k in range(len(gi)):
            while g_at < gi[k]:
                g_frame, g_at = next(gt_it), g_at + 1
                walk.gt_frame(g_frame)
            while p_at < pi[k]:
                p_frame, p_at = walk.pred_frame(next(pred_it)), p_at + 1
            walk.pair(g_frame, p_frame)
            bar.update(1)
        for g_frame in gt_it:                      # frames after the last pair still count for FID
            walk.gt_frame(g_frame)
        for p_frame in pred_it:
            walk.pred_frame(p_frame)
        bar.close()
        return walk.finish(clip_id)

    def _sync_stream(self, n_pred: int, gt_path: Path, pred_path: Path) -> tuple[stream.LipStream | None, dict]:
        """A LipStream for the generated video, or the reason LSE is missing."""
        audio = _driving_audio(gt_path, pred_path, self.cfg.audio_dir)
        if audio is None:
            return None, {"sync_error": "no driving audio found"}
        try:
            return stream.LipStream(self.sync_net, n_pred, audio, self.cfg.sync_batch, self.device), {}
        except ValueError as exc:
            return None, {"sync_error": str(exc)}

    def run(self, gt_dir: str | os.PathLike, pred_dir: str | os.PathLike, method: str,
            out_dir: str | os.PathLike | None = None, progress: bool = True,
            strict: bool = False) -> dict:
        """Evaluate all matched clips; write ``clips.parquet`` and ``summary.json`` to ``out_dir``.

        ``strict``: unmatched file names on either side are an error (``match_clips``).
        """
        return self.run_pairs(match_clips(gt_dir, pred_dir, strict), method, out_dir, progress)

    def run_pairs(self, pairs: list[tuple[str, Path, Path]], method: str,
                  out_dir: str | os.PathLike | None = None, progress: bool = True,
                  failed: list[dict] | None = None) -> dict:
        """``run`` over given (clip id, gt, pred) triples; ``failed`` seeds the failure list
        (clips already rejected upstream, e.g. by the cropper)."""
        t0 = time.perf_counter()
        rows, fg, fp, failed = [], [], [], list(failed or [])
        for clip_id, g, p in tqdm(pairs, desc=f"evaluate {method}", disable=not progress, unit="clip"):
            try:
                row, a, b = self.clip(clip_id, g, p, progress)
            except StopIteration:
                failed.append({"clip_id": clip_id, "reason": "truncated: fewer frames decode than the "
                               "container holds"})
                continue
            except (ClipRejected, ValueError) as exc:
                failed.append({"clip_id": clip_id, "reason": str(exc)})
                continue
            rows.append({"method": method, **row})
            fg.append(a)
            fp.append(b)
        if not rows:
            raise ValueError(f"no clip could be evaluated: {failed[:3]}")
        df = pd.DataFrame(rows)
        short = int(df.sync_short.sum()) if "sync_short" in df else 0
        notes = self.notes + ([f"{short} clip(s) shorter than {stream.FULL_SEARCH_FRAMES} frames: "
                               "some of their 31 sync offsets compare only against zero padding"]
                              if short else [])
        summary = {"method": method, "dataset": self.cfg.dataset,
                   "metrics": self._aggregate(df, np.concatenate(fg), np.concatenate(fp)),
                   "backends": self.backends, "clips": len(rows), "failed": failed,
                   "notes": notes, "sync_mode": "direct", "seconds": time.perf_counter() - t0}
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
        for name in ("csim", "lpips", "cpbd", "head_motion_diversity", "beat_align"):
            if name in df and df[name].notna().any():
                b = df[f"{name}_backend"].dropna().iloc[0]
                self.backends[name] = b
                m[f"{name}[{b}]"] = float(df[name].mean())
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
