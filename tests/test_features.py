"""Per-frame features of cropped clips and the memory-mapped pixel cache."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import skimage.data

from edtalk.data import features, media, pixel_cache
from edtalk.data.audio_features import mel_100hz, mfcc_syncnet
from edtalk.data.crop import crop_clip
from edtalk.data.detect import GroundTruthDetector, groundtruth_array, make_detector
from edtalk.data.pixel_cache import PixelCache
from edtalk.data.schema import FRAMES, GROUNDTRUTH, conform

LABELS = {"split": "train", "identity": "id00", "emotion": "happy", "intensity": 2}


def _frames(n: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_pixel_cache_round_trip_is_memory_mapped(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    clips = {"b": _frames(5, 16, 0), "a": _frames(3, 16, 1), "c": _frames(7, 16, 2)}
    for clip_id, frames in clips.items():
        pixel_cache.write_shard(shards, clip_id, frames)
    index = pixel_cache.assemble(shards, ["b", "a", "c"], tmp_path / "pixels.npy")
    assert index["start"].tolist() == [0, 5, 8] and index["count"].tolist() == [5, 3, 7]
    assert not list(tmp_path.glob(".*part*"))               # no temporary files left

    cache = PixelCache(tmp_path / "pixels.npy")
    assert len(cache) == 15 and cache.frame_shape == (16, 16, 3)
    assert isinstance(cache.array, np.memmap)                # mapped, not read into memory
    for clip_id, frames in clips.items():
        rows = cache.clip_rows(clip_id)
        np.testing.assert_array_equal(cache[rows], frames)
    rows = np.array([14, 0, 6, 6])                           # random access across clips
    expected = np.concatenate([clips["b"], clips["a"], clips["c"]])[rows]
    got = cache[rows]
    assert got.dtype == np.uint8 and not isinstance(got, np.memmap)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(cache[3], clips["b"][3])
    with pytest.raises(KeyError):
        cache.clip_rows("zzz")
    # DataLoader workers receive a pickled cache: only the path travels, not the pixels.
    blob = pickle.dumps(cache)
    assert len(blob) < 4096
    np.testing.assert_array_equal(pickle.loads(blob)[rows], expected)


def test_pixel_cache_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="uint8"):
        pixel_cache.write_shard(tmp_path, "x", np.zeros((2, 8, 8, 3), np.float32))
    pixel_cache.write_shard(tmp_path, "p", _frames(2, 8, 0))
    pixel_cache.write_shard(tmp_path, "q", _frames(2, 9, 0))
    with pytest.raises(ValueError, match="disagree"):
        pixel_cache.assemble(tmp_path, ["p", "q"], tmp_path / "pixels.npy")
    pixel_cache.assemble(tmp_path, [], tmp_path / "empty.npy", frame_shape=(8, 8, 3))
    assert len(PixelCache(tmp_path / "empty.npy")) == 0


def _synthetic_clip(tmp_path: Path, n: int = 10) -> tuple[Path, Path, pd.DataFrame]:
    """A 96 px 'source' clip with ground truth in the GROUNDTRUTH schema."""
    rng = np.random.default_rng(0)
    template = rng.uniform(-20, 20, (68, 2))
    centre = np.stack([48 + np.arange(n) * 0.5, 50 + np.zeros(n)], axis=1)
    lms = (centre[:, None] + template).astype(np.float32)
    frames = np.full((n, 96, 96, 3), 60, np.uint8)
    t = np.arange(n * 640) / 16_000
    audio = (0.2 * np.sin(2 * np.pi * 300 * t) * (t > 0.1)).astype(np.float32)
    media.write_video(tmp_path / "syn.mp4", frames)
    media.write_wav(tmp_path / "syn.wav", audio)
    gt = pd.DataFrame({
        "clip_id": "syn", "frame": np.arange(n, dtype=np.int32),
        "landmarks": list(lms.reshape(n, -1)), "yaw": 0.0, "pitch": 0.0, "roll": 0.0,
        "tx": 0.0, "ty": 0.0, "mouth_open": 0.0, "mouth_width": 0.0, "viseme": "sil",
        "emotion": "happy", "intensity": 2,
    })
    conform(gt, GROUNDTRUTH)
    return tmp_path / "syn.mp4", tmp_path / "syn.wav", gt


def test_groundtruth_features_and_assembly(tmp_path: Path) -> None:
    video, wav, gt = _synthetic_clip(tmp_path)
    lms = groundtruth_array(gt.iloc[::-1])  # row order does not matter
    np.testing.assert_allclose(lms, np.stack(gt["landmarks"].to_numpy()).reshape(-1, 68, 2))
    assert np.isnan(groundtruth_array(gt.iloc[1:])[0]).all()  # a missing row = no face
    crop = crop_clip(video, wav, tmp_path / "c.mp4", tmp_path / "c.wav", 64,
                     GroundTruthDetector(lms), gt_landmarks=lms, clip_id="syn")
    # What the features stage recomputes from boxes.parquet equals what crop computed.
    in_crop = features.groundtruth_crop_landmarks(gt, crop.boxes, 64)
    np.testing.assert_allclose(in_crop, crop.landmarks, atol=1e-4)

    shards = tmp_path / "shards"
    written = features.process_clip(shards, "syn", tmp_path / "c.mp4", tmp_path / "c.wav",
                                    LABELS, landmarks="groundtruth", crop_landmarks=in_crop)
    assert all(p.exists() for p in written)
    # A second clip (a copy) to check the global pixel index.
    features.process_clip(shards, "syn2", tmp_path / "c.mp4", tmp_path / "c.wav",
                          {**LABELS, "split": "test"}, landmarks="groundtruth",
                          crop_landmarks=in_crop)
    table = features.assemble(shards, ["syn", "syn2"], tmp_path / "frames.parquet",
                              tmp_path / "pixels.npy")
    stored = pq.read_table(tmp_path / "frames.parquet")
    assert stored.schema.equals(FRAMES)
    n = crop.n_frames
    assert len(table) == 2 * n and table["pixel_index"].tolist() == list(range(2 * n))
    row = table.iloc[n + 3]
    assert (row["clip_id"], row["frame"], row["split"], row["emotion"]) == ("syn2", 3, "test", "happy")
    assert table["landmarks_valid"].all()
    np.testing.assert_allclose(np.asarray(row["landmarks"]).reshape(68, 2), in_crop[3], atol=1e-4)

    audio = media.read_audio(tmp_path / "c.wav")
    np.testing.assert_allclose(np.asarray(row["mfcc"]).reshape(4, 13), mfcc_syncnet(audio)[12:16],
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(row["mel"]).reshape(4, 80), mel_100hz(audio)[12:16],
                               atol=1e-5)
    cache = PixelCache(tmp_path / "pixels.npy")
    decoded, _ = media.read_frames(tmp_path / "c.mp4")
    np.testing.assert_array_equal(cache[np.asarray(table["pixel_index"][n:])], decoded)
    np.testing.assert_array_equal(cache.clip_rows("syn2"), np.arange(n, 2 * n))


def test_dlib_landmarks_on_crop_frames(tmp_path: Path) -> None:
    photo = cv2.resize(skimage.data.astronaut(), (256, 256), interpolation=cv2.INTER_AREA)
    frames = np.repeat(photo[None], 4, 0)
    frames[2] = 80                                            # one frame without a face
    media.write_video(tmp_path / "v.mp4", frames)
    media.write_wav(tmp_path / "v.wav", np.zeros(4 * 640, np.float32))
    det = make_detector("dlib")
    # Crop with ground-truth boxes (the blank frame would be bridged anyway).
    src = det.detect(photo, with_landmarks=True)[0].landmarks
    crop = crop_clip(tmp_path / "v.mp4", tmp_path / "v.wav", tmp_path / "c.mp4",
                     tmp_path / "c.wav", 96, GroundTruthDetector(np.repeat(src[None], 4, 0)),
                     gt_landmarks=np.repeat(src[None], 4, 0))
    table, pixels = features.clip_features("v", tmp_path / "c.mp4", tmp_path / "c.wav", LABELS,
                                           landmarks="dlib", detector=features.crop_detector("dlib"))
    conform(table, FRAMES)
    assert table["landmarks_valid"].tolist() == [True, True, False, True]
    assert np.isnan(np.asarray(table["landmarks"][2])).all()
    found = np.asarray(table["landmarks"][0]).reshape(68, 2)
    # Detected in the crop = ground truth carried into the crop (a few px at 96 px).
    assert np.median(np.linalg.norm(found - crop.landmarks[0], axis=1)) < 3.0
    # Small crops are enlarged for the predictor, so points are not whole crop pixels.
    assert np.mean(found != np.round(found)) > 0.5
    assert pixels.shape == (4, 96, 96, 3)


def test_backends_need_their_inputs(tmp_path: Path) -> None:
    video, wav, _ = _synthetic_clip(tmp_path, n=3)
    with pytest.raises(ValueError, match="crop_landmarks"):
        features.clip_features("x", video, wav, LABELS, landmarks="groundtruth")
    with pytest.raises(ValueError, match="detector"):
        features.clip_features("x", video, wav, LABELS, landmarks="dlib")
    with pytest.raises(ValueError, match="groundtruth_crop_landmarks"):
        features.crop_detector("groundtruth")
