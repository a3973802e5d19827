"""A contact sheet: the same instants of a few held-out clips, as each method renders them.

Per clip, one row per method (ground truth, the still baseline, EDTalk-V, EDTalk-A), the
same ``frames`` instants in every row, and under them a bar per instant for the loudness
of the driving audio there: where the bar is tall the mouth should be open. The first
column is the clip's first frame, the identity source every method starts from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edtalk.data import atomic
from edtalk.data.media import fit_audio, read_audio, read_frames
from edtalk.data.schema import SAMPLE_RATE, SAMPLES_PER_FRAME

_LABEL_W = 96          # pixels left of the frames for the row label
_BAR_H = 28            # height of the loudness strip
_GAP = 6               # blank rows between clips
_BG = (255, 255, 255)
_INK = (40, 40, 40)


@dataclass(frozen=True)
class SheetRow:
    """One method's video of a clip: a label and the mp4 to read."""

    label: str
    video: Path


def frame_loudness(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """RMS of the audio under each video frame (25 fps, 640 samples a frame at 16 kHz)."""
    a = fit_audio(audio, n_frames).astype(np.float64)
    return np.sqrt(np.mean(a.reshape(n_frames, SAMPLES_PER_FRAME) ** 2, axis=1))


def pick_instants(loudness: np.ndarray, count: int) -> np.ndarray:
    """``count`` frame indices in time order that alternate loud and quiet moments.

    The clip is cut into ``count`` equal spans; even spans give their loudest frame, odd
    spans their quietest, so open and closed mouths both appear when the speech has them.
    """
    n = len(loudness)
    if n < count:
        raise ValueError(f"clip has {n} frames, fewer than the {count} the sheet shows")
    edges = np.linspace(0, n, count + 1).astype(int)
    picks = []
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
        span = loudness[lo:hi]
        picks.append(lo + int(np.argmax(span) if i % 2 == 0 else np.argmin(span)))
    return np.array(picks)


def _label(width: int, height: int, text: str) -> np.ndarray:
    tile = np.full((height, width, 3), _BG, np.uint8)
    for i, line in enumerate(text.split("\n")):
        cv2.putText(tile, line, (4, 16 + 14 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.38, _INK, 1, cv2.LINE_AA)
    return tile


def _bars(values: np.ndarray, cell: int) -> np.ndarray:
    strip = np.full((_BAR_H, cell * len(values), 3), _BG, np.uint8)
    top = max(float(values.max()), 1e-9)
    for i, v in enumerate(values):
        h = int(round((_BAR_H - 4) * float(v) / top))
        x0 = i * cell + cell // 3
        cv2.rectangle(strip, (x0, _BAR_H - 2 - h), (x0 + cell // 3, _BAR_H - 2), (70, 110, 200), -1)
    return strip


def clip_block(clip_id: str, rows: list[SheetRow], audio_file: Path, frames: int = 8,
               cell: int = 128) -> np.ndarray:
    """The sheet's block for one clip: one row of frames per method, the loudness strip below."""
    reference, _ = read_frames(rows[0].video)
    loudness = frame_loudness(read_audio(audio_file, SAMPLE_RATE), len(reference))
    picks = pick_instants(loudness, frames)
    body = []
    for row in rows:
        video, _ = read_frames(row.video)
        if len(video) < picks.max() + 1:
            raise ValueError(f"{row.video}: {len(video)} frames, the sheet needs frame {picks.max()}")
        tiles = [cv2.resize(video[i], (cell, cell), interpolation=cv2.INTER_NEAREST) for i in picks]
        body.append(np.concatenate([_label(_LABEL_W, cell, row.label)] + tiles, axis=1))
    strip = np.concatenate([_label(_LABEL_W, _BAR_H, "loudness"), _bars(loudness[picks], cell)], axis=1)
    title = _label(body[0].shape[1], 22, f"{clip_id}  (frames {', '.join(str(int(i)) for i in picks)})")
    return np.concatenate([title] + body + [strip], axis=0)


def contact_sheet(blocks: list[np.ndarray]) -> np.ndarray:
    """Stack clip blocks (same width) with a white gap between them."""
    width = blocks[0].shape[1]
    gap = np.full((_GAP, width, 3), _BG, np.uint8)
    out = []
    for i, b in enumerate(blocks):
        out += ([gap] if i else []) + [b]
    return np.concatenate(out, axis=0)


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Write an RGB image as PNG atomically."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode {path} as PNG")
    atomic.write_bytes(Path(path), data.tobytes())
    return Path(path)
