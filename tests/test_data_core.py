"""Atomic writes, resume stamps, identity splits and media round-trips."""

from __future__ import annotations

import numpy as np
import pytest

from edtalk.data import atomic, media
from edtalk.data.quarantine import ClipRejected, Reason
from edtalk.data.resume import StampDir, code_digest, fingerprint
from edtalk.data.splits import split_identities


def test_atomic_write_leaves_target_untouched_when_writer_fails(tmp_path):
    target = tmp_path / "table.bin"
    atomic.write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic.atomic_path(target) as tmp:
        tmp.write_bytes(b"half-writ")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["table.bin"]


def test_remove_partials_sweeps_only_temporaries(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"done")
    (tmp_path / f".a.mp4{atomic.PARTIAL_MARK}x1.mp4").write_bytes(b"half")
    assert atomic.remove_partials(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["a.mp4"]


def test_stamp_matches_only_same_fingerprint_and_existing_outputs(tmp_path):
    stamps = StampDir(tmp_path)
    out = tmp_path / "clip.mp4"
    out.write_bytes(b"x")
    key = fingerprint("crop", {"size": 64}, "sha")
    stamps.mark("clip", key, {"row": {"frames": 3}})
    assert stamps.is_done("clip", key, [out])
    assert stamps.load("clip") == {"row": {"frames": 3}}
    assert not stamps.is_done("clip", fingerprint("crop", {"size": 128}, "sha"), [out])
    out.unlink()
    assert not stamps.is_done("clip", key, [out])
    stamps.prune(keep=set())
    assert not stamps.is_done("clip", key)


def test_fingerprint_is_order_independent_for_dict_keys_and_code_sensitive(tmp_path):
    assert fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
    module = tmp_path / "pkg"
    module.mkdir()
    (module / "m.py").write_text("x = 1\n")
    before = code_digest(module)
    (module / "m.py").write_text("x = 2\n")
    assert code_digest(module) != before


def test_splits_are_by_identity_deterministic_and_keep_a_train_identity():
    ids = [f"id{i:02d}" for i in range(12)]
    split = split_identities(ids * 3, n_val=2, n_test=2, seed=0)
    assert sorted(split) == ids
    assert list(split.values()).count("test") == 2 and list(split.values()).count("val") == 2
    assert split == split_identities(reversed(ids), 2, 2, seed=0)
    assert split != split_identities(ids, 2, 2, seed=1)
    assert list(split_identities(["only"], 2, 2, seed=0).values()) == ["train"]


def test_video_with_audio_round_trips_with_aligned_audio(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.zeros((25, 32, 32, 3), np.uint8)
    frames[:, 8:24, 8:24] = rng.integers(0, 255, (25, 1, 1, 3), dtype=np.uint8)
    t = np.arange(16000) / 16000
    audio = (0.5 * np.sin(2 * np.pi * (200 + 400 * t) * t)).astype(np.float32)
    path = tmp_path / "clip.mp4"
    media.write_video(path, frames, audio=audio)
    info = media.probe(path)
    assert (info.fps, info.frames, info.width, info.has_audio) == (25.0, 25, 32, True)
    decoded, fps = media.read_frames(path)
    assert decoded.shape == frames.shape and fps == 25.0
    assert np.abs(decoded[:, 12:20, 12:20].astype(int) - frames[:, 12:20, 12:20]).mean() < 6
    back = media.read_audio(path)
    # AAC priming is recorded in the container, so decoded audio starts in sync.
    assert np.corrcoef(back[: len(audio)], audio)[0, 1] > 0.99


def test_the_same_frames_encode_to_the_same_bytes(tmp_path):
    """A rendered-like clip (a face-sized moving blob), encoded eight times in one process:
    byte-identical files. Without ``x264_options`` a CPU with AVX-512 gave 6 of 8 different."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:96, :96]
    frames = []
    for t in range(40):
        cx, cy = 48 + 10 * np.sin(t / 5), 48 + 6 * np.cos(t / 7)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 300.0)
        img = 60 + 150 * blob[..., None] * np.array([1.0, 0.8, 0.6]) + rng.normal(0, 3, (96, 96, 3))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    frames = np.stack(frames)
    blobs = set()
    for k in range(8):
        media.write_video(tmp_path / f"{k}.mp4", frames)
        blobs.add((tmp_path / f"{k}.mp4").read_bytes())
    assert len(blobs) == 1


def test_x264_leaves_out_avx512_only_where_the_cpu_has_it(tmp_path):
    (tmp_path / "avx512").write_text("flags\t: fpu sse2 avx2 avx512f avx512bw\n")
    (tmp_path / "avx2").write_text("flags\t: fpu sse2 avx2\n")
    media.x264_options.cache_clear()
    try:
        assert "AVX512" not in media.x264_options(str(tmp_path / "avx512"))["x264-params"]
        assert "AVX2" in media.x264_options(str(tmp_path / "avx512"))["x264-params"]
        assert media.x264_options(str(tmp_path / "avx2")) == {}
        assert media.x264_options(str(tmp_path / "missing")) == {}
    finally:
        media.x264_options.cache_clear()


def test_wav_round_trip_and_unreadable_file_is_rejected_as_corrupt(tmp_path):
    audio = np.linspace(-0.5, 0.5, 1600, dtype=np.float32)
    media.write_wav(tmp_path / "a.wav", audio)
    back, rate = media.read_wav(tmp_path / "a.wav")
    assert rate == 16000 and np.abs(back - audio).max() < 1e-4
    (tmp_path / "junk.mp4").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(ClipRejected) as info:
        media.probe(tmp_path / "junk.mp4")
    assert info.value.reason is Reason.CORRUPT


def test_frame_rate_conversion_covers_the_same_duration():
    idx = media.resample_frame_indices(60, 30.0, 25.0)
    assert len(idx) == 50 and idx[0] == 0 and idx[-1] <= 59
    assert np.all(np.diff(idx) >= 1)
    assert list(media.resample_frame_indices(10, 25.0, 25.0)) == list(range(10))
    with pytest.raises(ClipRejected):
        media.resample_frame_indices(10, 0.0)
