"""Evaluators trained here: SyncNet expert, emotion classifier, landmark regressor.

Each test builds its own toy clips whose answer is known (a brightness that follows the
audio energy, a bar whose row is the class, a blob whose position is the landmarks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edtalk.data.schema import EMOTIONS
from metrics import emotion as emo
from metrics import landmark_net, sync
from metrics.evaluators import emotion_train, landmark_train, sync_train
from metrics.evaluators.corpus import Clip

S = 64


def _toy_av(seed: int, frames: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Noise bursts whose loudness changes per frame, and frames whose brightness is the
    loudness: (RGB uint8 T x S x S x 3, int16 audio)."""
    rng = np.random.default_rng(seed)
    level = rng.choice([0.0, 0.15, 0.5, 1.0], size=frames)
    audio = np.concatenate([lv * rng.standard_normal(sync.SAMPLES_PER_FRAME) for lv in level])
    audio = np.round(np.clip(audio * 0.3, -1, 1) * 32767).astype(np.int16)
    video = np.repeat((40 + 200 * level).astype(np.uint8)[:, None, None, None], S, 1)
    return np.ascontiguousarray(np.repeat(np.repeat(video, S, 2), 3, 3)), audio


def _clip_from(frames: np.ndarray, audio: np.ndarray, k: int) -> Clip:
    mfcc = sync.mfcc_windows(audio).astype(np.float32)
    mfcc = np.pad(mfcc, ((0, 0), (0, 4 * len(frames) - mfcc.shape[1])))
    return Clip(f"c{k}", "train", "i", "neutral", frames, mfcc,
                np.zeros((len(frames), 68, 2), np.float32), np.ones(len(frames), bool))


class _EnergyNet(sync.SyncNet):
    """A constructed 'expert': per frame of the window, the loudness level seen in the
    frame brightness (lips) and in the log energy c0 of the frame's first MFCC step
    (audio; thresholds between the toy's four levels)."""

    def __init__(self) -> None:
        super().__init__(sync.SyncConfig(0.125, S, 8))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(1, 3, 4)) / 255.0

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        c0 = x[:, 0, 0, 0::4].contiguous()
        levels = torch.tensor([40.0, 70.0, 140.0, 240.0]) / 255.0
        return levels[torch.bucketize(c0, torch.tensor([19.5, 21.7, 23.7]))]


def test_offset_accuracy_recovers_known_delays_with_a_constructed_network():
    items = [_toy_av(s, 50) for s in (1, 2)]
    res = sync_train.offset_accuracy(_EnergyNet().eval(), items, shifts=(0, -2, 2, -5, 5))
    assert res["offset_accuracy"] == 1.0, [(t["shift"], t["offset"]) for t in res["trials"]]
    assert {t["offset"] for t in res["trials"] if t["shift"] == 5} == {-5}


def test_shift_audio_delays_by_whole_frames_and_keeps_length():
    a = np.arange(1, 3 * 640 + 1).astype(np.int16)
    assert np.array_equal(sync_train.shift_audio(a, 1)[640:], a[:-640])
    assert np.array_equal(sync_train.shift_audio(a, -1)[:-640], a[640:])
    assert len(sync_train.shift_audio(a, 2)) == len(a)


def test_sync_batches_pair_each_lip_window_with_its_aligned_and_shifted_audio():
    clip = _clip_from(*_toy_av(3, 40), 0)
    lip, aud, y = sync_train.sample_batch([clip], 6, 3, 15, np.random.default_rng(0))
    assert lip.shape == (6, 3, 5, S, S) and aud.shape == (24, 1, 13, 20)
    assert y.reshape(6, 4)[:, 0].eq(1).all() and y.reshape(6, 4)[:, 1:].eq(0).all()


def test_sync_training_reduces_the_expert_loss_and_is_seeded():
    clips = [_clip_from(*_toy_av(s, 40), s) for s in range(3)]
    cfg = sync_train.SyncTrainConfig(width=0.125, embed_dim=16, steps=30, batch_size=8,
                                     negatives=2, lr=3e-3, seed=1)
    torch.set_num_threads(1)
    a = sync_train.train(clips, cfg)
    assert np.mean(a.losses[-5:]) < np.mean(a.losses[:5])
    b = sync_train.train(clips, cfg)
    assert a.losses == b.losses
    assert not a.net.training and a.net.trained_here


@pytest.mark.slow
def test_trained_syncnet_recovers_delays_on_held_out_clips(tmp_path):
    torch.set_num_threads(1)
    clips = [_clip_from(*_toy_av(s, 60), s) for s in range(6)]
    cfg = sync_train.SyncTrainConfig(width=0.125, embed_dim=32, steps=200, batch_size=16,
                                     negatives=4, lr=3e-3, seed=0)
    result = sync_train.train(clips, cfg)
    sync.save_trained(result.net, tmp_path / "syncnet.pt")
    net = sync.load(tmp_path / "syncnet.pt")
    assert net.backend.startswith("syncnet:trained-here:w0.125-s64-d32@")
    res = sync_train.offset_accuracy(net, [_toy_av(s, 60) for s in (100, 101)])
    assert res["offset_accuracy"] == 1.0, res["per_shift"]


