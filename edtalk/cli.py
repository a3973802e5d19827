"""The ``edtalk`` command: drive a trained EDTalk from a face photo, videos and/or speech.

    edtalk generate --identity face.png [--mouth-video a.mp4] [--pose-video b.mp4]
                    [--expression-video c.mp4] [--audio speech.wav] [--text "..."]
                    [--pose-seed N] [--emotion happy] --out out.mp4 [--checkpoint PATH]

Every source is optional; a missing one keeps the identity's own factor. With
``--audio`` the audio models drive the mouth, sample the pose (unless ``--pose-video``)
and predict the expression from the audio and ``--text`` (unless ``--expression-video``;
``--emotion`` asks the expression predictor for that emotion). Photos and videos that
are not already face crops at the model's size are cropped like the pipeline's crop
stage (dlib face box, FOMM-style square enlarged by ``--increase``; videos tracked and
smoothed over time). The output length is the audio's, else the longest driving video's
(shorter sources hold their last frame, or loop with ``--fit loop``); the audio track is
the ``--audio`` file's, else the mouth video's (if it has one).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edtalk import generate as gen
from edtalk.data.schema import SAMPLE_RATE
from edtalk.weights import MissingModel

CROP_MODES = ("auto", "always", "never")


class UsageError(ValueError):
    """Bad command-line input; reported as one line, exit status 2."""


# --- inputs -----------------------------------------------------------------------------

def _largest_face(frame: np.ndarray, detector: object) -> np.ndarray:
    faces = detector.detect(frame)  # type: ignore[attr-defined]
    if not faces:
        raise UsageError("no face found")
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1])).box


def _is_crop(shape: tuple[int, ...], size: int, mode: str) -> bool:
    if mode == "never":
        return True
    if mode == "always":
        return False
    return shape[0] == shape[1] == size     # auto: a square at the model size is a crop already


def load_identity(path: str | Path, size: int, crop: str = "auto", increase: float = 0.1) -> np.ndarray:
    """Any face photo -> RGB uint8 (size, size, 3), cropped like the pipeline's crop stage."""
    import cv2

    from edtalk.data.crop import crop_frame, integer_boxes, square_boxes
    from edtalk.data.detect import DlibDetector

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise UsageError(f"cannot read the identity image {path}")
    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if not _is_crop(image.shape, size, crop):
        try:
            box = _largest_face(image, DlibDetector())
        except UsageError:
            raise UsageError(f"no face found in {path}; use --crop never to take the image as it is") from None
        square = integer_boxes(square_boxes(box[None], increase))[0]
        image = crop_frame(image, square, size)
    return image   # any other size is resized by gen.to_tensor


def load_video(path: str | Path, size: int, crop: str = "auto", increase: float = 0.1,
               smooth_window: int = 9) -> np.ndarray:
    """A driving video -> RGB uint8 (T, size, size, 3) at 25 fps, cropped when not a crop already."""
    from edtalk.data import media
    from edtalk.data.crop import crop_clip
    from edtalk.data.detect import DlibDetector
    from edtalk.data.quarantine import ClipRejected

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"driving video {path} not found")
    try:
        info = media.probe(path)
        if _is_crop((info.height, info.width), size, crop) and round(info.fps) == 25:
            return media.read_frames(path)[0]
        if _is_crop((info.height, info.width), size, crop):   # right pixels, wrong rate
            frames, fps = media.read_frames(path)
            return frames[media.resample_frame_indices(len(frames), fps)]
        with tempfile.TemporaryDirectory(prefix="edtalk-crop-") as tmp:
            result = crop_clip(path, None, Path(tmp) / "crop.mp4", Path(tmp) / "crop.wav", size,
                               DlibDetector(), increase=increase, smooth_window=smooth_window,
                               require_audio=False)
        return result.frames
    except ClipRejected as exc:
        raise UsageError(f"{path}: {exc}") from exc


def load_audio(path: str | Path) -> np.ndarray:
    """Mono float32 at 16 kHz from any audio or video file (resampled if needed)."""
    from edtalk.data import media
    from edtalk.data.quarantine import ClipRejected, Reason

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"audio file {path} not found")
    try:
        return media.read_audio(path)
    except ClipRejected as exc:
        if exc.reason != Reason.BAD_SAMPLE_RATE:
            raise UsageError(f"{path}: {exc}") from exc
    from scipy.signal import resample_poly

    audio, rate = media.read_wav(path)
    return resample_poly(audio, SAMPLE_RATE, rate).astype(np.float32)


def video_audio(path: str | Path) -> np.ndarray | None:
    """The audio track of a video, or None when it has none."""
    from edtalk.data import media
    from edtalk.data.quarantine import ClipRejected

    try:
        return media.read_audio(path)
    except ClipRejected:
        return None


