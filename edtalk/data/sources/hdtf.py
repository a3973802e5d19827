"""The ``hdtf`` source: HDTF's published YouTube list and time ranges, via yt-dlp.

HDTF (Zhang et al., CVPR 2021) publishes, per subset (RD, WDA, WRA), two text files:

- ``<subset>_video_url.txt``: ``<name>[.mp4] <url>`` per line;
- ``<subset>_annotion_time.txt`` (their spelling): ``<name>.mp4 <start>-<end> ...`` with
  ``mm:ss`` (or ``hh:mm:ss``) times, one or more ranges per video.

``data.hdtf.annotations`` is the folder or http(s) URL prefix holding them. Each
(video, range) pair is one clip. A source video is downloaded once, with yt-dlp's
Python API, into a download cache shared by its ranges and by later runs; an
interrupted download resumes from its ``.part`` file. Each range is then cut out
frame-accurately (decode + re-encode) into ``<clip_id>.mp4``.

The lists are untrusted: a URL that is not http(s) on an allowed host (YouTube by
default, ``data.hdtf.allowed_hosts`` to add a mirror) is refused clip by clip, as a
``refused_url`` quarantine row, before anything is fetched (``url_policy``).
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yt_dlp
from filelock import FileLock
from yt_dlp.utils import DownloadError, ExtractorError

from edtalk.data import atomic
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.sources import clipio
from edtalk.data.sources.base import ClipSpec, Materialised
from edtalk.data.sources.folder import clip_id_for
from edtalk.data.sources.url_policy import YOUTUBE_HOSTS, url_problem

log = logging.getLogger(__name__)

SUBSETS = ("RD", "WDA", "WRA")
DEFAULT_FORMAT = "mp4/bestvideo*+bestaudio/best"
# Errors that another attempt cannot fix (the video is gone or never was there).
_GONE = re.compile(r"Unsupported URL|Video unavailable|Private video|has been removed|"
                   r"is not available|copyright|Requested format is not available|"
                   r"ffmpeg is not installed|ffmpeg not found", re.IGNORECASE)
_HTTP_STATUS = re.compile(r"HTTP Error (\d{3})")
_TRANSIENT_4XX = {408, 425, 429}  # timeout, too early, rate limited: worth retrying


def is_permanent(message: str) -> bool:
    """True when a download error says the video cannot be had (a 4xx, a removed video)."""
    status = _HTTP_STATUS.search(message)
    if status and 400 <= int(status.group(1)) < 500:
        return int(status.group(1)) not in _TRANSIENT_4XX
    return bool(_GONE.search(message))


# --- the published lists ---------------------------------------------------------

def parse_time(text: str) -> float:
    """``mm:ss``, ``hh:mm:ss`` or plain seconds (fractions allowed) -> seconds."""
    seconds = 0.0
    try:
        for part in text.strip().split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError as exc:
        raise ValueError(f"bad HDTF time {text!r}") from exc
    return seconds


def _video_name(token: str) -> str:
    return token[:-4] if token.lower().endswith(".mp4") else token


def parse_video_urls(text: str) -> dict[str, str]:
    """``<name>[.mp4] <url>`` lines -> {name: url}; blank and ``#`` lines are skipped."""
    urls = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and not fields[0].startswith("#"):
            urls[_video_name(fields[0])] = fields[1]
    return urls