def _bar_clip(label: int, seed: int, frames: int = 6) -> Clip:
    """Class k = a bright horizontal bar at rows 7k..7k+3 on noise (flip/shift-proof)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 60, size=(frames, S, S, 3)).astype(np.uint8)
    x[:, 4 + 7 * label:8 + 7 * label, 8:56] = 230
    return Clip(f"e{seed}", "train", "i", EMOTIONS[label], x, np.zeros((13, 4 * frames), np.float32),
                np.zeros((frames, 68, 2), np.float32), np.ones(frames, bool))


def test_emotion_classifier_separates_a_trivially_separable_set():
    torch.set_num_threads(1)
    train = [_bar_clip(k, 10 * k + r) for k in range(8) for r in range(2)]
    test = [_bar_clip(k, 1000 + k) for k in range(8)]
    cfg = emotion_train.EmotionTrainConfig(width=8, steps=60, clips_per_batch=8, frames_per_clip=4,
                                           lr=5e-3, seed=0)
    result = emotion_train.train(train, cfg)
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    acc = emotion_train.evaluate(result.net, test)
    assert acc["accuracy"] >= 0.5 > acc["chance"]


def test_emotion_save_and_load_round_trip_with_a_trained_here_label(tmp_path):
    net = emo.FrameAttentionNet(emo.EmotionConfig("small", S, 4)).eval()
    emo.save_trained(net, tmp_path / "emotion.pt")
    loaded, label = emo.load(tmp_path / "emotion.pt")
    assert label.startswith("emotion:trained-here@")
    x = emo.to_input(_bar_clip(2, 0).frames, S)
    assert torch.allclose(net(x), loaded(x))


def _blob_clip(seed: int, frames: int = 24) -> Clip:
    """A bright square at a random place; the 68 'landmarks' are a fixed pattern moved with it."""
    rng = np.random.default_rng(seed)
    pattern = np.random.default_rng(0).uniform(-6, 6, size=(68, 2)).astype(np.float32)
    x = np.zeros((frames, S, S, 3), np.uint8)
    lm = np.zeros((frames, 68, 2), np.float32)
    for t in range(frames):
        cx, cy = (int(v) for v in rng.integers(14, 50, size=2))
        x[t, cy - 6:cy + 6, cx - 6:cx + 6] = 255
        lm[t] = pattern + (cx, cy)
    return Clip(f"l{seed}", "train", "i", "neutral", x, np.zeros((13, 4 * frames), np.float32),
                lm, np.ones(frames, bool))


def test_landmark_regressor_error_decreases_with_training(tmp_path):
    torch.set_num_threads(1)
    train, test = [_blob_clip(s) for s in range(4)], [_blob_clip(99)]
    untrained = landmark_train.train(train, landmark_train.LandmarkTrainConfig(width=8, steps=1))
    trained = landmark_train.train(train, landmark_train.LandmarkTrainConfig(width=8, steps=120,
                                                                              lr=5e-3))
    before = landmark_train.mean_error_px(landmark_net.NetLandmarker(untrained.net), test)
    after = landmark_train.mean_error_px(landmark_net.NetLandmarker(trained.net), test)
    assert after["mean_error_px"] < 0.5 * before["mean_error_px"]
    landmark_net.save(trained.net, tmp_path / "lm.pt")
    marker = landmark_net.load(tmp_path / "lm.pt")
    assert marker.label.startswith("landmarks:trained-here@")
    pts, ok = marker(test[0].frames)
    assert pts.shape == (24, 68, 2) and ok.all()
    big, _ = marker(np.repeat(np.repeat(test[0].frames, 2, 1), 2, 2))   # 128 px: scaled to the frame
    assert np.allclose(big, 2 * pts, atol=1.0)


def test_saved_evaluators_hash_by_content_not_by_file_name(tmp_path):
    """Labels carry the file's sha256, so equal weights must give equal bytes."""
    lm = landmark_net.LandmarkNet(landmark_net.LandmarkConfig(32, 4))
    sn = sync.SyncNet(sync.SyncConfig(0.125, S, 8))
    en = emo.FrameAttentionNet(emo.EmotionConfig("small", S, 4))
    for save, net in ((landmark_net.save, lm), (sync.save_trained, sn), (emo.save_trained, en)):
        save(net, tmp_path / "a.pt")
        save(net, tmp_path / "other-name.pt")
        assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other-name.pt").read_bytes()
