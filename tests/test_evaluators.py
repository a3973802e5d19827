"""Evaluators trained here: SyncNet expert, emotion classifier, landmark regressor.

Each test builds its own toy clips whose answer is known (a brightness that follows the
audio energy, a bar whose row is the class, a blob whose position is the landmarks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edtalk.data.schema import EMOTIONS, SAMPLES_PER_FRAME
from edtalk.evaluation.experts import emotion_accuracy, offset_accuracy, shift_audio
from edtalk.experts import emotion_net as emo
from edtalk.experts import landmark_net
from edtalk.experts import syncnet as sync
from edtalk.train.experts import emotion_train, landmark_train, sync_train
from edtalk.train.experts.corpus import Clip

S = 64


def _toy_av(seed: int, frames: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Noise bursts whose loudness changes per frame, and frames whose brightness is the
    loudness: (RGB uint8 T x S x S x 3, int16 audio)."""
    rng = np.random.default_rng(seed)
    level = rng.choice([0.0, 0.15, 0.5, 1.0], size=frames)
    audio = np.concatenate([lv * rng.standard_normal(SAMPLES_PER_FRAME) for lv in level])
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
    res = offset_accuracy(_EnergyNet().eval(), items, shifts=(0, -2, 2, -5, 5))
    assert res["offset_accuracy"] == 1.0, [(t["shift"], t["offset"]) for t in res["trials"]]
    assert res["aligned_within_1"] == 1.0
    assert res["separated"] == {"-2": 1.0, "2": 1.0, "-5": 1.0, "5": 1.0}
    assert {t["offset"] for t in res["trials"] if t["shift"] == 5} == {-5}


def test_shift_audio_delays_by_whole_frames_and_keeps_length():
    a = np.arange(1, 3 * 640 + 1).astype(np.int16)
    assert np.array_equal(shift_audio(a, 1)[640:], a[:-640])
    assert np.array_equal(shift_audio(a, -1)[:-640], a[640:])
    assert len(shift_audio(a, 2)) == len(a)


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
    res = offset_accuracy(net, [_toy_av(s, 60) for s in (100, 101)])
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
    cfg = emotion_train.EmotionTrainConfig(backbone="small", width=8, steps=60, clips_per_batch=8,
                                           frames_per_clip=4, lr=5e-3, seed=0)
    result = emotion_train.train(train, cfg)
    assert np.mean(result.losses[-5:]) < np.mean(result.losses[:5])
    acc = emotion_accuracy(result.net, test)
    assert acc["accuracy"] >= 0.5 > acc["chance"]


G = 32   # the geometry toy's frame size
GAPS = {0: 5, 3: 9, 7: 13}   # class -> rows between the toy face's "brow" and "mouth" bars


def _two_bar_clip(label: int, seed: int, frames: int = 8) -> Clip:
    """A toy face whose class is its shape: two 16 px bars ("brow" above "mouth") whose
    vertical gap is the class, the pair at a random place in every frame, in colours drawn
    per clip (an 'identity' that says nothing about the class). Points 0..33 lie on the
    upper bar, 34..67 on the lower one."""
    rng = np.random.default_rng(seed)
    gap = GAPS[label]
    colour = rng.integers(120, 256, size=3)
    x = rng.integers(0, 50, size=(frames, G, G, 3)).astype(np.uint8)
    lm = np.zeros((frames, 68, 2), np.float32)
    xs = np.linspace(0.5, 15.5, 34, dtype=np.float32)
    for t in range(frames):
        left, top = (int(v) for v in rng.integers(3, 13, size=2))
        for row, sl in ((top, slice(0, 34)), (top + gap, slice(34, 68))):
            x[t, row:row + 2, left:left + 16] = colour
            lm[t, sl] = np.stack([left + xs, np.full(34, row + 1.0, np.float32)], 1)
    return Clip(f"g{label}_{seed}", "train", f"id{seed}", EMOTIONS[label], x,
                np.zeros((13, 4 * frames), np.float32), lm, np.ones(frames, bool))


def test_landmark_emotion_classifier_reads_the_shape_of_unseen_identities():
    torch.set_num_threads(1)
    train = [_two_bar_clip(k, 10 * k + r) for k in GAPS for r in range(4)]
    test = [_two_bar_clip(k, 1000 + 10 * k + r) for k in GAPS for r in range(2)]
    cfg = emotion_train.EmotionTrainConfig(width=4, hidden=16, dropout=0.0, landmark_steps=150,
                                           landmark_batch=16, landmark_lr=1e-2, head_frames=8,
                                           steps=80, clips_per_batch=6, frames_per_clip=4,
                                           lr=1e-2, seed=0)
    result = emotion_train.train(train, cfg)
    assert result.net.config.backbone == "landmarks" and not result.net.training
    assert np.mean(result.landmark_losses[-10:]) < 0.5 * np.mean(result.landmark_losses[:10])
    assert emotion_train.landmark_error_px(result.net, test) < 2.0
    acc = emotion_accuracy(result.net, test)
    assert acc["accuracy"] == 1.0, acc["predictions"]


def test_landmark_backbone_is_differentiable_and_takes_any_frame_size():
    torch.manual_seed(0)
    net = emo.FrameAttentionNet(emo.EmotionConfig("landmarks", G, 4, 0.0, 16)).eval()
    x = torch.rand(3, 3, G, G, requires_grad=True)
    feats = net.frame_features(x)                        # psi of L_mot and the FD features
    assert feats.shape == (3, 16)
    (feats.sum() + net(x).sum()).backward()
    assert x.grad.abs().sum() > 0
    pts = net.landmarks(x)
    assert pts.shape == (3, 68, 2) and ((pts >= 0) & (pts <= 1)).all()
    frames = np.random.default_rng(0).integers(0, 256, size=(5, 48, 48, 3)).astype(np.uint8)
    assert 0 <= emo.predict_video(frames, net) < len(EMOTIONS)


