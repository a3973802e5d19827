"""Head-motion statistics for audio-driven rows: diversity and beat alignment.

Head pose per frame (landmark-derived, no pose network needed): the 2-D affine map that
takes the clip's first face to the current one, fitted by least squares on the rigid
68-point landmarks (jaw, brows, nose, eye corners; the mouth and eyelids are left out
so that speech and blinks do not count as head motion). Its six parameters are the
2 x 2 matrix A (rotation, scale and the foreshortening of yaw/pitch) and the
translation divided by the first face's inter-ocular distance, so all six are
dimensionless and a still head gives (1, 0, 0, 1, 0, 0) throughout.

- **Head-motion diversity** (higher = more varied motion): the mean over the six
  parameters of their standard deviation over time. For a head turning in the image
  plane by angles theta_t it is about the std of theta_t in radians.
- **Beat alignment score** (BAS, higher is better; Bailando's definition, used for
  talking heads by SadTalker): motion beats are the frames where head speed has a
  local minimum (the head stops or turns), audio beats are onsets of the speech
  (spectral-flux peaks), and BAS = mean over audio beats a of
  exp(-min_m (t_a - t_m)^2 / (2 sigma^2)), with sigma = 3 frames by default.

Both accept frames (T, H, W, 3) uint8 (landmarks from the project's dlib detector),
landmarks (T, 68, 2), or already computed motion (T,) / (T, D).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

HIGHER_IS_BETTER = {"head_motion_diversity": True, "beat_align": True}
DIVERSITY_BACKEND = "landmark-affine-std(dlib 68)"
BAS_BACKEND = "bas(speed-minima vs spectral-flux onsets)"
RIGID = np.r_[0:27, 27:36, 36, 39, 42, 45]  # jaw, brows, nose, eye corners
SIGMA_FRAMES = 3.0


def landmarks_from_frames(frames: np.ndarray) -> np.ndarray:
    """(T, 68, 2) landmarks of the largest face per frame (NaN where none is found)."""
    from edtalk.data.detect import make_detector

    detector = make_detector("dlib")
    out = np.full((len(frames), 68, 2), np.nan)
    for i, frame in enumerate(frames):
        faces = [f for f in detector.detect(frame, with_landmarks=True) if f.landmarks is not None]
        if faces:
            best = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            out[i] = best.landmarks
    return out


def _interpolate_gaps(x: np.ndarray) -> np.ndarray:
    """Fill NaN rows of (T, D) by linear interpolation over time (edges held)."""
    ok = np.isfinite(x).all(axis=1)
    if ok.sum() < 2:
        raise ValueError(f"head motion needs landmarks in at least 2 frames, found {int(ok.sum())}")
    t = np.arange(len(x))
    return np.stack([np.interp(t, t[ok], x[ok, d]) for d in range(x.shape[1])], axis=1)


def pose_params(landmarks: np.ndarray) -> np.ndarray:
    """(T, 6) affine head-pose parameters (A row-major, translation / inter-ocular
    distance) of each frame relative to the first frame with landmarks."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 3 or lm.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must be (T, 68, 2), got {lm.shape}")
    ok = np.isfinite(lm).all(axis=(1, 2))
    if not ok.any():
        raise ValueError("no frame has landmarks")
    ref = lm[np.argmax(ok)]
    iod = np.linalg.norm(ref[42:48].mean(0) - ref[36:42].mean(0))
    centre = ref[RIGID].mean(0)
    src = np.c_[ref[RIGID] - centre, np.ones(len(RIGID))]            # P x 3
    params = np.full((len(lm), 6), np.nan)
    for t in np.nonzero(ok)[0]:
        coef, *_ = np.linalg.lstsq(src, lm[t, RIGID] - centre, rcond=None)   # 3 x 2
        a, shift = coef[:2].T, coef[2] / iod
        params[t] = np.r_[a.reshape(-1), shift]
    return params


def _motion(x: np.ndarray) -> np.ndarray:
    """Frames, landmarks or motion -> (T, D) motion with gaps filled."""
    x = np.asarray(x)
    if x.ndim == 4:
        if x.dtype != np.uint8 or x.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (T, H, W, 3), got {x.dtype} {x.shape}")
        x = pose_params(landmarks_from_frames(x))
    elif x.ndim == 3:
        x = pose_params(x)
    elif x.ndim == 1:
        x = x[:, None]
    elif x.ndim != 2:
        raise ValueError(f"expected frames, landmarks or motion, got shape {x.shape}")
    return _interpolate_gaps(np.asarray(x, dtype=np.float64))


