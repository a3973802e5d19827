"""From phoneme timings to a per-frame mouth track (opening, width, viseme class).

Each espeak phoneme mnemonic maps to a viseme class with a target mouth shape. The
targets are laid on a 1 ms timeline and smoothed with a Gaussian kernel, which
stands in for coarticulation (lips start moving before a sound and settle after it),
then sampled at the 25 fps frame centres. Silence and pauses close the mouth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edtalk.data.schema import FPS
from edtalk.data.synthetic.speech import Phone

# Viseme class -> (opening 0..1, width -1 rounded .. 1 spread).
VISEME_SHAPES: dict[str, tuple[float, float]] = {
    "sil": (0.0, 0.0),
    "PP": (0.0, -0.05),   # p b m: lips pressed
    "FF": (0.12, 0.05),   # f v: lower lip to upper teeth
    "TH": (0.22, 0.10),   # th
    "DD": (0.28, 0.15),   # t d n l
    "SS": (0.15, 0.45),   # s z: teeth together, lips spread
    "CH": (0.25, -0.45),  # sh zh ch j: rounded, protruded
    "KK": (0.38, 0.05),   # k g ng h
    "RR": (0.25, -0.40),  # r
    "WU": (0.22, -0.85),  # w, oo
    "AA": (0.95, 0.10),   # a: jaw wide open
    "EH": (0.62, 0.40),   # e, ae
    "IY": (0.30, 0.80),   # ee, i
    "OH": (0.72, -0.60),  # o, aw
    "ER": (0.42, 0.00),   # schwa, er
}
VISEMES: tuple[str, ...] = tuple(VISEME_SHAPES)

# espeak's English phoneme mnemonics (stress marks stripped) -> viseme class.
_CONSONANTS: dict[str, str] = {
    "p": "PP", "b": "PP", "m": "PP",
    "f": "FF", "v": "FF",
    "T": "TH", "D": "TH",
    "t": "DD", "d": "DD", "n": "DD", "l": "DD", "t#": "DD", "d#": "DD", "n-": "DD", "l/": "DD",
    "s": "SS", "z": "SS",
    "S": "CH", "Z": "CH", "tS": "CH", "dZ": "CH",
    "k": "KK", "g": "KK", "N": "KK", "h": "KK", "x": "KK", "?": "KK",
    "r": "RR", "r-": "RR", "R": "RR",
    "w": "WU", "j": "IY",
}
_VOWEL_PREFIXES: tuple[tuple[str, str], ...] = (
    # longest prefixes first
    ("aI", "AA"), ("aU", "AA"), ("a", "AA"), ("A", "AA"), ("V", "AA"),
    ("eI", "EH"), ("e", "EH"), ("E", "EH"),
    ("i", "IY"), ("I", "IY"),
    ("oU", "OH"), ("OI", "OH"), ("O", "OH"), ("0", "OH"), ("o", "OH"),
    ("u", "WU"), ("U", "WU"),
    ("3", "ER"), ("@", "ER"),
)


def viseme_of(symbol: str) -> str:
    """The viseme class of one espeak phoneme mnemonic ("" for a bare modifier such as
    ";", which continues the previous sound)."""
    sym = symbol.lstrip("',%=").strip()
    if sym.startswith("_"):
        return "sil"
    if not any(ch.isalnum() or ch == "@" for ch in sym):
        return ""
    if sym in _CONSONANTS:
        return _CONSONANTS[sym]
    if sym.rstrip(";:") in _CONSONANTS:
        return _CONSONANTS[sym.rstrip(";:")]
    for prefix, vis in _VOWEL_PREFIXES:
        if sym.startswith(prefix):
            return vis
    return "ER"  # unknown sounds: a neutral half-open mouth


@dataclass(frozen=True)
class MouthTrack:
    """Per-frame mouth state; all arrays have one entry per video frame."""

    opening: np.ndarray   # float32, 0..1
    width: np.ndarray     # float32, -1..1
    viseme: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.opening)

    @staticmethod
    def closed(n_frames: int) -> "MouthTrack":
        return MouthTrack(np.zeros(n_frames, np.float32), np.zeros(n_frames, np.float32),
                          ("sil",) * n_frames)


def mouth_track(phones: tuple[Phone, ...] | list[Phone], n_frames: int, fps: float = FPS,
                coarticulation_ms: float = 35.0, gain: float = 1.0) -> MouthTrack:
    """Sample the smoothed viseme targets of ``phones`` at ``n_frames`` frame centres.

    ``gain`` scales the opening (a louder, more energetic voice opens the mouth wider).
    """
    step = 0.001
    total = n_frames / fps
    n = int(np.ceil(total / step)) + 1
    target_open = np.zeros(n, np.float64)
    target_width = np.zeros(n, np.float64)
    label = np.full(n, VISEMES.index("sil"), np.int16)
    vis = "sil"
    for ph in phones:
        vis = viseme_of(ph.symbol) or vis
        a, b = int(round(ph.start / step)), int(round(ph.end / step))
        a, b = max(0, a), min(n, b)
        if b <= a:
            continue
        o, w = VISEME_SHAPES[vis]
        target_open[a:b] = o
        target_width[a:b] = w
        label[a:b] = VISEMES.index(vis)
    sigma = coarticulation_ms / 1000.0 / step
    radius = int(3 * sigma)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    smooth_open = np.convolve(np.pad(target_open, radius, mode="edge"), kernel, mode="valid")
    smooth_width = np.convolve(np.pad(target_width, radius, mode="edge"), kernel, mode="valid")
    centres = np.clip(np.round((np.arange(n_frames) + 0.5) / fps / step).astype(int), 0, n - 1)
    opening = np.clip(smooth_open[centres] * gain, 0.0, 1.0).astype(np.float32)
    width = np.clip(smooth_width[centres], -1.0, 1.0).astype(np.float32)
    return MouthTrack(opening, width, tuple(VISEMES[i] for i in label[centres]))
