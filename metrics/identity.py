"""CSIM: identity preservation as the cosine similarity of face-recognition embeddings.

CSIM = mean over (sampled) generated frames of cos(e(pred_t), e(source)), where the
source is the first ground-truth frame with a face (the identity image a one-shot method
animates; ``reference="paired"`` compares pred_t with gt_t instead). Higher is better.

Backends:

- ``dlib-resnet`` (offline): dlib's 128-d face-recognition ResNet and its 5-point
  aligner, both files of the ``face-recognition-models`` wheel; faces are found with
  the project's dlib detector (``edtalk.data.detect``).
- ``arcface``: any ArcFace-style network that maps 112 x 112 aligned RGB faces
  (scaled to [-1, 1]) to an embedding, as a TorchScript file (``.pt``/``.pth``) or ONNX
  file (``.onnx``, needs onnxruntime). Looked up at ``$EDTALK_ARCFACE``, else as
  ``arcface.pt`` / ``arcface.onnx`` in the weight directories of ``edtalk.weights``;
  faces are aligned by a similarity transform of five landmarks (eye centres, nose
  tip, mouth corners from the 68-point predictor) onto the usual ArcFace template.
  Nothing is downloaded; ``backend="arcface"`` without the file raises MissingWeights
  naming the file names and folders searched.

``auto`` picks ``arcface`` when its file is present, else ``dlib-resnet``.
"""

from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from edtalk.data.detect import make_detector
from edtalk.weights import MissingWeights, search_dirs

HIGHER_IS_BETTER = {"csim": True}
ENV_VAR = "EDTALK_ARCFACE"
ARCFACE_FILES = ("arcface.pt", "arcface.onnx")
# Five-point template of the 112 x 112 ArcFace crop (x, y): eyes, nose tip, mouth corners.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)

_LOCK = threading.Lock()
_CACHE: dict[str, Any] = {}


def _check(frames: np.ndarray, what: str) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"{what} must be uint8 RGB (T, H, W, 3) with T >= 1, "
                         f"got {frames.dtype} {frames.shape}")
    return frames


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of (N, D) against (D,) or (N, D)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1) + 1e-12)


# --- dlib ------------------------------------------------------------------------------

def _dlib_models() -> tuple[Any, Any]:
    with _LOCK:
        if "dlib" not in _CACHE:
            import dlib

            with warnings.catch_warnings():  # the wheel still imports pkg_resources
                warnings.simplefilter("ignore")
                import face_recognition_models as frm
            rec, five = frm.face_recognition_model_location(), frm.pose_predictor_five_point_model_location()
            for path in (rec, five):
                if not Path(path).is_file():
                    raise MissingWeights(f"{path} not found; reinstall the face-recognition-models wheel")
            _CACHE["dlib"] = (dlib.face_recognition_model_v1(rec), dlib.shape_predictor(five))
        return _CACHE["dlib"]


def _largest(faces: list) -> Any:
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def dlib_embedding(frame: np.ndarray, box: np.ndarray) -> np.ndarray:
    """128-d dlib descriptor of the face in ``box`` (x0, y0, x1, y1) of an RGB frame."""
    import dlib

    model, aligner = _dlib_models()
    frame = np.ascontiguousarray(frame)
    rect = dlib.rectangle(*(int(round(v)) for v in box))
    with _LOCK:  # dlib objects are not documented as thread-safe
        shape = aligner(frame, rect)
        return np.array(model.compute_face_descriptor(frame, shape, 0), dtype=np.float64)


# --- ArcFace ---------------------------------------------------------------------------

def arcface_path(path: str | os.PathLike | None = None) -> Path:
    """The ArcFace file to use: ``path``, ``$EDTALK_ARCFACE``, or a known name in the
    weight folders; MissingWeights naming what was searched otherwise."""
    if path is not None or os.environ.get(ENV_VAR):
        p = Path(path if path is not None else os.environ[ENV_VAR])
        if not p.is_file():
            raise MissingWeights(f"ArcFace weights {p} not found")
        return p
    dirs = search_dirs()
    for d in dirs:
        for name in ARCFACE_FILES:
            if (d / name).is_file():
                return d / name
    raise MissingWeights(
        f"ArcFace weights not found: put {' or '.join(ARCFACE_FILES)} (a TorchScript or ONNX "
        f"network, 112 x 112 RGB in [-1, 1] -> embedding) in one of "
        f"{', '.join(str(d) for d in dirs)}, or set ${ENV_VAR}; CSIM falls back to dlib-resnet")


def arcface_available(path: str | os.PathLike | None = None) -> tuple[bool, str]:
    """(True, file) when an ArcFace file is found, else (False, reason)."""
    try:
        return True, str(arcface_path(path))
    except MissingWeights as exc:
        return False, str(exc)


def load_arcface(path: str | os.PathLike) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping (N, 3, 112, 112) float32 in [-1, 1] to (N, D) embeddings."""
    path = Path(path)
    key = f"arcface:{path.resolve()}"
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
    if path.suffix == ".onnx":
        try:
            import onnxruntime
        except ImportError as exc:
            raise MissingWeights(f"{path} is ONNX but onnxruntime is not installed "
                                 "(pip install onnxruntime), or give a TorchScript file") from exc
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def run(x: np.ndarray) -> np.ndarray:
            return np.asarray(session.run(None, {name: x.astype(np.float32)})[0])
    else:
        import torch

        try:
            with warnings.catch_warnings():  # torch.jit is deprecated but still the exchange format
                warnings.simplefilter("ignore", FutureWarning)
                module = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"{path}: not a TorchScript network ({exc}); export the ArcFace "
                             "model with torch.jit.script/trace, or give an .onnx file") from exc

        def run(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return module(torch.from_numpy(x.astype(np.float32))).float().numpy()
    with _LOCK:
        _CACHE[key] = run
    return run


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """ArcFace's five points from 68 dlib landmarks: eye centres, nose tip, mouth corners."""
    lm = np.asarray(landmarks, dtype=np.float32)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


