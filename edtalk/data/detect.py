"""Face detection and 68-point landmarks behind one small interface.

Backends (``make_detector(name)``):

- ``dlib``: HOG frontal-face detector + the 68-point shape predictor shipped in the
  ``face-recognition-models`` wheel. Works offline; the default for real faces.
- ``face_alignment``: the face-alignment package (S3FD detector + 2D-FAN-4). Its weights
  are not in any wheel: they must already sit in the torch hub cache
  (``$TORCH_HOME/hub/checkpoints``); otherwise construction raises ``MissingWeights``
  naming the file and the folder, and nothing is downloaded.
- ``groundtruth``: boxes and landmarks known in advance (the synthetic corpus), looked
  up by frame index.

Models load lazily (nothing at import time) and once per process: every detector of a
backend shares one model instance, guarded by a lock so that thread-based task runners
can share it too.

All coordinates are in the pixels of the frame passed in, with pixel centres at integer
positions (dlib's and face-alignment's convention). Boxes are ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edtalk.data.schema import N_LANDMARKS
from edtalk.weights import REGISTRY, MissingWeights  # one exception type for every missing file

if TYPE_CHECKING:
    import pandas as pd

BACKENDS: tuple[str, ...] = ("dlib", "face_alignment", "groundtruth")

SOURCE_SHORT_SIDE = 480
"""Detection size for raw video frames, whose face size is unknown (see detection_scale)."""
CROP_SHORT_SIDE = 160
"""Detection size for face crops: the face fills most of the crop, so ~160 px puts it
well above dlib's minimum at a sixth of the cost of 480 px."""


@dataclass(frozen=True)
class Face:
    """One detected face: box (x0, y0, x1, y1), detector score, optional (68, 2) landmarks."""

    box: np.ndarray
    score: float = 1.0
    landmarks: np.ndarray | None = None


class Detector(abc.ABC):
    """Interface: ``detect`` returns every face of one RGB uint8 frame (H, W, 3).

    ``index`` is the frame's position in its clip; only the ``groundtruth`` backend
    needs it. ``with_landmarks`` asks for landmarks as well (slower for model backends).
    """

    name: str = "base"

    @abc.abstractmethod
    def detect(self, frame: np.ndarray, index: int | None = None,
               with_landmarks: bool = False) -> list[Face]:
        """Every face found in ``frame`` (an empty list when there is none)."""


# --- scaling: detectors have a preferred face size ------------------------------------

def detection_scale(height: int, width: int, short_side: int) -> float:
    """Factor that brings the frame's shorter side to ``short_side`` pixels.

    dlib's HOG detector finds faces of roughly 80 px and up; talking-head faces fill a
    large share of the frame, so a 480 px short side keeps them well above that while
    making 1080p frames ~5x cheaper, and small frames (the 96 px synthetic clips, 64 px
    crops) get enlarged so that their faces become detectable at all.
    """
    return float(short_side) / float(min(height, width))


def _resize_for_detection(frame: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1.0) < 1e-3:
        return np.ascontiguousarray(frame)
    h, w = frame.shape[:2]
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(frame, size, interpolation=interp)


