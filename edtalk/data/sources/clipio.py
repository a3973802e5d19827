"""Clip-level file operations shared by the real sources: check, copy, mux, trim.

All writers go through ``atomic.atomic_path`` so that a clip appears under its final
name only when complete. Anything FFmpeg cannot read becomes ``ClipRejected``.
"""

from __future__ import annotations

import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from edtalk.data import atomic, media
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.schema import SAMPLE_RATE

_AV_ERRORS = (av.error.FFmpegError, OSError, ValueError)


def check_integrity(path: Path) -> media.MediaInfo:
    """Probe, then demux every video packet and decode the first frame.

    Demuxing is cheap (no decoding) and catches the common damage: a file cut short
    still declares all its frames in the header but holds fewer packets.
    """
    info = media.probe(path)
    packets, decoded = 0, False
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue  # the flush packet at the end of the stream
                packets += 1
                if not decoded:
                    decoded = _decodes(stream, packet, path)
    except ClipRejected:
        raise
    except _AV_ERRORS as exc:
        if packets == 0:
            raise ClipRejected(Reason.CORRUPT, f"cannot read {path.name}: {media.describe_error(exc)}") from exc
        raise ClipRejected(Reason.TRUNCATED, f"{path.name}: reading stopped after {packets} "
                                             f"packets: {media.describe_error(exc)}") from exc
    if packets == 0:
        raise ClipRejected(Reason.CORRUPT, f"{path.name} holds no video packet")
    if info.frames and packets < 0.9 * info.frames:
        raise ClipRejected(Reason.TRUNCATED,
                           f"{path.name} holds {packets} of {info.frames} declared frames")
    if not decoded:
        # Codecs with delay only emit after a few packets; one flush settles it.
        try:
            with av.open(str(path)) as container:
                decoded = next(container.decode(video=0), None) is not None
        except _AV_ERRORS as exc:
            raise ClipRejected(Reason.CORRUPT, f"cannot decode {path.name}: {media.describe_error(exc)}") from exc
        if not decoded:
            raise ClipRejected(Reason.CORRUPT, f"{path.name} has no decodable frame")
    return info


def _decodes(stream: av.video.stream.VideoStream, packet: av.Packet, path: Path) -> bool:
    """Whether ``packet`` yields a frame; bad bitstream data is corruption, not truncation."""
    try:
        return bool(stream.codec_context.decode(packet))
    except _AV_ERRORS as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot decode {path.name}: {media.describe_error(exc)}") from exc


def copy_clip(src: Path, dst: Path) -> Path:
    """Byte-copy ``src`` onto ``dst`` atomically (the original container is kept)."""
    with atomic.atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def mux_video_audio(video: Path, audio: Path | None, dst: Path) -> Path:
    """Stream-copy the first video stream of ``video`` and the first audio stream of
    ``audio`` (if given) into ``dst`` (mp4), atomically. No re-encoding: exact and fast.
    """
    try:
        with atomic.atomic_path(dst) as tmp, av.open(str(tmp), "w", format="mp4") as out:
            inputs = [av.open(str(video))]
            try:
                if not inputs[0].streams.video:
                    raise ClipRejected(Reason.NO_VIDEO, f"{video.name} has no video stream")
                pairs = [(inputs[0], inputs[0].streams.video[0])]
                if audio is not None:
                    inputs.append(av.open(str(audio)))
                    if not inputs[1].streams.audio:
                        raise ClipRejected(Reason.NO_AUDIO, f"{audio.name} has no audio stream")
                    pairs.append((inputs[1], inputs[1].streams.audio[0]))
                # Every stream must exist before the first packet: muxing writes the header.
                targets = [out.add_stream_from_template(stream) for _, stream in pairs]
                for (container, stream), target in zip(pairs, targets, strict=True):
                    for packet in container.demux(stream):
                        if packet.dts is None:
                            continue  # flush packet
                        packet.stream = target
                        out.mux(packet)
            finally:
                for container in inputs:
                    container.close()
    except (ClipRejected, atomic.DiskFull):
        raise
    except _AV_ERRORS as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot mux {video.name}: {media.describe_error(exc)}") from exc
    return dst