def arcface_crop(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """112 x 112 RGB face aligned onto the ArcFace template (similarity transform)."""
    matrix, _ = cv2.estimateAffinePartial2D(five_points(landmarks), ARCFACE_TEMPLATE, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("could not align the face (degenerate landmarks)")
    return cv2.warpAffine(np.ascontiguousarray(frame), matrix, (112, 112), borderValue=0)


# --- CSIM ------------------------------------------------------------------------------

def _resolve(backend: str, arcface: str | os.PathLike | None) -> str:
    if backend == "auto":
        return "arcface" if arcface_available(arcface)[0] else "dlib-resnet"
    if backend not in ("dlib-resnet", "arcface"):
        raise ValueError(f"unknown CSIM backend {backend!r}; choose auto, dlib-resnet or arcface")
    return backend


def embeddings(frames: np.ndarray, backend: str = "dlib-resnet",
               arcface: str | os.PathLike | None = None, fallback: Any = None
               ) -> tuple[np.ndarray, np.ndarray, list]:
    """(E, found, faces): one embedding row per frame (NaN rows where no face was found),
    the mask of frames with a face, and the face used per frame (None where none).

    The largest detected face of each frame is used; where the detector finds none,
    ``fallback`` (a ``Face`` from an aligned frame, e.g. the ground truth's) is used
    instead when given: generated and ground-truth crops share their geometry, and a
    blurred or damaged face should score low rather than drop out of the mean."""
    frames = _check(frames, "frames")
    detector = make_detector("dlib")
    net = load_arcface(arcface_path(arcface)) if backend == "arcface" else None
    rows: list[np.ndarray | None] = []
    used: list = []
    crops, crop_rows = [], []
    for i, frame in enumerate(frames):
        faces = detector.detect(frame, with_landmarks=net is not None)
        face = _largest(faces) if faces else fallback
        used.append(face)
        if face is None:
            rows.append(None)
            continue
        if net is None:
            rows.append(dlib_embedding(frame, face.box))
        else:
            crops.append(arcface_crop(frame, face.landmarks))
            crop_rows.append(i)
            rows.append(None)
    if net is not None and crops:
        x = (np.stack(crops).astype(np.float32).transpose(0, 3, 1, 2) - 127.5) / 127.5
        for i, e in zip(crop_rows, net(x)):
            rows[i] = np.asarray(e, dtype=np.float64).reshape(-1)
    dim = next((len(r) for r in rows if r is not None), 1)
    found = np.array([r is not None for r in rows])
    out = np.full((len(rows), dim), np.nan)
    for i, r in enumerate(rows):
        if r is not None:
            out[i] = r
    return out, found, used


def _sample(n: int, max_frames: int | None) -> np.ndarray:
    if max_frames is None or n <= max_frames:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_frames).round().astype(int))


def csim(pred_frames: np.ndarray, gt_frames: np.ndarray, *, backend: str = "auto",
         reference: str = "source", max_frames: int | None = 32,
         arcface: str | os.PathLike | None = None) -> tuple[float, str]:
    """CSIM of generated frames against the ground truth, and the backend used.

    ``reference``: ``source`` (first GT frame with a face, the default) or ``paired``
    (pred_t vs gt_t over the common length). ``max_frames`` evenly spaced generated
    frames are scored (None: all). Frames where no face is found are left out;
    ValueError when none remains.
    """
    pred = _check(pred_frames, "pred_frames")
    gt = _check(gt_frames, "gt_frames")
    backend = _resolve(backend, arcface)
    label = backend if backend == "dlib-resnet" else f"arcface:{arcface_path(arcface).name}"
    if reference == "source":
        idx = _sample(len(pred), max_frames)
        ref = ref_face = None
        for start in range(0, len(gt), 8):  # first GT frame with a face, a few at a time
            e, ok, faces = embeddings(gt[start:start + 8], backend, arcface)
            if ok.any():
                ref, ref_face = e[np.argmax(ok)], faces[int(np.argmax(ok))]
                break
        if ref is None:
            raise ValueError("CSIM: no face found in any ground-truth frame")
        e_pred, ok_pred, _ = embeddings(pred[idx], backend, arcface, fallback=ref_face)
        sims = cosine(e_pred[ok_pred], ref)
    elif reference == "paired":
        n = min(len(pred), len(gt))
        idx = _sample(n, max_frames)
        e_gt, ok_gt, faces = embeddings(gt[idx], backend, arcface)
        e_pred = np.full_like(e_gt, np.nan)
        ok_pred = np.zeros(len(idx), bool)
        for k in np.nonzero(ok_gt)[0]:  # each generated frame falls back on its GT frame's face
            e, ok, _ = embeddings(pred[idx[k]:idx[k] + 1], backend, arcface, fallback=faces[k])
            e_pred[k], ok_pred[k] = e[0], ok[0]
        both = ok_pred & ok_gt
        sims = cosine(e_pred[both], e_gt[both])
    else:
        raise ValueError(f"reference must be 'source' or 'paired', got {reference!r}")
    if len(sims) == 0:
        raise ValueError("CSIM: no face found in the generated frames scored")
    return float(np.mean(sims)), label
