"""What every source provides to ingest: a list of clip specs and a way to materialise one.

``ingest`` lists the clips, then materialises each one (in parallel, one task per
clip) into ``<out>/clips/``; a clip that cannot be materialised raises
``ClipRejected`` and is quarantined. ``validate_clip`` turns a written clip into its
manifest row and rejects what later stages cannot use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from edtalk.data import media
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.resume import file_sha256
from edtalk.data.schema import EMOTIONS

MIN_FPS, MAX_FPS = 10.0, 120.0
MIN_SAMPLE_RATE = 8_000

_SAFE_ID = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_clip_id(*parts: str) -> str:
    """A filesystem-safe clip id built from ``parts`` (joined by '_')."""
    return _SAFE_ID.sub("-", "_".join(str(p) for p in parts)).strip("-.")


@dataclass(frozen=True)
class ClipSpec:
    """One clip a source will produce. ``origin`` holds source-specific details."""

    clip_id: str
    identity: str
    emotion: str = "unknown"
    intensity: int = 0
    transcript: str = ""
    source: str = ""
    origin: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Materialised:
    """Paths a source wrote for one clip (relative names inside ``clips_dir``)."""

    video: Path
    audio: Path | None = None  # a 16 kHz mono wav when the source has exact audio


class Source(Protocol):
    """A clip source. Implementations must be deterministic for fixed parameters."""

    name: str

    def list_clips(self) -> list[ClipSpec]:
        """Every clip this source will try to produce."""
        ...

    def materialise(self, spec: ClipSpec, clips_dir: Path) -> Materialised:
        """Write the clip into ``clips_dir`` atomically; raise ClipRejected on bad input."""
        ...


def validate_clip(
    spec: ClipSpec,
    written: Materialised,
    out_dir: Path,
    split: str,
    min_seconds: float,
    require_audio: bool,
) -> dict[str, Any]:
    """Check a materialised clip and return its manifest row (paths relative to ``out_dir``)."""
    info = media.probe(written.video)
    if not MIN_FPS <= info.fps <= MAX_FPS:
        raise ClipRejected(Reason.BAD_FPS, f"{info.fps:.3g} fps is outside {MIN_FPS:g}..{MAX_FPS:g}")
    if written.audio is None:
        if info.has_audio and info.sample_rate < MIN_SAMPLE_RATE:
            raise ClipRejected(Reason.BAD_SAMPLE_RATE, f"audio at {info.sample_rate} Hz")
        if require_audio and not info.has_audio:
            raise ClipRejected(Reason.NO_AUDIO, f"{written.video.name} has no audio track")
    duration = info.frames / info.fps if info.frames else info.duration
    if duration < min_seconds:
        raise ClipRejected(Reason.TOO_SHORT, f"{duration:.2f} s < {min_seconds:g} s")
    emotion = spec.emotion if spec.emotion in EMOTIONS else "unknown"
    return {
        "clip_id": spec.clip_id,
        "identity": spec.identity,
        "emotion": emotion,
        "intensity": int(spec.intensity) if emotion != "unknown" else 0,
        "split": split,
        "fps": float(info.fps),
        "frames": int(info.frames),
        "duration": float(duration),
        "transcript": spec.transcript,
        "source": spec.source,
        "checksum": file_sha256(written.video),
        "video_path": str(written.video.relative_to(out_dir)),
        "audio_path": str(written.audio.relative_to(out_dir)) if written.audio else "",
    }
