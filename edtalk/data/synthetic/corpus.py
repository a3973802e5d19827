"""The synthetic corpus: clip planning, one-clip rendering (pure), and the Source.

Every clip is fixed by its ``origin`` (seed, identity index, clip index, emotion,
intensity, transcript, render size): from it, ``render_spec`` rebuilds the identity,
speech, mouth track and head motion and renders the frames. ``render_clip`` is the
lower level: it takes each factor explicitly, so a caller can swap exactly one
(identity, pose track, mouth track or emotion) and keep the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from edtalk.data import atomic, media
from edtalk.data.schema import EMOTIONS, FPS, GROUNDTRUTH, SAMPLE_RATE, SAMPLES_PER_FRAME, conform
from edtalk.data.sources.base import ClipSpec, Materialised, safe_clip_id
from edtalk.data.synthetic.face import geometry, template
from edtalk.data.synthetic.identity import Identity, sample_identity
from edtalk.data.synthetic.pose import PoseTrack, sample_pose_track
from edtalk.data.synthetic.render import render_frame
from edtalk.data.synthetic.speech import Phone, Prosody, Speech, prosody_for, synthesize
from edtalk.data.synthetic.transcripts import compose
from edtalk.data.synthetic.visemes import MouthTrack, mouth_track

LEAD_IN, TAIL = 0.2, 0.25                # seconds of silence around the speech


@dataclass(frozen=True)
class RenderedClip:
    """A clip in memory: RGB frames (T, H, W, 3), float32 audio, per-frame ground truth."""

    frames: np.ndarray
    audio: np.ndarray | None
    groundtruth: pd.DataFrame


@dataclass(frozen=True)
class ClipSpeech:
    """The speech of one clip, already padded and aligned to whole video frames."""

    audio: np.ndarray
    mouth: MouthTrack
    speech: Speech
    prosody: Prosody

    @property
    def n_frames(self) -> int:
        return len(self.mouth)


def speak(transcript: str, emotion: str, intensity: int, ident: Identity) -> ClipSpeech:
    """TTS of ``transcript`` in ``ident``'s voice with the prosody of the emotion,
    padded with silence to whole frames, plus the mouth track it drives."""
    prosody = prosody_for(emotion, intensity, ident.voice_pitch)
    sp = synthesize(transcript, prosody, voice=ident.voice)
    lead = int(LEAD_IN * SAMPLE_RATE)
    n_frames = int(np.ceil((lead + len(sp.audio) + TAIL * SAMPLE_RATE) / SAMPLES_PER_FRAME))
    audio = np.zeros(n_frames * SAMPLES_PER_FRAME, np.float32)
    audio[lead:lead + len(sp.audio)] = sp.audio
    shifted = tuple(Phone(p.symbol, p.start + LEAD_IN, p.end + LEAD_IN) for p in sp.phones)
    gain = float(np.clip(0.85 + 0.15 * prosody.volume / 75.0, 0.8, 1.1))  # louder speech, wider mouth
    mouth = mouth_track(shifted, n_frames, gain=gain)
    return ClipSpeech(audio=audio, mouth=mouth, speech=sp, prosody=prosody)


def render_clip(ident: Identity, pose: PoseTrack, mouth: MouthTrack, emotion: str, intensity: int,
                size: int, clip_id: str = "clip", audio: np.ndarray | None = None) -> RenderedClip:
    """Render frames and ground truth from explicit factors (no disk access).

    ``pose`` and ``mouth`` must have the same number of frames; ``audio`` (if given)
    is passed through unchanged.
    """
    if len(pose) != len(mouth):
        raise ValueError(f"pose has {len(pose)} frames, mouth has {len(mouth)}")
    if emotion not in EMOTIONS:
        raise ValueError(f"unknown emotion {emotion!r}")
    base = template(ident)
    n = len(pose)
    frames = np.empty((n, size, size, 3), np.uint8)
    landmarks = np.empty((n, 136), np.float32)
    for i in range(n):
        g = geometry(ident, size, yaw=float(pose.yaw[i]), pitch=float(pose.pitch[i]),
                     roll=float(pose.roll[i]), tx=float(pose.tx[i]), ty=float(pose.ty[i]),
                     opening=float(mouth.opening[i]), width=float(mouth.width[i]),
                     emotion=emotion, intensity=intensity, blink=float(pose.blink[i]), base=base)
        frames[i] = render_frame(ident, g, size)
        landmarks[i] = g.landmarks.reshape(-1)
    gt = pd.DataFrame({
        "clip_id": [clip_id] * n,
        "frame": np.arange(n, dtype=np.int32),
        "landmarks": list(landmarks),
        "yaw": pose.yaw.astype(np.float32), "pitch": pose.pitch.astype(np.float32),
        "roll": pose.roll.astype(np.float32), "tx": pose.tx.astype(np.float32),
        "ty": pose.ty.astype(np.float32),
        "mouth_open": mouth.opening.astype(np.float32), "mouth_width": mouth.width.astype(np.float32),
        "viseme": list(mouth.viseme),
        "emotion": [emotion] * n,
        "intensity": np.full(n, intensity, np.int8),
    })
    return RenderedClip(frames=frames, audio=audio, groundtruth=gt)


def plan_clip(seed: int, identity_index: int, clip_index: int, clips_per_identity: int,
              seconds: float, render_size: int) -> ClipSpec:
    """The spec of one clip: emotions rotate so every identity gets several and the
    corpus covers all eight evenly; intensity cycles 1..3 (neutral is level 1, as in MEAD)."""
    ident = sample_identity(seed, identity_index)
    serial = identity_index * clips_per_identity + clip_index
    # Consecutive clips walk through the emotions; each block of 8 starts 3 further on,
    # so counts stay equal (±1) and identities get different sets.
    k = len(EMOTIONS)
    emotion = EMOTIONS[(serial + 3 * (serial // k)) % k]
    intensity = 1 if emotion == "neutral" else 1 + (identity_index + 2 * clip_index) % 3
    # Add sentences until the expected speaking time reaches the target length.
    rate = prosody_for(emotion, intensity).rate  # words per minute
    transcript = ""
    for sentences in range(1, 4):
        transcript = compose(emotion, np.random.default_rng([seed, 3, identity_index, clip_index]),
                             sentences)
        if len(transcript.split()) * 60.0 / rate + LEAD_IN + TAIL >= 0.85 * seconds:
            break
    # Head motion from its own stream: independent of the words and of the speech.
    pose_seed = int(np.random.default_rng([seed, 4, identity_index, clip_index]).integers(2**31))
    clip_id = safe_clip_id("syn", f"s{seed}", ident.name, f"c{clip_index:02d}", emotion, f"l{intensity}")
    return ClipSpec(
        clip_id=clip_id, identity=ident.name, emotion=emotion, intensity=intensity,
        transcript=transcript, source="synthetic",
        origin={"seed": seed, "identity_index": identity_index, "clip_index": clip_index,
                "serial": serial, "pose_seed": pose_seed, "render_size": render_size,
                "voice": ident.voice, "voice_pitch": ident.voice_pitch},
    )


def render_spec(spec: ClipSpec) -> RenderedClip:
    """Render the clip ``spec`` describes (pure: same spec, same arrays)."""
    o = spec.origin
    ident = sample_identity(int(o["seed"]), int(o["identity_index"]))
    speech = speak(spec.transcript, spec.emotion, spec.intensity, ident)
    pose = sample_pose_track(int(o["pose_seed"]), speech.n_frames)
    return render_clip(ident, pose, speech.mouth, spec.emotion, spec.intensity,
                       int(o["render_size"]), clip_id=spec.clip_id, audio=speech.audio)


def write_groundtruth(path: Path, gt: pd.DataFrame) -> None:
    """Atomically write ``gt`` as parquet with exactly the GROUNDTRUTH schema."""
    table = conform(gt, GROUNDTRUTH)
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


class SyntheticSource:
    """The embedded default source: a generated talking-head corpus (see the package doc)."""

    name = "synthetic"

    def __init__(self, seed: int, identities: int = 12, clips_per_identity: int = 4,
                 seconds: float = 3.0, render_size: int = 96) -> None:
        if identities < 1 or clips_per_identity < 1:
            raise ValueError("identities and clips_per_identity must be >= 1")
        if render_size < 32:
            raise ValueError(f"render_size {render_size} is too small to draw a face")
        self.seed, self.identities = int(seed), int(identities)
        self.clips_per_identity, self.seconds = int(clips_per_identity), float(seconds)
        self.render_size = int(render_size)

    def list_clips(self) -> list[ClipSpec]:
        return [plan_clip(self.seed, i, j, self.clips_per_identity, self.seconds, self.render_size)
                for i in range(self.identities) for j in range(self.clips_per_identity)]

    def materialise(self, spec: ClipSpec, clips_dir: Path) -> Materialised:
        clips_dir = Path(clips_dir)
        clip = render_spec(spec)
        video = clips_dir / f"{spec.clip_id}.mp4"
        wav = clips_dir / f"{spec.clip_id}.wav"
        write_groundtruth(clips_dir / f"{spec.clip_id}.gt.parquet", clip.groundtruth)
        media.write_wav(wav, clip.audio)
        media.write_video(video, clip.frames, FPS, audio=clip.audio)
        return Materialised(video=video, audio=wav)