def trim(src: Path, dst: Path, start: float, end: float, crf: int = 18) -> Path:
    """Cut [start, end) seconds of ``src`` into ``dst`` (H.264 + 16 kHz mono AAC), atomically.

    Re-encoding (rather than copying packets) makes the cut frame-accurate: a stream
    copy could only start at a keyframe. Frames are streamed, so long ranges of
    high-resolution video never sit in memory at once.
    """
    if end <= start:
        raise ClipRejected(Reason.TOO_SHORT, f"empty time range {start:g}-{end:g} s")
    try:
        audio = _read_audio_range(src, start, end)
        with av.open(str(src)) as inp, atomic.atomic_path(dst) as tmp, \
                av.open(str(tmp), "w", format="mp4") as out:
            if not inp.streams.video:
                raise ClipRejected(Reason.NO_VIDEO, f"{src.name} has no video stream")
            vin = inp.streams.video[0]
            vin.thread_type = "AUTO"
            rate = vin.average_rate or vin.guessed_rate or Fraction(25)
            vout = out.add_stream("libx264", rate=rate)
            vout.width = vin.codec_context.width + vin.codec_context.width % 2
            vout.height = vin.codec_context.height + vin.codec_context.height % 2
            vout.pix_fmt = "yuv420p"
            # One encoder thread, as media.write_video: the same input gives the same bytes.
            vout.options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
            vout.thread_count = 1
            aout = out.add_stream("aac", rate=SAMPLE_RATE, layout="mono") if audio is not None else None
            if start > 0:
                # Seek lands on the keyframe at or before ``start``; frames before it are dropped.
                inp.seek(int(start / vin.time_base), stream=vin, backward=True)
            written = 0
            for frame in inp.decode(vin):
                if frame.time is None or frame.time < start - 1e-6:
                    continue
                if frame.time >= end - 1e-6:
                    break
                image = frame.reformat(width=vout.width, height=vout.height, format="yuv420p")
                image.pts = written
                image.time_base = Fraction(1) / Fraction(rate)
                for packet in vout.encode(image):
                    out.mux(packet)
                written += 1
            for packet in vout.encode(None):
                out.mux(packet)
            if written == 0:
                raise ClipRejected(Reason.TOO_SHORT,
                                   f"{src.name} has no frame in {start:g}-{end:g} s")
            if aout is not None and audio is not None and audio.size:
                chunk = av.AudioFrame.from_ndarray(audio[None, :], format="flt", layout="mono")
                chunk.sample_rate = SAMPLE_RATE
                chunk.pts = 0
                for packet in aout.encode(chunk):
                    out.mux(packet)
                for packet in aout.encode(None):
                    out.mux(packet)
    except (ClipRejected, atomic.DiskFull):
        raise
    except _AV_ERRORS as exc:
        raise ClipRejected(Reason.CORRUPT, f"cannot trim {src.name}: {media.describe_error(exc)}") from exc
    return dst


def _read_audio_range(src: Path, start: float, end: float) -> np.ndarray | None:
    """The [start, end) audio of ``src`` as 16 kHz mono float32, or None without audio."""
    with av.open(str(src)) as inp:
        if not inp.streams.audio:
            return None
        ain = inp.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        if start > 0:
            inp.seek(int(start / ain.time_base), stream=ain, backward=True)
        chunks: list[np.ndarray] = []
        first_time: float | None = None
        for frame in inp.decode(ain):
            if frame.time is None:
                continue
            if first_time is None:
                first_time = float(frame.time)
            if frame.time >= end:
                break
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks or first_time is None:
        return np.zeros(0, dtype=np.float32)
    samples = np.concatenate(chunks).astype(np.float32)
    # Decoded audio begins at ``first_time`` (the frame the seek landed on): drop the
    # lead-in, or pad with silence when the audio track starts after ``start``.
    offset = round((start - first_time) * SAMPLE_RATE)
    if offset < 0:
        samples = np.concatenate([np.zeros(-offset, dtype=np.float32), samples])
        offset = 0
    length = round((end - start) * SAMPLE_RATE)
    return samples[offset: offset + length]