def test_procrustes_alignment_removes_position_rotation_and_scale():
    ref = torch.randn(68, 2)
    ref = ref - ref.mean(0)
    angle = torch.tensor(0.3)
    rot = torch.stack([torch.stack([angle.cos(), -angle.sin()]), torch.stack([angle.sin(), angle.cos()])])
    moved = torch.stack([ref @ rot.T * 2.5 + torch.tensor([4.0, -1.0]), ref])
    torch.testing.assert_close(emo.procrustes_align(moved, ref), torch.stack([ref, ref]),
                               atol=1e-5, rtol=1e-5)
    net = emo.FrameAttentionNet(emo.EmotionConfig("landmarks", G, 4, 0.0, 16))
    shapes = ref + 0.05 * torch.randn(20, 68, 2)
    net.fit_shape_statistics(shapes @ rot.T * 3 + 1)       # posed copies: same statistics
    feats = net.shape_features(shapes)
    torch.testing.assert_close(feats.mean(0), torch.zeros(136), atol=1e-4, rtol=0)
    torch.testing.assert_close(feats.std(0), torch.ones(136), atol=1e-3, rtol=0)


@pytest.mark.parametrize("backbone", ["small", "landmarks"])
def test_emotion_save_and_load_round_trip_with_a_trained_here_label(tmp_path, backbone):
    net = emo.FrameAttentionNet(emo.EmotionConfig(backbone, S, 4, hidden=16)).eval()
    if backbone == "landmarks":   # fitted statistics are buffers: they must travel too
        net.fit_shape_statistics(torch.rand(10, 68, 2))
    emo.save_trained(net, tmp_path / "emotion.pt")
    loaded, label = emo.load(tmp_path / "emotion.pt")
    assert label.startswith("emotion:trained-here@") and loaded.config == net.config
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
    eg = emo.FrameAttentionNet(emo.EmotionConfig("landmarks", S, 4))
    for save, net in ((landmark_net.save, lm), (sync.save_trained, sn), (emo.save_trained, en),
                      (emo.save_trained, eg)):
        save(net, tmp_path / "a.pt")
        save(net, tmp_path / "other-name.pt")
        assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other-name.pt").read_bytes()


def test_heatmap_landmarker_gives_pixel_points_of_the_heatmap_head():
    net = emo.FrameAttentionNet(emo.EmotionConfig("landmarks", 32, 4, 0.0, 16)).eval()
    frames = np.random.default_rng(0).integers(0, 256, (3, 48, 40, 3), dtype=np.uint8)
    pts, valid = emo.heatmap_landmarker(net, "emotion:test")(frames)
    with torch.no_grad():
        frac = net.landmarker(emo.to_input(frames, 32)).double().numpy()
    assert pts.shape == (3, 68, 2) and valid.all()
    assert np.allclose(pts, frac * np.array([40, 48]))      # (x, y) scaled by (W, H)
    with pytest.raises(ValueError, match="no landmark heatmaps"):
        emo.heatmap_landmarker(emo.FrameAttentionNet(emo.EmotionConfig("small", 32, 4)), "emotion:small")


def _mouth_av(seed: int, frames: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """A dark 'mouth' bar on a textured face whose opening follows the audio loudness,
    drawn with sharp edges (the detail a blur or an H.264 pass softens)."""
    rng = np.random.default_rng(seed)
    level = rng.choice([0.0, 0.15, 0.5, 1.0], size=frames)
    audio = np.concatenate([lv * rng.standard_normal(SAMPLES_PER_FRAME) for lv in level])
    audio = np.round(np.clip(audio * 0.3, -1, 1) * 32767).astype(np.int16)
    face = np.clip(150 + 25 * rng.standard_normal((S, S, 3)), 0, 255).astype(np.uint8)
    video = np.repeat(face[None], frames, 0)
    for t, lv in enumerate(level):
        half = 1 + int(round(7 * lv))
        video[t, 40 - half:40 + half, 18:46] = (60, 20, 30)
    return video, audio


@pytest.mark.slow
def test_augmented_syncnet_keeps_its_confidence_under_blur_and_reencoding():
    """Trained with blur/JPEG augmentation, the expert's ground-truth confidence drops by
    less than a third after a 1-px blur or one more H.264 pass, and in-sync audio stays
    closer than audio moved by 5 frames on every held-out clip."""
    from edtalk.evaluation.sync_sensitivity import DEFECTS, reencode
    from metrics import sync as sync_metric

    torch.set_num_threads(1)
    clips = [_clip_from(*_mouth_av(s), s) for s in range(6)]
    cfg = sync_train.SyncTrainConfig(width=0.125, embed_dim=32, steps=200, batch_size=16, negatives=4,
                                     lr=3e-3, blur_sigma=1.5, jpeg_quality=30, seed=0)
    net = sync_train.train(clips, cfg).net.eval()
    blur = DEFECTS["ground truth, blurred (Gaussian, sigma 1 px)"]
    for seed in (100, 101, 102):
        video, audio = _mouth_av(seed)
        clean = sync_metric.score(video, audio, 16000, net)
        for degraded in (blur(video), reencode(video, crf=28)):
            s = sync_metric.score(degraded, audio, 16000, net)
            assert s.lse_c > clean.lse_c * 2 / 3, (s.lse_c, clean.lse_c)
            assert abs(s.offset) <= 1
        shifted = sync_metric.score(video, shift_audio(audio, 5), 16000, net)
        mid = len(clean.mdist) // 2
        assert clean.mdist[mid] < shifted.mdist[mid]