def parse_annotations(text: str) -> dict[str, list[tuple[float, float]]]:
    """``<name>.mp4 <start>-<end> ...`` lines -> {name: [(start, end), ...]} in seconds."""
    ranges: dict[str, list[tuple[float, float]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        spans = []
        for token in fields[1:]:
            start, sep, end = token.partition("-")
            if not sep:
                raise ValueError(f"line {number}: {token!r} is not a <start>-<end> range")
            spans.append((parse_time(start), parse_time(end)))
        ranges[_video_name(fields[0])] = spans
    return ranges


def speaker(name: str, subset: str) -> str:
    """The identity of a video. WDA/WRA names are a person plus a running index
    (``DebFischer0``, ``DebFischer1``): one speaker, so one identity (splits by identity
    must not put the same person on both sides). RD names (``Radio12``) are the videos
    of different hosts and are kept whole."""
    if subset == "RD":
        return name
    return re.sub(r"\d+$", "", name) or name


def fetch_text(location: str, filename: str, timeout: float = 30.0) -> str | None:
    """``location/filename`` from a folder or an http(s) prefix; None when absent (404)."""
    if location.startswith(("http://", "https://")):
        url = location.rstrip("/") + "/" + filename
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (http only)
                return response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise OSError(f"cannot fetch HDTF list {url}: HTTP {exc.code}") from exc
        except urllib.error.URLError as exc:
            raise OSError(f"cannot fetch HDTF list {url}: {exc.reason}") from exc
    path = Path(location).expanduser() / filename
    return path.read_text(encoding="utf-8") if path.is_file() else None


# --- downloading -----------------------------------------------------------------

class _QuietLogger:
    """Routes yt-dlp's messages to logging instead of the terminal."""

    def debug(self, msg: str) -> None:
        log.debug(msg)

    def info(self, msg: str) -> None:
        log.debug(msg)

    def warning(self, msg: str) -> None:
        log.warning(msg)

    def error(self, msg: str) -> None:
        log.debug(msg)  # the exception carries the same text to the quarantine table


@dataclass
class Downloader:
    """One cached, resumable yt-dlp download per source video."""

    cache_dir: Path
    retries: int = 3
    format: str = DEFAULT_FORMAT
    backoff: float = 2.0            # seconds before the first retry; doubles each time
    socket_timeout: float = 30.0
    allowed_hosts: tuple[str, ...] | None = None  # None: any http(s) host

    def fetch(self, name: str, url: str) -> Path:
        """The downloaded file for ``name``; downloads it unless a finished copy is cached."""
        if (problem := url_problem(url, self.allowed_hosts)) is not None:
            raise ClipRejected(Reason.REFUSED_URL, f"{name}: {problem} ({url[:200]})")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        # The name comes from a downloaded list: never let it pick a path outside the cache.
        stem = clip_id_for(name)
        marker = self.cache_dir / f"{stem}.done.json"
        # One lock per video: its ranges are materialised in parallel (threads or processes).
        with FileLock(str(self.cache_dir / f"{stem}.lock")):
            cached = self._cached(marker, url)
            if cached is not None:
                return cached
            last: Exception | None = None
            for attempt in range(self.retries + 1):
                try:
                    path = self._download(stem, url)
                    # Marker last: its presence means the file is complete.
                    atomic.write_json(marker, {"url": url, "file": path.name})
                    return path
                except (DownloadError, ExtractorError, OSError) as exc:
                    if atomic.is_disk_full(exc):  # retrying cannot help; not the video's fault
                        raise atomic.disk_full(self.cache_dir / stem, exc) from exc
                    last = exc
                    if is_permanent(str(exc)) or attempt == self.retries:
                        break
                    delay = self.backoff * 2 ** attempt
                    log.warning("download of %s failed (%s); retry %d/%d in %.1f s",
                                name, exc, attempt + 1, self.retries, delay)
                    time.sleep(delay)
            raise ClipRejected(Reason.DOWNLOAD_FAILED, f"{name} from {url}: {_short(last)}")

    def _cached(self, marker: Path, url: str) -> Path | None:
        """The finished download recorded by ``marker`` if it is for ``url`` and still there."""
        if not marker.is_file():
            return None
        try:
            record = json.loads(marker.read_text())
            path = self.cache_dir / record["file"]
        except (ValueError, KeyError, OSError):
            return None
        # A list that now points the name at another URL means another video.
        return path if record.get("url") == url and path.is_file() else None

    def _download(self, stem: str, url: str) -> Path:
        options: dict[str, Any] = {
            "format": self.format,
            "outtmpl": {"default": str(self.cache_dir / f"{stem}.%(ext)s")},
            "continuedl": True,         # resume <file>.part with an HTTP Range request
            "nopart": False,
            "retries": self.retries,
            "fragment_retries": self.retries,
            "socket_timeout": self.socket_timeout,
            "noplaylist": True,
            "cachedir": False,
            "merge_output_format": "mp4",
            "quiet": True,
            "no_warnings": True,
            "noprogress": True,
            "logger": _QuietLogger(),
        }
        ffmpeg = _ffmpeg_binary()
        if ffmpeg:  # lets yt-dlp merge separate best-video + best-audio streams
            options["ffmpeg_location"] = ffmpeg
        with yt_dlp.YoutubeDL(options) as ydl:
            info = ydl.extract_info(url, download=True)
            downloads = (info or {}).get("requested_downloads") or []
            path = Path(downloads[0]["filepath"]) if downloads else Path(ydl.prepare_filename(info))
        if not path.is_file():
            raise ClipRejected(Reason.DOWNLOAD_FAILED, f"yt-dlp reported {path.name} but wrote nothing")
        return path


def _short(exc: Exception | None) -> str:
    text = str(exc) if exc is not None else "unknown error"
    return text.removeprefix("ERROR: ").splitlines()[0][:300]


# --- the source --------------------------------------------------------------------

class HdtfSource:
    """HDTF clips: one per (video, annotated time range)."""

    name = "hdtf"

    def __init__(self, annotations: str | Path, max_clips: int | None = None, retries: int = 3,
                 format: str = DEFAULT_FORMAT, download_dir: str | Path | None = None,
                 backoff: float = 2.0, subsets: tuple[str, ...] = SUBSETS,
                 allowed_hosts: tuple[str, ...] | None = YOUTUBE_HOSTS) -> None:
        self.annotations = str(annotations)
        self.max_clips = max_clips
        self.retries = int(retries)
        self.format = format
        # None = ``<clips_dir>/../cache/hdtf`` (decided when the clips dir is known).
        self.download_dir = Path(download_dir) if download_dir is not None else None
        self.backoff = backoff
        self.subsets = subsets
        self.allowed_hosts = tuple(allowed_hosts) if allowed_hosts is not None else None

    def list_clips(self) -> list[ClipSpec]:
        specs: list[ClipSpec] = []
        found_any = False
        for subset in self.subsets:
            url_text = fetch_text(self.annotations, f"{subset}_video_url.txt")
            time_text = fetch_text(self.annotations, f"{subset}_annotion_time.txt")
            if url_text is None or time_text is None:
                continue
            found_any = True
            urls, times = parse_video_urls(url_text), parse_annotations(time_text)
            missing = sorted(set(times) - set(urls))
            if missing:
                log.warning("HDTF %s: %d annotated videos have no URL (e.g. %s); skipped",
                            subset, len(missing), missing[0])
            for video in sorted(set(times) & set(urls)):
                for index, (start, end) in enumerate(times[video]):
                    specs.append(ClipSpec(
                        clip_id=clip_id_for("hdtf", video, f"{index:02d}"),
                        identity=speaker(video, subset), source=self.name,
                        origin={"subset": subset, "video": video, "url": urls[video],
                                "start": start, "end": end},
                    ))
        if not found_any:
            raise FileNotFoundError(
                f"no HDTF lists under {self.annotations!r}: expected <subset>_video_url.txt and "
                f"<subset>_annotion_time.txt for a subset in {', '.join(self.subsets)}")
        return specs[: self.max_clips] if self.max_clips is not None else specs

    def materialise(self, spec: ClipSpec, clips_dir: Path) -> Materialised:
        clips_dir = Path(clips_dir)
        downloader = Downloader(self.download_dir or clips_dir.parent / "cache" / "hdtf",
                                retries=self.retries, format=self.format, backoff=self.backoff,
                                allowed_hosts=self.allowed_hosts)
        source_file = downloader.fetch(spec.origin["video"], spec.origin["url"])
        dst = clips_dir / f"{spec.clip_id}.mp4"
        clipio.trim(source_file, dst, float(spec.origin["start"]), float(spec.origin["end"]))
        return Materialised(video=dst)


def _ffmpeg_binary() -> str | None:
    """The ffmpeg program shipped in the imageio-ffmpeg wheel, if installed."""
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None