def head_motion_diversity(frames_or_landmarks: np.ndarray) -> tuple[float, str]:
    """Mean temporal std of the six head-pose parameters (see module docstring)."""
    motion = _motion(frames_or_landmarks)
    return float(motion.std(axis=0).mean()), DIVERSITY_BACKEND


def motion_beats(motion: np.ndarray, prominence: float = 0.1, min_speed: float = 1e-3) -> np.ndarray:
    """Frame indices where the (lightly smoothed) head speed has a local minimum.

    A minimum counts when it is at least ``prominence`` x the speed range deep, and the
    head moves at all (peak speed above ``min_speed`` per frame): a still head has no
    beats rather than noise beats.
    """
    m = ndimage.gaussian_filter1d(np.asarray(motion, dtype=np.float64), 1.0, axis=0)
    speed = np.linalg.norm(np.gradient(m, axis=0), axis=1)
    if len(speed) < 3 or speed.max() < min_speed:
        return np.zeros(0, dtype=int)
    depth = prominence * (speed.max() - speed.min())
    minima, _ = signal.find_peaks(-speed, prominence=max(depth, 1e-12))
    return minima


def audio_onsets(audio: np.ndarray, sr: int, hop_s: float = 0.01, min_gap_s: float = 0.1,
                 prominence: float = 0.2) -> np.ndarray:
    """Onset times (s): peaks of the spectral flux of the log-magnitude spectrogram.

    Flux = sum over frequencies of the positive change of log(1 + |STFT|) between
    consecutive 32 ms windows (10 ms hop); peaks at least ``min_gap_s`` apart and at
    least ``prominence`` x the flux maximum high stand out as onsets.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if np.issubdtype(np.asarray(audio).dtype, np.integer):
        x = x / 32768.0
    hop = max(1, int(round(hop_s * sr)))
    win = int(2 ** np.ceil(np.log2(0.032 * sr)))
    if len(x) < win:
        raise ValueError(f"audio too short for onsets: {len(x)} samples")
    _, _, spec = signal.stft(x, fs=sr, nperseg=win, noverlap=win - hop, boundary=None, padded=False)
    logmag = np.log1p(np.abs(spec) * 100.0)
    flux = np.maximum(np.diff(logmag, axis=1), 0.0).sum(axis=0)
    if flux.max() <= 0:
        return np.zeros(0)
    peaks, _ = signal.find_peaks(flux, height=prominence * flux.max(),
                                 distance=max(1, int(round(min_gap_s / hop_s))))
    # Flux column j compares windows j and j+1, the onset sits at window j+1's centre.
    return (peaks + 1) * hop / sr + win / (2 * sr)


def bas(audio_beats_s: np.ndarray, motion_beats_s: np.ndarray, sigma_s: float) -> float:
    """Bailando's beat alignment score from beat times in seconds."""
    a = np.asarray(audio_beats_s, dtype=np.float64)
    m = np.asarray(motion_beats_s, dtype=np.float64)
    if len(a) == 0:
        raise ValueError("no audio beats: silent or flat audio")
    if len(m) == 0:
        return 0.0
    nearest = np.min(np.abs(a[:, None] - m[None, :]), axis=1)
    return float(np.mean(np.exp(-nearest ** 2 / (2 * sigma_s ** 2))))


def beat_alignment(frames_or_motion: np.ndarray, audio: np.ndarray, sr: int, fps: float,
                   sigma_frames: float = SIGMA_FRAMES) -> tuple[float, str]:
    """BAS between speech onsets of ``audio`` (mono, ``sr`` Hz) and head-motion beats of
    the clip (frames, landmarks or motion at ``fps``)."""
    if fps <= 0 or sr <= 0:
        raise ValueError(f"fps and sr must be positive, got {fps}, {sr}")
    motion = _motion(frames_or_motion)
    beats = motion_beats(motion) / float(fps)
    onsets = audio_onsets(audio, sr)
    onsets = onsets[onsets <= len(motion) / float(fps)]  # only speech the video covers
    return bas(onsets, beats, sigma_frames / float(fps)), BAS_BACKEND
