"""FOMM-style cropping: real face, moving face, bad clips, exact landmark mapping."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import skimage.data

from edtalk.data import media
from edtalk.data.crop import (
    CropMapping, Tube, build_tubes, crop_clip, crop_frame, iou, smooth_boxes,
)
from edtalk.data.detect import Face, GroundTruthDetector, landmarks_of, make_detector
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.schema import BOXES, conform

SILENCE = np.zeros(16_000, np.float32)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    # A 256 px version keeps encoding and detection quick; her face is ~45 px wide.
    return cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)


def _tone(n_frames: int) -> np.ndarray:
    t = np.arange(n_frames * 640) / 16_000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_real_face_is_cropped_and_landmarks_land_on_it(tmp_path: Path, astronaut: np.ndarray) -> None:
    n = 8
    media.write_video(tmp_path / "still.mp4", np.repeat(astronaut[None], n, 0), audio=_tone(n))
    det = make_detector("dlib")
    result = crop_clip(tmp_path / "still.mp4", None, tmp_path / "out.mp4", tmp_path / "out.wav",
                       size=128, detector=det, clip_id="still")
    assert result.frames.shape == (n, 128, 128, 3) and result.face_share == 1.0
    # The written files: 25 fps video of the same length, 16 kHz wav of exactly n x 640.
    info = media.probe(tmp_path / "out.mp4")
    assert (info.width, info.height, info.has_audio) == (128, 128, True)
    audio, rate = media.read_wav(tmp_path / "out.wav")
    assert rate == 16_000 and len(audio) == n * 640
    conform(result.boxes, BOXES)  # the table matches the declared schema
    assert (result.boxes["detector"] == "dlib").all()

    lm = landmarks_of(det, result.frames[0])
    assert lm is not None, "the face must still be found in its crop"
    nose = lm[30]
    assert np.all(np.abs(nose - 64) < 128 * 0.15), f"nose tip {nose} far from the crop centre"
    assert lm[36:48, 1].mean() < nose[1] < lm[48:68, 1].mean()
    assert np.all((lm > -5) & (lm < 133))
    # The crop's landmarks, mapped back, land on the face's landmarks in the source.
    src = landmarks_of(det, astronaut)
    back = result.mapping.to_source(lm[None])[0]
    assert np.median(np.linalg.norm(back - src, axis=1)) < 3.0


def _moving(astronaut: np.ndarray, n: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The photo translated ``step`` px right per frame on a wider canvas; true x offsets."""
    canvas_w = 256 + step * n
    offsets = np.arange(n) * step
    frames = np.zeros((n, 256, canvas_w, 3), np.uint8)
    for i, x in enumerate(offsets):
        frames[i, :, x:x + 256] = astronaut
    return frames, offsets


def test_moving_face_is_followed_smoothly(tmp_path: Path, astronaut: np.ndarray) -> None:
    n, step = 20, 3
    frames, offsets = _moving(astronaut, n, step)
    media.write_video(tmp_path / "moving.mp4", frames, audio=_tone(n))
    result = crop_clip(tmp_path / "moving.mp4", None, tmp_path / "m.mp4", tmp_path / "m.wav",
                       size=64, detector=make_detector("dlib"), smooth_window=5)
    boxes = result.boxes[["x0", "y0", "x1", "y1"]].to_numpy()
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    # The box follows the face: its centre moves with the translation...
    rel = centre_x - offsets
    assert np.ptp(rel[3:-3]) <= 3, f"box centre relative to the face drifts: {rel}"
    assert centre_x[-1] - centre_x[0] > 0.8 * step * (n - 1)
    # ...smoothly (second differences stay small) and with a steady size and height.
    assert np.abs(np.diff(centre_x, 2)).max() <= 3
    assert np.ptp(boxes[:, 2] - boxes[:, 0]) <= 3 and np.ptp(boxes[:, 1]) <= 2
    # Every crop shows the face at about the same place.
    det = make_detector("dlib")
    noses = np.array([landmarks_of(det, f)[30] for f in result.frames[::4]])
    assert np.ptp(noses[:, 0]) < 6 and np.ptp(noses[:, 1]) < 6


