"""Reading and writing clips: video frames (RGB uint8) and 16 kHz mono audio.

PyAV (FFmpeg's libraries) does the decoding and the H.264 + AAC encoding in-process;
no ffmpeg subprocess and no shell. Decoding problems surface as ``ClipRejected`` with
a quarantine reason, so that stages can record them per clip and go on.
"""

from __future__ import annotations

import functools
import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edtalk.data import atomic
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.schema import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME


@dataclass(frozen=True)
class MediaInfo:
    """What a container declares (not what decodes)."""

    fps: float
    frames: int
    width: int
    height: int
    has_audio: bool
    sample_rate: int
    duration: float


# Demuxers that read one picture (or a numbered series): a photo saved as .mp4 opens as
# a "video" of one frame, which is not footage.
_STILL_FORMATS = ("image2", "image2pipe")


def is_still_image_format(name: str) -> bool:
    """Whether FFmpeg's demuxer ``name`` (e.g. ``png_pipe``) reads still images."""
    return name.endswith("_pipe") or name in _STILL_FORMATS


def describe_error(exc: BaseException) -> str:
    """FFmpeg's message without the absolute path it appends (quarantine details stay short)."""
    return getattr(exc, "strerror", None) or str(exc)


def probe(path: str | Path) -> MediaInfo:
    """Read the container header; raise ClipRejected if it is unreadable or has no video."""
    name = Path(path).name
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        raise ClipRejected(Reason.CORRUPT, f"{name} is empty (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if is_still_image_format(container.format.name):
                raise ClipRejected(Reason.NO_VIDEO, f"{name} is a still image "
                                                    f"({container.format.name}), not a video")
            if not container.streams.video:
                raise ClipRejected(Reason.NO_VIDEO, f"{name} has no video stream")
            vs = container.streams.video[0]
            fps = float(vs.average_rate or vs.guessed_rate or 0)
            duration = float(vs.duration * vs.time_base) if vs.duration else (
                container.duration / av.time_base if container.duration else 0.0)
            frames = vs.frames or int(round(duration * fps))
            audio = container.streams.audio
            return MediaInfo(
                fps=fps, frames=int(frames), width=vs.codec_context.width,
                height=vs.codec_context.height, has_audio=bool(audio),
                sample_rate=int(audio[0].rate) if audio else 0, duration=duration,
            )
    except ClipRejected:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot open {name}: {describe_error(exc)}") from exc


def read_frames(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Decode every video frame as RGB uint8 (T, H, W, 3); return frames and fps."""
    info = probe(path)
    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                out.append(frame.to_ndarray(format="rgb24"))
                if max_frames is not None and len(out) >= max_frames:
                    break
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        if not out:
            raise ClipRejected(Reason.CORRUPT, f"cannot decode {Path(path).name}: {describe_error(exc)}") from exc
        raise ClipRejected(
            Reason.TRUNCATED, f"decoding stopped after {len(out)} frames: {describe_error(exc)}") from exc
    if not out:
        raise ClipRejected(Reason.CORRUPT, f"{Path(path).name} has no decodable frame")
    if max_frames is None and info.frames and len(out) < 0.9 * info.frames:
        raise ClipRejected(
            Reason.TRUNCATED, f"decoded {len(out)} of {info.frames} declared frames")
    return np.stack(out), info.fps


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode the first audio stream as mono float32 in [-1, 1] at ``sample_rate``.

    Raises ClipRejected(NO_AUDIO) when the file has no audio stream.
    """
    path = Path(path)
    if path.suffix.lower() == ".wav":
        audio, rate = read_wav(path)
        if rate != sample_rate:
            raise ClipRejected(Reason.BAD_SAMPLE_RATE, f"{path.name} is {rate} Hz, expected {sample_rate}")
        return audio
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise ClipRejected(Reason.NO_AUDIO, f"{path.name} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(container.streams.audio[0]):
                for resampled in resampler.resample(frame):
                    chunks.append(resampled.to_ndarray().reshape(-1))
            for resampled in resampler.resample(None):
                chunks.append(resampled.to_ndarray().reshape(-1))
    except ClipRejected:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot decode audio of {path.name}: {describe_error(exc)}") from exc
    if not chunks:
        raise ClipRejected(Reason.NO_AUDIO, f"{path.name} has an empty audio stream")
    return np.concatenate(chunks).astype(np.float32)


# x264's CPU features up to AVX2 (its names): what it uses on a CPU with AVX-512 when told
# to leave AVX-512 out. Every CPU with AVX-512 has all of these.
X264_CPU_BELOW_AVX512 = "MMX2,SSE,SSE2,SSE3,SSSE3,SSE4.1,SSE4.2,AVX,FMA3,AVX2,LZCNT,BMI1,BMI2"


@functools.lru_cache(maxsize=1)
def x264_options(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """Extra libx264 options that keep encodes byte-identical on this CPU.

    With its AVX-512 code (bundled with PyAV 18.1, on Xeons with AVX-512) the same frames
    encoded twice in one process decoded up to 45 levels apart, so the corpus, and every
    report after it, changed from run to run; limited to AVX2 the encodes are identical,
    as on AVX2-only machines. Elsewhere (no /proc/cpuinfo, no AVX-512): none.
    """
    try:
        has_avx512 = "avx512f" in Path(cpuinfo).read_text()
    except OSError:
        return {}
    return {"x264-params": f"asm={X264_CPU_BELOW_AVX512}"} if has_avx512 else {}


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float = FPS,
    audio: np.ndarray | None = None,
    sample_rate: int = SAMPLE_RATE,
    crf: int = 18,
) -> None:
    """Atomically write RGB uint8 frames (T, H, W, 3) as H.264 mp4, with AAC audio if given.

    ``audio`` is mono float32 in [-1, 1] (or int16). Odd frame sizes are padded by one
    pixel (H.264 with 4:2:0 chroma needs even sizes).
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    with atomic.atomic_path(path) as tmp, av.open(str(tmp), "w", format="mp4") as container:
        # PyAV wants an integer or a ratio (29.97 -> 30000/1001), not a float
        rate = int(round(fps)) if float(fps).is_integer() else Fraction(fps).limit_denominator(1001)
        vs = container.add_stream("libx264", rate=rate)
        vs.width, vs.height, vs.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        # Single-threaded, no B-frame lookahead variance, no AVX-512 (``x264_options``):
        # byte-identical output per input.
        vs.options = {"crf": str(crf), "preset": "veryfast", "threads": "1", **x264_options()}
        vs.thread_count = 1
        aus = None
        if audio is not None:
            aus = container.add_stream("aac", rate=sample_rate, layout="mono")
        for image in frames:
            for packet in vs.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                container.mux(packet)
        for packet in vs.encode(None):
            container.mux(packet)
        if aus is not None:
            samples = _as_float(audio)
            frame = av.AudioFrame.from_ndarray(samples[None, :], format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = 0  # lets the muxer record the AAC priming delay (edit list)
            for packet in aus.encode(frame):
                container.mux(packet)
            for packet in aus.encode(None):
                container.mux(packet)


def _as_float(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        return (audio.astype(np.float32) / 32768.0).reshape(-1)
    return np.clip(audio.astype(np.float32), -1.0, 1.0).reshape(-1)


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float [-1, 1] (or int16) mono audio as int16 PCM."""
    audio = np.asarray(audio)
    if audio.dtype == np.int16:
        return audio.reshape(-1)
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16).reshape(-1)


def fit_audio(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """Trim or zero-pad mono audio to exactly ``n_frames`` x 640 samples (4 MFCC steps per frame)."""
    target = n_frames * SAMPLES_PER_FRAME
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)[:target]
    return np.pad(audio, (0, target - len(audio)))


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Atomically write mono 16-bit PCM."""
    pcm = to_int16(audio)
    with atomic.atomic_path(path) as tmp, wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def read_wav(path: str | Path) -> tuple[np.ndarray, int]:
    """Read 16-bit PCM wav as mono float32 in [-1, 1] and its sample rate."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ClipRejected(Reason.CORRUPT, f"{Path(path).name}: only 16-bit PCM is supported")
            raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            channels, rate = w.getnchannels(), w.getframerate()
    except (wave.Error, EOFError) as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot read {Path(path).name}: {describe_error(exc)}") from exc
    audio = raw.reshape(-1, channels).mean(axis=1) if channels > 1 else raw
    return (audio.astype(np.float32) / 32768.0), rate


def resample_frame_indices(n_src: int, src_fps: float, dst_fps: float = FPS) -> np.ndarray:
    """Source frame index for each output frame when converting ``src_fps`` to ``dst_fps``.

    Nearest earlier source frame at each output timestamp (what ffmpeg's ``-r`` does for
    a constant-rate input); the output covers the source's duration.
    """
    if src_fps <= 0:
        raise ClipRejected(Reason.BAD_FPS, f"frame rate {src_fps}")
    n_dst = int(np.floor(n_src * dst_fps / src_fps + 1e-6))
    idx = np.floor(np.arange(n_dst) * src_fps / dst_fps + 1e-6).astype(np.int64)
    return np.minimum(idx, n_src - 1)
