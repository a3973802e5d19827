"""Helpers that craft small media files (good and deliberately bad) for the source tests.

Plain functions, not fixtures, so any test module can import what it needs. Files are
tiny (a few frames of 32x32 noise-free gradients) so the whole suite stays fast.
"""

from __future__ import annotations

import contextlib
import http.server
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from edtalk.data import media


def frames(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """``n`` RGB frames whose content changes every frame (so codecs keep every frame)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
    ramp = (np.arange(n, dtype=np.int64)[:, None, None, None] * 7) % 255
    return ((base[None].astype(np.int64) + ramp) % 255).astype(np.uint8)


def tone(seconds: float, sample_rate: int = 16_000, hz: float = 220.0) -> np.ndarray:
    """A quiet sine tone, mono float32."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (0.2 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def make_clip(path: str | Path, seconds: float = 1.2, fps: float = 25, with_audio: bool = True,
              size: int = 32, sample_rate: int = 16_000, seed: int = 0) -> Path:
    """An H.264 (+ AAC) mp4 through the project's own writer."""
    path = Path(path)
    n = max(1, round(seconds * fps))
    audio = tone(n / fps, sample_rate) if with_audio else None
    media.write_video(path, frames(n, size, seed), fps=fps, audio=audio, sample_rate=sample_rate)
    return path


def make_clip_pcm(path: str | Path, seconds: float = 1.2, fps: float = 25, size: int = 32,
                  sample_rate: int = 4_000) -> Path:
    """A Matroska clip with raw PCM audio, for rates AAC cannot encode (e.g. 4 kHz)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * fps)
    with av.open(str(path), "w", format="matroska") as out:
        vs = out.add_stream("libx264", rate=int(fps))
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        aus = out.add_stream("pcm_s16le", rate=sample_rate, layout="mono")
        for image in frames(n, size):
            for packet in vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        pcm = media.to_int16(tone(n / fps, sample_rate))
        frame = av.AudioFrame.from_ndarray(pcm[None, :], format="s16", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = 0
        for packet in aus.encode(frame):
            out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path


def make_audio_only(path: str | Path, seconds: float = 1.2, sample_rate: int = 16_000) -> Path:
    """An mp4/m4a container holding only an AAC stream (MEAD ships its audio like this)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as out:
        aus = out.add_stream("aac", rate=sample_rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(tone(seconds, sample_rate)[None, :], format="flt",
                                           layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = 0
        for packet in aus.encode(frame):
            out.mux(packet)
        for packet in aus.encode(None):
            out.mux(packet)
    return path


def write_random_bytes(path: str | Path, n: int = 4096, seed: int = 0) -> Path:
    """Noise with a video extension: what a corrupt download looks like."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes())
    return path


def write_truncated(src: str | Path, dst: str | Path, keep: float = 0.5) -> Path:
    """A copy of ``src`` cut after ``keep`` of its bytes (an interrupted copy)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


def make_faststart_clip(path: str | Path, seconds: float = 2.0, fps: float = 25,
                        size: int = 32) -> Path:
    """An mp4 whose index (moov) comes first, so a truncated copy still opens."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = round(seconds * fps)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as out:
        vs = out.add_stream("libx264", rate=int(fps))
        vs.width = vs.height = size
        vs.pix_fmt = "yuv420p"
        for image in frames(n, size):
            for packet in vs.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
    return path


# --- a loopback HTTP server with byte ranges (yt-dlp resumes with Range requests) ---

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class LoopbackServer:
    """A running server: its base URL and what it was asked for."""

    base_url: str
    root: Path
    requests: Counter = field(default_factory=Counter)       # path -> GET count
    ranges: list[tuple[str, str]] = field(default_factory=list)  # (path, Range header)
    bytes_sent: Counter = field(default_factory=Counter)     # path -> body bytes sent
    fail_next: Counter = field(default_factory=Counter)      # path -> 503s still to send

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


def _handler(server_state: LoopbackServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def _serve(self, body: bool) -> None:
            name = self.path.split("?", 1)[0].lstrip("/")
            target = (server_state.root / name).resolve()
            if body:
                server_state.requests[name] += 1
            if server_state.fail_next[name] > 0:  # a flaky server, for retry tests
                server_state.fail_next[name] -= 1
                self.send_error(503)
                return
            if not target.is_file() or server_state.root.resolve() not in target.parents:
                self.send_error(404)
                return
            data = target.read_bytes()
            start, end = 0, len(data) - 1
            header = self.headers.get("Range")
            match = _RANGE.fullmatch(header.strip()) if header else None
            if header:
                server_state.ranges.append((name, header))
            if match:
                start = int(match.group(1))
                end = int(match.group(2)) if match.group(2) else end
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            ctype = "video/mp4" if name.endswith(".mp4") else "text/plain"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if body:
                self.wfile.write(data[start:end + 1])
                server_state.bytes_sent[name] += end - start + 1

        def do_GET(self) -> None:  # http.server's naming
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

    return Handler


@contextlib.contextmanager
def serve_directory(root: str | Path) -> Iterator[LoopbackServer]:
    """Serve ``root`` on 127.0.0.1 (a free port) in a background thread."""
    state = LoopbackServer(base_url="", root=Path(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)

