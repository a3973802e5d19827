"""``--crop auto``: face-crop a set of videos with the project's cropper when they are not crops.

Methods publish either face crops (square, the face filling most of the frame, as
EDTalk's 256 px outputs) or whole frames (a talk-show shot, a phone video). Pixel and
landmark metrics are only comparable on crops, so a set whose sampled frames are not
crops goes through ``edtalk.data.crop.crop_clip`` (dlib detector, FOMM box, 25 fps) into
a work folder, and the suite scores the crops. The decision is per set (all clips of a
method share a framing), from up to three of its videos.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edtalk.data import media
from edtalk.data.crop import crop_clip, crop_frame
from edtalk.data.detect import SOURCE_SHORT_SIDE, DlibDetector, Detector
from edtalk.data.quarantine import ClipRejected
from metrics import stream

MIN_FACE_SHARE = 0.3
"""A frame counts as a crop when it is square (within 2 %) and the detected face box is
at least this share of its width: dlib's box covers the eyebrows-to-chin square, about
half of a FOMM crop's side (``increase`` 0.1 on each side of the tube box)."""


def looks_like_crop(path: str | Path, detector: Detector, samples: int = 3) -> bool | None:
    """True/False from ``samples`` evenly spaced frames; None when no face is found at all."""
    n = stream.count_frames(path)
    want = set(np.linspace(0, n, samples, endpoint=False).astype(int).tolist())
    shares = []
    h = w = 0
    for i, frame in enumerate(stream.frames(path)):
        if i in want:
            h, w = frame.shape[:2]
            faces = detector.detect(frame)
            if faces:
                x0, _, x1, _ = max(faces, key=lambda f: f.score).box
                shares.append((x1 - x0) / w)
        if i >= max(want):
            break
    if not shares:
        return None
    return abs(h - w) <= 0.02 * max(h, w) and float(np.median(shares)) >= MIN_FACE_SHARE


def set_needs_crop(videos: dict[str, Path], detector: Detector | None = None) -> tuple[bool | None, str]:
    """(crop it?, why) for one set of videos, judged from up to three of them; None when
    no face was found (the caller decides: a prediction set follows its ground truth)."""
    detector = detector or DlibDetector(short_side=SOURCE_SHORT_SIDE)   # faces of any size
    verdicts = [looks_like_crop(p, detector) for p in list(videos.values())[:3]]
    known = [v for v in verdicts if v is not None]
    if not known:
        return None, "no face found in the sampled frames"
    if all(known):
        return False, "already face crops"
    return True, "not face crops (frame not square or face small in it)"


Boxes = dict[str, tuple[tuple[int, int, int], np.ndarray]]
"""clip id -> ((source frames, height, width), whole-pixel crop boxes per 25 fps frame)."""


def _write(out: Path, cid: str, crops: np.ndarray, source: Path) -> None:
    """mp4 of the crops with the source's audio (fitted to them), plus ``<id>.wav``."""
    try:
        audio = media.fit_audio(media.read_audio(source), len(crops))
    except ClipRejected:
        audio = None                        # no audio track: no silent wav posing as speech
    media.write_video(out / f"{cid}.mp4", crops, audio=audio)
    if audio is not None:
        media.write_wav(out / f"{cid}.wav", audio)


def _with_boxes(path: Path, key: tuple[int, int, int], boxes: np.ndarray, size: int) -> np.ndarray | None:
    """Crops of ``path`` at the ground truth's boxes, when it has the GT's frames and size."""
    frames, fps = media.read_frames(path)
    if (len(frames), *frames.shape[1:3]) != key:
        return None
    src = media.resample_frame_indices(len(frames), fps)
    if len(src) != len(boxes):
        return None
    return np.stack([crop_frame(frames[s], b, size) for s, b in zip(src, boxes)])


def crop_set(videos: dict[str, Path], work_dir: str | os.PathLike, size: int,
             detector: Detector | None = None, progress: bool = True, reference: Boxes | None = None
             ) -> tuple[Path, dict[str, str], Boxes]:
    """Crop every video of a set into ``work_dir`` (mp4, plus ``<id>.wav`` when it has audio).

    A video with the same frame count and size as its ``reference`` (the ground truth's
    boxes) is cut at those boxes: paired metrics then compare the same face region, and
    a degraded prediction (blur defeats dlib) is not lost to detection. Others go through
    ``crop_clip``. Returns the folder, {clip id: reason} of rejected clips, and the boxes.
    """
    detector = detector or DlibDetector(short_side=SOURCE_SHORT_SIDE)
    out = Path(work_dir)
    out.mkdir(parents=True, exist_ok=True)
    rejected: dict[str, str] = {}
    boxes: Boxes = {}
    for cid, path in tqdm(sorted(videos.items()), desc=f"crop {out.name}", unit="clip",
                          disable=not progress):
        try:
            if reference and cid in reference:
                crops = _with_boxes(path, *reference[cid], size)
                if crops is not None:
                    _write(out, cid, crops, path)
                    continue
            info = media.probe(path)
            wav = out / f".{cid}.audio.wav"
            res = crop_clip(path, None, out / f"{cid}.mp4", wav, size, detector, clip_id=cid,
                            require_audio=False)
            boxes[cid] = ((stream.count_frames(path),
                           info.height, info.width), res.boxes[["x0", "y0", "x1", "y1"]].to_numpy())
            if res.has_audio:
                wav.replace(out / f"{cid}.wav")
            else:
                wav.unlink(missing_ok=True)
        except ClipRejected as exc:
            rejected[cid] = f"{exc.reason.value}: {exc}"
    return out, rejected, boxes


def crop_info(path: str | Path) -> str:
    """``WxH@fps`` of a video, for notes."""
    info = media.probe(path)
    return f"{info.width}x{info.height}@{info.fps:g}"
