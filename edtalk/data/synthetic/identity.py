"""Identities: face shape, colours, hair, background and voice, drawn from a seed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Skin tones (RGB) spanning light to dark; an identity mixes two neighbours.
_SKIN = np.array([
    (255, 224, 196), (241, 194, 160), (224, 172, 130), (198, 140, 100),
    (170, 112, 78), (141, 85, 56), (110, 66, 44),
], np.float64)
_HAIR = np.array([
    (25, 20, 18), (60, 40, 28), (100, 66, 40), (165, 125, 75), (200, 170, 110),
    (140, 60, 30), (150, 150, 150),
], np.float64)
_IRIS = np.array([
    (70, 45, 25), (100, 65, 35), (60, 100, 150), (80, 120, 80), (120, 100, 60), (110, 120, 130),
], np.float64)
# espeak voice variants: the identity's speaking voice (timbre and register).
_VOICES = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "f5")


@dataclass(frozen=True)
class Identity:
    """Everything that makes one synthetic person look and sound like themselves."""

    name: str
    # Shape, as multipliers / offsets on the 3D template (1.0 / 0.0 = average).
    jaw_width: float
    face_length: float
    jaw_square: float        # superellipse exponent of the jaw line (2 = round)
    eye_spacing: float
    eye_size: float
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    brow_height: float
    brow_thickness: float
    # Colours, RGB 0..255.
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    background_top: tuple[int, int, int]
    background_bottom: tuple[int, int, int]
    shirt: tuple[int, int, int]
    hair_style: int          # 0 short, 1 long, 2 cropped
    # Voice.
    voice: str               # espeak voice name, e.g. "en-us+f3"
    voice_pitch: int         # offset of espeak's pitch parameter


def _rgb(v: np.ndarray) -> tuple[int, int, int]:
    c = np.clip(np.round(v), 0, 255).astype(int)
    return int(c[0]), int(c[1]), int(c[2])


def sample_identity(seed: int, index: int) -> Identity:
    """Identity ``index`` of the corpus generated from ``seed`` (deterministic)."""
    rng = np.random.default_rng([seed, 1, index])
    u = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731 - a local shorthand
    s = u(0, len(_SKIN) - 1)
    lo = int(np.floor(s))
    skin = _SKIN[lo] * (1 - (s - lo)) + _SKIN[min(lo + 1, len(_SKIN) - 1)] * (s - lo)
    lips = skin * np.array([0.82, 0.55, 0.55]) + np.array([25, 0, 5])
    hair = _HAIR[int(rng.integers(len(_HAIR)))] * u(0.85, 1.15)
    iris = _IRIS[int(rng.integers(len(_IRIS)))] * u(0.85, 1.15)
    hue = rng.uniform(40, 215, size=3)
    bg_top = hue * u(0.8, 1.1)
    bg_bottom = hue * u(0.55, 0.8)
    shirt = rng.uniform(20, 200, size=3)
    voice = _VOICES[int(rng.integers(len(_VOICES)))]
    return Identity(
        name=f"syn{index:03d}",
        jaw_width=u(0.88, 1.08), face_length=u(0.93, 1.08), jaw_square=u(2.0, 3.2),
        eye_spacing=u(0.92, 1.08), eye_size=u(0.9, 1.12), nose_length=u(0.88, 1.15),
        nose_width=u(0.85, 1.2), mouth_width=u(0.88, 1.12), lip_thickness=u(0.8, 1.25),
        brow_height=u(-0.05, 0.05), brow_thickness=u(0.8, 1.3),
        skin=_rgb(skin), hair=_rgb(hair), iris=_rgb(iris), lips=_rgb(lips),
        background_top=_rgb(bg_top), background_bottom=_rgb(bg_bottom), shirt=_rgb(shirt),
        hair_style=int(rng.integers(3)),
        voice=f"en-us+{voice}", voice_pitch=int(rng.integers(-8, 9)),
    )