def test_blank_video_is_no_face(tmp_path: Path) -> None:
    media.write_video(tmp_path / "blank.mp4", np.full((10, 96, 96, 3), 90, np.uint8), audio=SILENCE)
    with pytest.raises(ClipRejected) as err:
        crop_clip(tmp_path / "blank.mp4", None, tmp_path / "o.mp4", tmp_path / "o.wav", 64,
                  make_detector("dlib"))
    assert err.value.reason == Reason.NO_FACE
    assert not (tmp_path / "o.mp4").exists()


def test_two_faces_are_multiple_faces(tmp_path: Path, astronaut: np.ndarray) -> None:
    pair = np.concatenate([astronaut, astronaut], axis=1)
    media.write_video(tmp_path / "two.mp4", np.repeat(pair[None], 6, 0), audio=SILENCE)
    with pytest.raises(ClipRejected) as err:
        crop_clip(tmp_path / "two.mp4", None, tmp_path / "o.mp4", tmp_path / "o.wav", 64,
                  make_detector("dlib"))
    assert err.value.reason == Reason.MULTIPLE_FACES


def test_missing_audio_is_rejected_unless_allowed(tmp_path: Path, astronaut: np.ndarray) -> None:
    media.write_video(tmp_path / "mute.mp4", np.repeat(astronaut[None], 4, 0))
    lms = np.tile(np.array([[100.0, 90.0], [150.0, 150.0]]), (4, 34, 1))
    det = GroundTruthDetector(lms)
    with pytest.raises(ClipRejected) as err:
        crop_clip(tmp_path / "mute.mp4", None, tmp_path / "o.mp4", tmp_path / "o.wav", 64, det)
    assert err.value.reason == Reason.NO_AUDIO
    result = crop_clip(tmp_path / "mute.mp4", None, tmp_path / "o.mp4", tmp_path / "o.wav", 64,
                       det, require_audio=False)
    assert not result.has_audio and len(result.audio) == 4 * 640 and not result.audio.any()


