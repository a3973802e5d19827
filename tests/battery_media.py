"""Inputs for the bad-input battery: real-face clips (good and awkward) and broken files.

The face is scikit-image's astronaut photograph (a real face dlib finds); it drifts a
few pixels per frame so that the clip is a video, not a still. Broken files are made
from good ones the way they break in practice: a damaged header, a cut copy, an empty
file, an image or text saved under a video name.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import av
import cv2
import numpy as np

from edtalk.data import media
from media_fixtures import frames as noise_frames, make_audio_only, make_faststart_clip, tone


def face(side: int = 256) -> np.ndarray:
    """The astronaut photograph, resized to ``side`` x ``side`` RGB."""
    import skimage.data

    return cv2.resize(skimage.data.astronaut(), (side, side), interpolation=cv2.INTER_AREA)


def face_frames(n: int, height: int = 256, width: int = 320, side: int = 256,
                faces: int = 1) -> np.ndarray:
    """``n`` frames of ``faces`` astronauts side by side on grey, drifting 1 px per frame."""
    image = np.concatenate([face(side)] * faces, axis=1)
    out = np.full((n, height, max(width, image.shape[1] + n), 3), 96, np.uint8)
    y = (height - side) // 2
    for i in range(n):
        out[i, y:y + side, i:i + image.shape[1]] = image
    return out[:, :, :max(width, image.shape[1] + n)]


def write_face_clip(path: Path, seconds: float = 1.2, fps: float = 25, audio: bool = True,
                    faces: int = 1, height: int = 256, side: int = 256) -> Path:
    """An H.264 + 16 kHz AAC mp4 of a real face (through the project's writer)."""
    n = max(1, round(seconds * fps))
    frames = face_frames(n, height=height, width=int(height * 1.25), side=side, faces=faces)
    media.write_video(path, frames, fps=fps, audio=tone(n / fps) if audio else None)
    return path


def write_stereo_44k(path: Path, seconds: float = 1.2, fps: int = 25) -> Path:
    """A real-face mp4 whose audio is 44.1 kHz stereo AAC (a phone or camera recording)."""
    n = round(seconds * fps)
    rate = 44_100
    left, right = tone(seconds, rate, 220.0), tone(seconds, rate, 330.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = 320, 256, "yuv420p"
        vs.options = {"threads": "1"}
        aus = out.add_stream("aac", rate=rate, layout="stereo")
        for image in face_frames(n):
            for packet in vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        planar = np.stack([left, right])  # fltp: one row per channel
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts = rate, 0
        for packet in aus.encode(frame):
            out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path


def write_4k(path: Path) -> Path:
    """Eleven 3840x2160 frames at 10 fps (1.1 s) with the subject filling the frame height."""
    n, side = 11, 2000
    big = face(side)
    frames = np.full((n, 2160, 3840, 3), 80, np.uint8)
    for i in range(n):
        x = 900 + 4 * i
        frames[i, 80:80 + side, x:x + side] = big
    media.write_video(path, frames, fps=10, audio=tone(n / 10))
    return path


def damage_header(src: Path, dst: Path, n: int = 64) -> Path:
    """``src`` with its first ``n`` bytes (the mp4 ``ftyp`` box and more) overwritten."""
    data = bytearray(src.read_bytes())
    data[:n] = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def cut_midstream(dst: Path, keep: float = 0.55) -> Path:
    """A clip whose index is at the front but whose data stops part-way (an interrupted copy)."""
    full = make_faststart_clip(dst.with_name(".full-" + dst.name), seconds=2.0, size=64)
    data = full.read_bytes()
    full.unlink()
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def write_png_as_video(path: Path) -> Path:
    """A still photo saved under a video extension."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(face(128), cv2.COLOR_RGB2BGR))
    assert ok
    path.write_bytes(encoded.tobytes())
    return path


def write_blank(path: Path) -> Path:
    """Moving texture with no face, with audio."""
    n = 30
    media.write_video(path, noise_frames(n, size=128), fps=25, audio=tone(n / 25))
    return path


# name under the input root -> (maker, expected: "ok" or the quarantine reason)
BAD_INPUTS: dict[str, tuple[Callable[[Path], object], str]] = {
    "corrupt_header.mp4": (lambda p: damage_header(write_face_clip(p.with_name(".src.mp4")), p),
                           "corrupt"),
    "truncated.mp4": (cut_midstream, "truncated"),
    "zero_length.mp4": (lambda p: p.write_bytes(b""), "corrupt"),
    "no_audio.mp4": (lambda p: write_face_clip(p, audio=False), "no_audio_stream"),
    "audio_only.mp4": (make_audio_only, "no_video_stream"),
    "no_face.mp4": (write_blank, "no_face"),
    "two_faces.mp4": (lambda p: write_face_clip(p, faces=2, side=200, height=256),
                      "multiple_faces"),
    "fps8.mp4": (lambda p: write_face_clip(p, seconds=2.0, fps=8), "unsupported_fps"),
    "fps60.mp4": (lambda p: write_face_clip(p, seconds=1.2, fps=60), "ok"),
    "stereo44k.mp4": (write_stereo_44k, "ok"),
    "uhd4k.mp4": (write_4k, "ok"),
    "photo.mp4": (write_png_as_video, "no_video_stream"),
    "notes.mov": (lambda p: p.write_text("These are my notes, not a video.\n" * 40), "corrupt"),
    "Zoë Ångström/take one — ünïcode.mp4": (write_face_clip, "ok"),
}
GOOD_INPUTS: dict[str, Callable[[Path], object]] = {
    "good_a/take1.mp4": write_face_clip,
    "good_b/take1.mp4": lambda p: write_face_clip(p, seconds=1.6),
}


def build_inputs(root: Path) -> dict[str, str]:
    """Write every battery input under ``root``; return {relative path: expected outcome}."""
    expected = {}
    for rel, (make, outcome) in BAD_INPUTS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        expected[rel] = outcome
    for rel, make in GOOD_INPUTS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        expected[rel] = "ok"
    for stray in root.rglob(".src.mp4"):  # the header-damage source is not an input
        stray.unlink()
    return expected
