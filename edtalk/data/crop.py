"""FOMM-style face cropping of one clip.

Steps (``crop_clip``):

1. decode, pick the source frames of a 25 fps output (``media.resample_frame_indices``);
2. detect faces on every ``detect_every``-th output frame and link detections into
   tubes by IoU with each tube's latest box (FOMM's tracking);
3. keep the tube that spans the clip; reject the clip when the face is missing from
   most frames (``no_face``) or a second face is present in a large share of them
   (``multiple_faces``);
4. per frame: enlarge the box by ``increase`` on every side (FOMM), make it square,
   smooth centre and side over ``smooth_window`` frames (running median against
   detector outliers, then a moving average against jitter), round to whole pixels;
5. cut the square out (zero padding where it leaves the frame), resize to ``size``
   (area interpolation when shrinking, cubic when enlarging), write mp4 + 16 kHz wav.

The transform from source pixels to crop pixels is kept (``CropMapping``) so that
points known in the source (synthetic ground-truth landmarks) can be carried into crop
space exactly. With pixel centres at integer coordinates and OpenCV's resize
convention, a source point x in the box starting at integer x0 with side s lands at
``u = (x - x0 + 0.5) * size / s - 0.5`` (same for y).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from edtalk.data import media
from edtalk.data.detect import Detector, Face
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.schema import BOXES, FPS


# --- geometry ------------------------------------------------------------------------

def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes (..., 4) broadcast against (..., 4)."""
    ix = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    iy = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = ix * iy
    area = lambda z: (z[..., 2] - z[..., 0]) * (z[..., 3] - z[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


@dataclass
class Tube:
    """Detections of one face over time: sampled-frame positions and their boxes."""

    steps: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)


def build_tubes(detections: list[list[Face]], iou_threshold: float) -> list[Tube]:
    """Link per-frame detections into tubes, longest first.

    A detection joins the tube whose latest box overlaps it most (IoU at least
    ``iou_threshold``, one detection per tube per frame); otherwise it starts a tube.
    """
    tubes: list[Tube] = []
    for step, faces in enumerate(detections):
        taken: set[int] = set()
        # Most confident faces claim their tube first.
        for face in sorted(faces, key=lambda f: -f.score):
            best, best_iou = -1, iou_threshold
            for k, tube in enumerate(tubes):
                if k in taken:
                    continue
                overlap = float(iou(tube.boxes[-1], face.box))
                if overlap >= best_iou:
                    best, best_iou = k, overlap
            if best < 0:
                tubes.append(Tube())
                best = len(tubes) - 1
            tubes[best].steps.append(step)
            tubes[best].boxes.append(np.asarray(face.box, dtype=np.float64))
            taken.add(best)
    return sorted(tubes, key=lambda t: -len(t.steps))


def _running(values: np.ndarray, window: int, reduce: Any) -> np.ndarray:
    """Centred running statistic over axis 0 with edge padding (output length = input)."""
    if window <= 1 or len(values) < 2:
        return values
    window = min(window, len(values)) | 1  # odd, so the window is centred
    half = window // 2
    padded = np.pad(values, [(half, half)] + [(0, 0)] * (values.ndim - 1), mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)
    return reduce(view, axis=-1)


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Smooth (T, 4) boxes over time: running median, then running mean, on box coords."""
    return _running(_running(boxes, window, np.median), window, np.mean)


def square_boxes(boxes: np.ndarray, increase: float) -> np.ndarray:
    """(T, 4) boxes -> (T, 3) centre x, centre y, side: square, enlarged by ``increase``.

    Like FOMM, the box grows by ``increase`` x its size on each side; the square takes
    the longer edge so the whole face stays in view.
    """
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    side = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) * (1 + 2 * increase)
    return np.stack([cx, cy, side], axis=1)


def integer_boxes(squares: np.ndarray) -> np.ndarray:
    """(T, 3) centre/side -> (T, 4) whole-pixel square boxes x0, y0, x1, y1."""
    side = np.maximum(np.round(squares[:, 2]), 2)
    x0 = np.round(squares[:, 0] - side / 2)
    y0 = np.round(squares[:, 1] - side / 2)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


@dataclass(frozen=True)
class CropMapping:
    """Source pixels -> crop pixels, per output frame.

    ``source_frames[i]`` is the source frame shown in output frame i; ``boxes[i]`` its
    whole-pixel square box (x0, y0, x1, y1) in source pixels; ``size`` the crop side.
    """

    size: int
    source_frames: np.ndarray
    boxes: np.ndarray

    @property
    def scale(self) -> np.ndarray:
        """Crop pixels per source pixel, per output frame (T,)."""
        return self.size / (self.boxes[:, 2] - self.boxes[:, 0])

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Points (T, K, 2) given per *output* frame in source pixels -> crop pixels."""
        s = self.scale[:, None, None]
        return (points - self.boxes[:, None, :2] + 0.5) * s - 0.5

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Inverse of ``to_crop``."""
        s = self.scale[:, None, None]
        return (points + 0.5) / s - 0.5 + self.boxes[:, None, :2]

    def source_to_crop(self, points_src: np.ndarray) -> np.ndarray:
        """Points (T_src, K, 2) per *source* frame -> (T_out, K, 2) in crop pixels."""
        points_src = np.asarray(points_src, dtype=np.float64)
        if points_src.ndim == 2:  # flat x0, y0, x1, y1, ... rows as stored in parquet
            points_src = points_src.reshape(len(points_src), -1, 2)
        if len(points_src) == 0:
            raise ValueError("no source points")
        idx = np.minimum(self.source_frames, len(points_src) - 1)
        return self.to_crop(points_src[idx])

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (e.g. for a stage's per-clip stamp)."""
        return {"size": int(self.size), "source_frames": self.source_frames.tolist(),
                "boxes": self.boxes.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CropMapping":
        return cls(int(d["size"]), np.asarray(d["source_frames"], dtype=np.int64),
                   np.asarray(d["boxes"], dtype=np.float64))

    @classmethod
    def from_boxes(cls, boxes: pd.DataFrame, size: int,
                   source_frames: np.ndarray | None = None) -> "CropMapping":
        """From a BOXES table of one clip (sorted by frame).

        ``source_frames`` defaults to the identity (a 25 fps source); otherwise pass
        ``media.resample_frame_indices(n_src, src_fps)``.
        """
        boxes = boxes.sort_values("frame")
        arr = boxes[["x0", "y0", "x1", "y1"]].to_numpy(np.float64)
        if source_frames is None:
            source_frames = boxes["frame"].to_numpy(np.int64)
        return cls(int(size), np.asarray(source_frames, dtype=np.int64), arr)


def crop_frame(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """Cut the whole-pixel square ``box`` out of ``frame`` (zero padded), resize to ``size``."""
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    side = x1 - x0
    ax0, ay0, ax1, ay1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if ax0 >= ax1 or ay0 >= ay1:
        patch = np.zeros((side, side, 3), np.uint8)
    else:
        patch = frame[ay0:ay1, ax0:ax1]
        if (ax0, ay0, ax1, ay1) != (x0, y0, x1, y1):
            patch = cv2.copyMakeBorder(patch, ay0 - y0, y1 - ay1, ax0 - x0, x1 - ax1,
                                       cv2.BORDER_CONSTANT, value=(0, 0, 0))
    if side == size:
        return np.ascontiguousarray(patch)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interp)


# --- the clip ----------------------------------------------------------------------------

@dataclass
class CropResult:
    """What ``crop_clip`` produced for one clip."""

    clip_id: str
    frames: np.ndarray              # (T, size, size, 3) uint8, as encoded
    audio: np.ndarray               # float32 mono 16 kHz, exactly T * 640 samples
    boxes: pd.DataFrame             # BOXES schema, smoothed whole-pixel boxes per output frame
    mapping: CropMapping
    landmarks: np.ndarray | None    # (T, 68, 2) ground truth in crop pixels, when given
    face_share: float               # share of sampled frames where the kept face was detected
    has_audio: bool

    @property
    def n_frames(self) -> int:
        return len(self.frames)


def _track(detector: Detector, frames: np.ndarray, source_frames: np.ndarray,
           detect_every: int, iou_threshold: float, min_face_share: float,
           max_other_share: float) -> tuple[np.ndarray, float]:
    """Per-output-frame raw boxes (T, 4) of the one face tube, and its coverage."""
    n = len(source_frames)
    steps = np.unique(np.r_[np.arange(0, n, max(1, detect_every)), n - 1])
    detections = [detector.detect(frames[source_frames[t]], index=int(source_frames[t]))
                  for t in steps]
    tubes = build_tubes(detections, iou_threshold)
    if not tubes:
        raise ClipRejected(Reason.NO_FACE, f"no face in any of {len(steps)} sampled frames")
    share = len(tubes[0].steps) / len(steps)
    if share < min_face_share:
        raise ClipRejected(
            Reason.NO_FACE, f"the face is found in only {share:.0%} of {len(steps)} sampled frames")
    if len(tubes) > 1:
        other = len(tubes[1].steps) / len(steps)
        if other >= max_other_share:
            raise ClipRejected(
                Reason.MULTIPLE_FACES,
                f"a second face is present in {other:.0%} of {len(steps)} sampled frames")
    # Fill frames without a detection (and those not sampled) by linear interpolation
    # between the tube's detections, holding the first/last box at the ends.
    known_t = steps[np.asarray(tubes[0].steps)]
    known = np.stack(tubes[0].boxes)
    t = np.arange(n)
    boxes = np.stack([np.interp(t, known_t, known[:, j]) for j in range(4)], axis=1)
    return boxes, share


def crop_clip(
    video_path: str | Path,
    audio_path: str | Path | None,
    out_video: str | Path,
    out_wav: str | Path,
    size: int,
    detector: Detector,
    increase: float = 0.1,
    iou_threshold: float = 0.2,
    smooth_window: int = 9,
    gt_landmarks: np.ndarray | None = None,
    clip_id: str | None = None,
    detect_every: int = 1,
    min_face_share: float = 0.5,
    max_other_share: float = 0.3,
    require_audio: bool = True,
) -> CropResult:
    """Crop one clip around its single face; write ``out_video`` (mp4 + AAC) and ``out_wav``.

    ``audio_path`` None takes the audio from the video file. ``gt_landmarks`` (T_src, 68, 2)
    in source pixels (optional) are returned in crop pixels. Raises ``ClipRejected``
    (no_face, multiple_faces, no_audio_stream, corrupt, ...) for bad clips.
    """
    clip_id = clip_id or Path(video_path).stem
    frames, fps = media.read_frames(video_path)
    source_frames = media.resample_frame_indices(len(frames), fps, FPS)
    if len(source_frames) == 0:
        raise ClipRejected(Reason.TOO_SHORT, f"{len(frames)} frames at {fps} fps")

    raw, share = _track(detector, frames, source_frames, detect_every, iou_threshold,
                        min_face_share, max_other_share)
    squares = smooth_boxes(square_boxes(raw, increase), smooth_window)
    boxes = integer_boxes(squares)
    mapping = CropMapping(int(size), source_frames, boxes)
    crops = np.stack([crop_frame(frames[s], b, size) for s, b in zip(source_frames, boxes)])
    del frames

    try:
        audio = media.read_audio(audio_path if audio_path is not None else video_path)
        has_audio = True
    except ClipRejected as exc:
        if require_audio or exc.reason != Reason.NO_AUDIO:
            raise
        audio, has_audio = np.zeros(0, np.float32), False
    audio = media.fit_audio(audio, len(crops))

    media.write_video(out_video, crops, fps=FPS, audio=audio if has_audio else None)
    media.write_wav(out_wav, audio)

    table = pd.DataFrame({
        "clip_id": clip_id, "frame": np.arange(len(crops), dtype=np.int32),
        "x0": boxes[:, 0], "y0": boxes[:, 1], "x1": boxes[:, 2], "y1": boxes[:, 3],
        "detector": detector.name,
    })[BOXES.names]
    landmarks = mapping.source_to_crop(gt_landmarks) if gt_landmarks is not None else None
    return CropResult(clip_id, crops, audio, table, mapping, landmarks, share, has_audio)