# --- the command ------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edtalk", description="EDTalk talking-head synthesis")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate", help="identity photo + driving videos and/or speech -> mp4",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("--identity", required=True, help="face photo (any size; cropped like the pipeline)")
    g.add_argument("--mouth-video", help="video whose mouth drives the output")
    g.add_argument("--pose-video", help="video whose head pose drives the output")
    g.add_argument("--expression-video", help="video whose expression drives the output")
    g.add_argument("--audio", help="speech (wav or any media file): mouth, sampled pose, expression")
    g.add_argument("--text", help="transcript of the speech (helps the expression predictor)")
    g.add_argument("--pose-seed", type=int, default=0, help="seed of the sampled pose (with --audio)")
    g.add_argument("--temperature", type=float, default=1.0, help="pose flow sampling temperature")
    g.add_argument("--emotion", help="emotion for the predicted expression (with --audio)")
    g.add_argument("--out", required=True, help="output mp4")
    g.add_argument("--checkpoint", default=gen.DEFAULT_CHECKPOINT,
                   help=f"our model.pt or an official EDTalk.pt (default {gen.DEFAULT_CHECKPOINT})")
    g.add_argument("--audio-models", default=gen.DEFAULT_AUDIO_MODELS,
                   help=f"folder of the audio models (default {gen.DEFAULT_AUDIO_MODELS})")
    g.add_argument("--crop", choices=CROP_MODES, default="auto",
                   help="crop inputs to the face: auto = unless already square at the model size")
    g.add_argument("--increase", type=float, default=0.1, help="FOMM box enlargement per side")
    g.add_argument("--fit", choices=("hold", "loop"), default="hold",
                   help="shorter sources hold their last frame or loop")
    g.add_argument("--mouth-gain", type=float, default=None,
                   help="gain on the mouth's motion (default: the one stored in the checkpoint; 1 = the paper)")
    g.add_argument("--batch-size", type=int, default=8)
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    return parser


def run_generate(args: argparse.Namespace) -> dict[str, object]:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.audio is None and (args.text or args.emotion):
        raise UsageError("--text and --emotion need --audio (they steer the audio-driven expression)")
    videos = {"mouth": args.mouth_video, "pose": args.pose_video, "exp": args.expression_video}
    if args.audio is None and not any(videos.values()):
        raise UsageError("give at least one source: --mouth-video, --pose-video, --expression-video or --audio")
    model = gen.load_model(args.checkpoint)
    driver = None
    if args.audio:
        from edtalk.audio2motion.driver import load_audio_driver   # heavy: only for --audio
        driver = load_audio_driver(args.audio_models)
    if videos["exp"] and "exp" not in gen.model_factors(model):
        raise UsageError(f"{args.checkpoint} has no expression bank (lip/pose layout); drop --expression-video")
    size = model.cfg.size
    identity = load_identity(args.identity, size, args.crop, args.increase)
    loaded: dict[str, np.ndarray] = {}       # the same file drives several factors: load (and encode) once
    sources: dict[str, np.ndarray | None] = {}
    for name, path in videos.items():
        if path is None:
            sources[name] = None
            continue
        key = str(Path(path).resolve())
        if key not in loaded:
            loaded[key] = load_video(path, size, args.crop, args.increase)
        sources[name] = loaded[key]
    audio, n_frames = None, None
    if args.audio:
        audio = load_audio(args.audio)
        n_frames = gen.frames_for_audio(len(audio))
        sources = gen.audio_sources(driver, audio, n_frames, transcript=args.text, pose_seed=args.pose_seed,
                                    temperature=args.temperature, emotion=args.emotion,
                                    pose=sources["pose"], exp=sources["exp"], factors=gen.model_factors(model))
    elif args.mouth_video:
        audio = video_audio(args.mouth_video)   # fitted (trimmed / padded) to the output's length
    t0 = time.perf_counter()
    result = gen.generate(model, identity, n_frames=n_frames, fit=args.fit, batch_size=args.batch_size,
                          mouth_gain=args.mouth_gain, **sources)
    seconds = time.perf_counter() - t0
    gen.write(args.out, result.frames, audio)
    gain = gen.resolve_mouth_gain(model, args.mouth_gain)
    return {"out": str(args.out), "frames": len(result.frames), "seconds": seconds,
            "frames_per_s": len(result.frames) / seconds, "audio": audio is not None, "mouth_gain": gain}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            info = run_generate(args)
            print(f"wrote {info['out']}: {info['frames']} frames at 25 fps"
                  f"{' with audio' if info['audio'] else ' (no audio)'}, "
                  f"{info['frames_per_s']:.1f} frames/s")
    except (UsageError, MissingModel) as exc:
        print(f"edtalk: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
