"""L_mot's substitutes for EMOCA (Eq. 9): the corpus landmark/emotion net and the evaluator's psi."""

from __future__ import annotations

import torch

from edtalk.train.data import FrameTable
from edtalk.train.motion_nets import landmark_error_px, motion_networks, train_face_net
from tests.test_train_data import make_features


def test_face_net_learns_the_corpus_landmarks_and_names_its_substitutes(tmp_path):
    torch.set_num_threads(1)
    table = FrameTable.load(make_features(tmp_path / "f"))
    rows = torch.arange(0, len(table), 3).numpy()
    untrained, _ = train_face_net(table, seed=0, steps=0)
    net, _ = train_face_net(table, seed=0, steps=60)
    assert landmark_error_px(net, table, rows) < 0.5 * landmark_error_px(untrained, table, rows)
    nets, names = motion_networks(net, str(tmp_path / "no-such-evaluator.pt"))
    assert names == ["landmarks:corpus-regressor", "emotion:corpus-head"]
    x = torch.zeros(2, 3, 16, 16, requires_grad=True)
    sum(n(x).sum() for n in nets).backward()
    assert x.grad.abs().sum() > 0                      # differentiable w.r.t. the image


def test_psi_is_the_emotion_evaluator_when_its_checkpoint_exists(tmp_path):
    from edtalk.experts import emotion_net

    torch.manual_seed(0)
    evaluator = emotion_net.FrameAttentionNet(emotion_net.EmotionConfig(width=4, image_size=32))
    emotion_net.save_trained(evaluator, tmp_path / "emotion.pt")
    table = FrameTable.load(make_features(tmp_path / "f"))
    face, _ = train_face_net(table, seed=0, steps=0)
    nets, names = motion_networks(face, str(tmp_path / "emotion.pt"))
    assert names[0] == "landmarks:corpus-regressor" and names[1].startswith("emotion:trained-here@")
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    feats = nets[1](x * 2 - 1)
    expected = evaluator.eval().frame_features(
        torch.nn.functional.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False))
    torch.testing.assert_close(feats, expected)
    feats.sum().backward()
    assert x.grad.abs().sum() > 0


def test_a_saved_face_net_is_reused_only_for_the_same_pixels(tmp_path, monkeypatch):
    from edtalk.train import motion_nets

    torch.set_num_threads(1)
    trained = []
    real = motion_nets.train_face_net
    monkeypatch.setattr(motion_nets, "train_face_net",
                        lambda table, seed, steps: trained.append(steps) or real(table, seed, steps))
    path = tmp_path / "face_net.pt"
    same = FrameTable.load(make_features(tmp_path / "a"))
    motion_nets.load_or_train_face_net(path, same, seed=0, steps=2)
    motion_nets.load_or_train_face_net(path, same, seed=0, steps=2)
    assert trained == [2]                                   # reused
    # another corpus with the same frame count (a renderer change): trained afresh
    other = FrameTable.load(make_features(tmp_path / "b", seed=1))
    assert len(other) == len(same)
    motion_nets.load_or_train_face_net(path, other, seed=0, steps=2)
    assert trained == [2, 2]
