"""Head motion: smooth random yaw/pitch/roll and translation, independent of speech.

Each channel is a sum of a few low-frequency sinusoids (0.08..0.6 Hz) with random
phases, scaled so that it never leaves its range. Blinks (a nuisance factor real
videos have) are drawn here too, from the same motion seed, so they are also
independent of the speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edtalk.data.schema import FPS

# Largest excursion per channel: degrees for angles, fraction of image size for shifts.
LIMITS = {"yaw": 20.0, "pitch": 12.0, "roll": 10.0, "tx": 0.04, "ty": 0.03}


@dataclass(frozen=True)
class PoseTrack:
    """Per-frame head pose. Angle sign conventions (image x right, y down):
    +yaw turns the nose tip towards +x, +pitch tilts it down (+y), +roll rotates the
    face clockwise on screen. tx, ty shift the head by that fraction of the frame."""

    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    tx: np.ndarray
    ty: np.ndarray
    blink: np.ndarray  # eyelid closure 0 (open) .. 1 (shut)

    def __len__(self) -> int:
        return len(self.yaw)

    @staticmethod
    def still(n_frames: int, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
              tx: float = 0.0, ty: float = 0.0) -> "PoseTrack":
        f = lambda v: np.full(n_frames, v, np.float32)  # noqa: E731
        return PoseTrack(f(yaw), f(pitch), f(roll), f(tx), f(ty), f(0.0))


def _smooth_channel(rng: np.random.Generator, t: np.ndarray, limit: float) -> np.ndarray:
    k = 3
    freqs = rng.uniform(0.08, 0.6, size=k)
    phases = rng.uniform(0, 2 * np.pi, size=k)
    amps = rng.uniform(0.3, 1.0, size=k)
    amps *= rng.uniform(0.5, 1.0) / amps.sum()  # keeps |value| <= limit
    return (limit * (amps[:, None] * np.sin(2 * np.pi * freqs[:, None] * t + phases[:, None])).sum(0))


def sample_pose_track(seed: int, n_frames: int, fps: float = FPS, blinks: bool = True) -> PoseTrack:
    """A smooth random head-motion track of ``n_frames`` frames (deterministic)."""
    rng = np.random.default_rng([seed, 2])
    t = np.arange(n_frames) / fps
    ch = {name: _smooth_channel(rng, t, lim).astype(np.float32) for name, lim in LIMITS.items()}
    blink = np.zeros(n_frames, np.float32)
    if blinks:
        # Roughly one blink every 3 s, each closing over ~3 frames and reopening.
        time = float(rng.uniform(0.3, 2.0))
        shape = np.array([0.5, 1.0, 0.6, 0.2], np.float32)
        while time < n_frames / fps:
            i = int(time * fps)
            j = min(n_frames, i + len(shape))
            blink[i:j] = np.maximum(blink[i:j], shape[: j - i])
            time += float(rng.uniform(2.0, 4.5))
    return PoseTrack(ch["yaw"], ch["pitch"], ch["roll"], ch["tx"], ch["ty"], blink)