def _to_frame(points: np.ndarray, frame: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Map (..., 2) x, y from the resized image back to ``frame`` pixels.

    Exact for OpenCV's resize (pixel centres at integers, edges aligned):
    x = (u + 0.5) / sx - 0.5, with the per-axis scale actually applied.
    """
    sx = small.shape[1] / frame.shape[1]
    sy = small.shape[0] / frame.shape[0]
    return (np.asarray(points, dtype=np.float64) + 0.5) / np.array([sx, sy]) - 0.5


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
    return frame


# --- dlib -------------------------------------------------------------------------------

_LOCK = threading.Lock()
_MODELS: dict[str, Any] = {}


def _dlib_models() -> tuple[Any, Any]:
    """The process-wide dlib detector and shape predictor (loaded on first use)."""
    with _LOCK:
        if "dlib" not in _MODELS:
            import dlib
            import warnings

            with warnings.catch_warnings():  # the wheel still imports pkg_resources
                warnings.simplefilter("ignore")
                import face_recognition_models

            path = face_recognition_models.pose_predictor_model_location()
            if not Path(path).is_file():
                raise MissingWeights(
                    f"dlib 68-point predictor not found at {path}; "
                    "reinstall the face-recognition-models wheel")
            _MODELS["dlib"] = (dlib.get_frontal_face_detector(), dlib.shape_predictor(path))
        return _MODELS["dlib"]


class DlibDetector(Detector):
    """HOG detector on a rescaled frame; landmarks predicted on the original frame."""

    name = "dlib"

    def __init__(self, short_side: int = SOURCE_SHORT_SIDE, upsample: int = 0,
                 min_score: float = 0.3) -> None:
        self.short_side = short_side
        self.upsample = upsample
        # dlib's own threshold (0) lets through weak false positives (e.g. the badge on
        # the astronaut's suit scores 0.0-0.2 against ~1.5 for her face); a small margin
        # removes them without losing real faces, which score ~0.8 and up even at 96 px.
        self.min_score = min_score

    def detect(self, frame: np.ndarray, index: int | None = None,
               with_landmarks: bool = False) -> list[Face]:
        import dlib

        frame = np.ascontiguousarray(_check_frame(frame))
        detector, predictor = _dlib_models()
        scale = detection_scale(*frame.shape[:2], self.short_side)
        small = _resize_for_detection(frame, scale)
        with _LOCK:  # dlib objects are not documented as thread-safe
            rects, scores, _ = detector.run(small, self.upsample, self.min_score)
        faces = []
        for rect, score in zip(rects, scores):
            corners = [[rect.left(), rect.top()], [rect.right(), rect.bottom()]]
            box = _to_frame(corners, frame, small).reshape(4)
            landmarks = None
            if with_landmarks:
                # dlib returns whole-pixel points, so the predictor runs on the larger of
                # the two images: the original when it was shrunk for detection, the
                # enlarged one for small frames (64 px crops), where it gives sub-pixel
                # precision once scaled back. Its cost depends on the number of points,
                # not on the image size.
                image = small if scale > 1 else frame
                r = rect if scale > 1 else dlib.rectangle(*(int(round(v)) for v in box))
                with _LOCK:
                    shape = predictor(image, r)
                landmarks = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
                if scale > 1:
                    landmarks = _to_frame(landmarks, frame, small)
            faces.append(Face(box=box, score=float(score), landmarks=landmarks))
        return faces


# --- face-alignment ------------------------------------------------------------------

# The files face-alignment 1.x fetches into the torch hub cache (names from the registry).
FACE_ALIGNMENT_FILES: dict[str, str] = {
    "s3fd": REGISTRY["s3fd"].filename,
    "2DFAN-4": REGISTRY["fan_2d"].filename,
}


def torch_hub_checkpoints() -> Path:
    """Where torch (and face-alignment) look for cached weight files."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _face_alignment_model(device: str) -> Any:
    key = f"face_alignment:{device}"
    with _LOCK:
        if key not in _MODELS:
            folder = torch_hub_checkpoints()
            for role, filename in FACE_ALIGNMENT_FILES.items():
                if not (folder / filename).is_file():
                    raise MissingWeights(
                        f"face_alignment backend needs its {role} weights '{filename}' in "
                        f"{folder} (set TORCH_HOME to move that folder; the file is published "
                        "by the face-alignment project at adrianbulat.com/downloads/python-fan/). "
                        "Put it there, or use the dlib backend.")
            import face_alignment

            _MODELS[key] = face_alignment.FaceAlignment(
                face_alignment.LandmarksType.TWO_D, device=device, flip_input=False,
                face_detector="sfd", compile=False)
        return _MODELS[key]


class FaceAlignmentDetector(Detector):
    """S3FD boxes + FAN landmarks from the face-alignment package."""

    name = "face_alignment"

    def __init__(self, device: str | None = None, short_side: int = SOURCE_SHORT_SIDE) -> None:
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.short_side = short_side
        self._model = _face_alignment_model(device)  # fail early, with the clear message

    def detect(self, frame: np.ndarray, index: int | None = None,
               with_landmarks: bool = False) -> list[Face]:
        frame = _check_frame(frame)
        scale = detection_scale(*frame.shape[:2], self.short_side)
        small = _resize_for_detection(frame, scale)
        with _LOCK:
            boxes = self._model.face_detector.detect_from_image(small.copy())
            if not len(boxes):
                return []
            boxes = np.asarray(boxes, dtype=np.float64)
            lms = None
            if with_landmarks:
                lms = self._model.get_landmarks_from_image(small, detected_faces=list(boxes))
        faces = []
        for i, b in enumerate(boxes):
            lm = None if lms is None else _to_frame(np.asarray(lms[i])[:, :2], frame, small)
            faces.append(Face(box=_to_frame(b[:4].reshape(2, 2), frame, small).reshape(4),
                              score=float(b[4]) if len(b) > 4 else 1.0, landmarks=lm))
        return faces


# --- ground truth ----------------------------------------------------------------------

def box_from_landmarks(landmarks: np.ndarray, forehead: float = 0.2) -> np.ndarray:
    """Detector-like boxes (..., 4) from (..., 68, 2) landmarks.

    The 68 points stop at the brows; face detectors' boxes reach a little higher, so the
    top edge is raised by ``forehead`` x the landmark height to give crops with the same
    framing as on real faces.
    """
    lo, hi = landmarks.min(axis=-2), landmarks.max(axis=-2)
    height = hi[..., 1] - lo[..., 1]
    return np.stack([lo[..., 0], lo[..., 1] - forehead * height, hi[..., 0], hi[..., 1]], axis=-1)


def groundtruth_array(gt: "pd.DataFrame", n_frames: int | None = None) -> np.ndarray:
    """One clip's GROUNDTRUTH rows -> (T, 68, 2) float64, NaN for frames without a row."""
    frames = gt["frame"].to_numpy(np.int64)
    n = int(n_frames if n_frames is not None else (frames.max() + 1 if len(frames) else 0))
    out = np.full((n, N_LANDMARKS, 2), np.nan)
    keep = frames < n
    if keep.any():
        points = np.stack(gt["landmarks"].to_numpy()[keep]).reshape(-1, N_LANDMARKS, 2)
        out[frames[keep]] = points
    return out


class GroundTruthDetector(Detector):
    """Faces known in advance: ``landmarks`` is (T, 68, 2) in source-frame pixels.

    Frames whose landmarks are not finite have no face.
    """

    name = "groundtruth"

    def __init__(self, landmarks: np.ndarray) -> None:
        landmarks = np.asarray(landmarks, dtype=np.float64)
        if landmarks.ndim == 2:  # flat x0, y0, x1, y1, ... rows as stored in parquet
            landmarks = landmarks.reshape(len(landmarks), -1, 2)
        if landmarks.ndim != 3 or landmarks.shape[1:] != (N_LANDMARKS, 2):
            raise ValueError(f"ground-truth landmarks must be (T, 68, 2), got {landmarks.shape}")
        self.landmarks = landmarks
        self.boxes = box_from_landmarks(landmarks)

    def detect(self, frame: np.ndarray | None, index: int | None = None,
               with_landmarks: bool = False) -> list[Face]:
        if index is None:
            raise ValueError("the groundtruth backend needs the frame index")
        if not 0 <= index < len(self.landmarks):
            return []
        lm = self.landmarks[index]
        if not np.isfinite(lm).all():
            return []
        return [Face(box=self.boxes[index].copy(), landmarks=lm.copy() if with_landmarks else None)]


def make_detector(name: str, groundtruth: np.ndarray | None = None, **kwargs: Any) -> Detector:
    """Build a detector by backend name (see module docstring)."""
    if name == "dlib":
        return DlibDetector(**kwargs)
    if name == "face_alignment":
        return FaceAlignmentDetector(**kwargs)
    if name == "groundtruth":
        if groundtruth is None:
            raise ValueError("the groundtruth backend needs the clip's ground-truth landmarks")
        return GroundTruthDetector(groundtruth)
    raise ValueError(f"unknown detector {name!r}; choose one of {BACKENDS}")


def resolve_backend(name: str, source: str) -> str:
    """``auto`` -> ``groundtruth`` for the synthetic source, ``dlib`` otherwise."""
    if name == "auto":
        return "groundtruth" if source == "synthetic" else "dlib"
    if name not in BACKENDS:
        raise ValueError(f"unknown detector {name!r}; choose auto or one of {BACKENDS}")
    return name


def landmarks_of(detector: Detector, frame: np.ndarray, index: int | None = None
                 ) -> np.ndarray | None:
    """(68, 2) landmarks when exactly one face is found in ``frame``, else None."""
    faces = detector.detect(frame, index=index, with_landmarks=True)
    if len(faces) != 1 or faces[0].landmarks is None:
        return None
    return faces[0].landmarks