def _dots_clip(tmp_path: Path, n: int = 12, size: int = 96) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Frames with one bright 3x3 dot at a known, moving pixel; matching ground truth."""
    rng = np.random.default_rng(1)
    centre = np.stack([40 + np.arange(n), 50 - 0.5 * np.arange(n)], axis=1)
    # A face-sized landmark cloud around the centre; landmark 30 sits exactly on the dot.
    template = rng.uniform(-18, 18, size=(68, 2))
    template[30] = 0
    lms = centre[:, None, :] + template[None]
    dot = np.round(lms[:, 30]).astype(int)
    lms[:, 30] = dot
    frames = np.zeros((n, size, size, 3), np.uint8)
    for i, (x, y) in enumerate(dot):
        frames[i, y - 1:y + 2, x - 1:x + 2] = 255
    video, wav = tmp_path / "dots.mp4", tmp_path / "dots.wav"
    media.write_video(video, frames, crf=0)
    media.write_wav(wav, _tone(n))
    return video, wav, lms, dot


def test_groundtruth_landmarks_map_exactly_into_the_crop(tmp_path: Path) -> None:
    video, wav, lms, dot = _dots_clip(tmp_path)
    det = GroundTruthDetector(lms)
    result = crop_clip(video, wav, tmp_path / "c.mp4", tmp_path / "c.wav", size=64, detector=det,
                       gt_landmarks=lms, smooth_window=3)
    m = result.mapping
    # Formula check: u = (x - x0 + 0.5) * size / side - 0.5 on every point of every frame.
    side = (m.boxes[:, 2] - m.boxes[:, 0])[:, None, None]
    expected = (lms - m.boxes[:, None, :2] + 0.5) * 64 / side - 0.5
    np.testing.assert_allclose(result.landmarks, expected, atol=1e-9)
    np.testing.assert_allclose(m.to_source(result.landmarks), lms, atol=1e-9)
    # Pixel check: the dot's brightness centroid in the crop is where landmark 30 maps.
    for frame, point in zip(result.frames, result.landmarks[:, 30]):
        gray = frame.astype(np.float64).mean(axis=2)
        ys, xs = np.mgrid[:64, :64]
        centroid = np.array([(gray * xs).sum(), (gray * ys).sum()]) / gray.sum()
        assert np.linalg.norm(centroid - point) < 0.35, (centroid, point)
    # The mapping survives the trip through the BOXES table and a JSON stamp.
    again = CropMapping.from_boxes(result.boxes, 64)
    np.testing.assert_allclose(again.source_to_crop(lms), result.landmarks)
    np.testing.assert_allclose(CropMapping.from_dict(m.to_dict()).source_to_crop(lms),
                               result.landmarks)


def test_resampling_to_25_fps_maps_source_frames(tmp_path: Path) -> None:
    video, wav, lms, _ = _dots_clip(tmp_path, n=20)
    frames, _ = media.read_frames(video)
    media.write_video(tmp_path / "fast.mp4", frames, fps=50)  # 20 frames at 50 fps = 0.4 s
    result = crop_clip(tmp_path / "fast.mp4", wav, tmp_path / "c.mp4", tmp_path / "c.wav", 64,
                       GroundTruthDetector(lms), gt_landmarks=lms)
    assert result.n_frames == 10
    np.testing.assert_array_equal(result.mapping.source_frames, np.arange(0, 20, 2))
    np.testing.assert_allclose(result.mapping.to_source(result.landmarks), lms[::2], atol=1e-9)


def test_crop_frame_pads_outside_the_frame() -> None:
    frame = np.full((50, 50, 3), 200, np.uint8)
    out = crop_frame(frame, np.array([-25, -25, 25, 25]), 50)
    assert out.shape == (50, 50, 3)
    assert (out[:25, :25] == 0).all() and (out[25:, 25:] == 200).all()
    assert (crop_frame(frame, np.array([100, 100, 120, 120]), 10) == 0).all()


def test_tubes_and_smoothing() -> None:
    a, b = np.array([0, 0, 10, 10.0]), np.array([50, 50, 60, 60.0])
    dets = [[Face(a, 2.0), Face(b, 1.0)], [Face(a + 1, 2.0)], [Face(a + 2, 2.0), Face(b + 1, 1.0)]]
    tubes = build_tubes(dets, 0.2)
    assert [t.steps for t in tubes] == [[0, 1, 2], [0, 2]]
    assert isinstance(tubes[0], Tube)
    assert iou(a, a) == pytest.approx(1.0) and iou(a, b) == 0.0
    rng = np.random.default_rng(0)
    truth = np.stack([np.linspace(0, 30, 60)] * 4, axis=1) + [0, 0, 40, 40]
    noisy = truth + rng.normal(0, 2, truth.shape)
    noisy[20] += 25  # one detector outlier
    smooth = smooth_boxes(noisy, 9)
    assert np.abs(smooth - truth)[5:-5].max() < 2.5
    assert np.abs(np.diff(smooth, 2, axis=0)).mean() < 0.2 * np.abs(np.diff(noisy, 2, axis=0)).mean()


def test_boxes_table_is_per_output_frame(tmp_path: Path) -> None:
    video, wav, lms, _ = _dots_clip(tmp_path, n=6)
    result = crop_clip(video, wav, tmp_path / "c.mp4", tmp_path / "c.wav", 32,
                       GroundTruthDetector(lms), clip_id="clip-7")
    df = result.boxes
    assert isinstance(df, pd.DataFrame) and list(df.columns) == BOXES.names
    assert (df["clip_id"] == "clip-7").all() and df["frame"].tolist() == list(range(6))
    assert np.allclose(df["x1"] - df["x0"], df["y1"] - df["y0"])  # square
