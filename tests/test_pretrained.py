"""Shipped pretrained files: the corpus record that guards them, and fine-tuning from them."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.train.corpus_record import WrongCorpus, check_corpus_record, train_corpus_record
from edtalk.train.experts import emotion_train, sync_train
from edtalk.train.experts.pretrained import FineTune, check_pretrained, finetune_config, split_section
from tests.test_evaluators import GAPS, _clip_from, _toy_av, _two_bar_clip
from tests.test_train_data import make_features

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    return make_features(tmp_path_factory.mktemp("features"))


def test_the_record_accepts_its_own_corpus(features):
    record = train_corpus_record(features)
    assert record["train_identities"] == ["id0", "id1", "id2"]          # id3 is the val split
    assert len(record["train_clips"]) == 6 and set(record["clip_colour"]) == set(record["train_clips"])
    check_corpus_record(record, features, "f.pt", "x.pretrained")          # no error


def test_the_record_refuses_leaks_other_clips_other_pictures_and_no_record(features, tmp_path):
    record = train_corpus_record(features)
    leaky = {**record, "train_identities": record["train_identities"] + ["id3"]}
    with pytest.raises(WrongCorpus, match=r"held out here \(\['id3'\]\).*set x.pretrained to null"):
        check_corpus_record(leaky, features, "f.pt", "x.pretrained")
    fewer = {**record, "train_clips": record["train_clips"][1:]}
    with pytest.raises(WrongCorpus, match="another corpus"):
        check_corpus_record(fewer, features, "f.pt", "x.pretrained")
    # same identities and clip names, other pictures: another seed of the toy renderer
    other = make_features(tmp_path / "other", seed=1)
    assert train_corpus_record(other)["train_clips"] == record["train_clips"]
    with pytest.raises(WrongCorpus, match="same clip names with other colours"):
        check_corpus_record(record, other, "f.pt", "x.pretrained")
    # a face-shape change alone (landmarks moved by 1 px) is caught too
    moved = copy.deepcopy(record)
    first = moved["train_clips"][0]
    moved["clip_landmarks"][first] = [v + 1.0 for v in moved["clip_landmarks"][first]]
    with pytest.raises(WrongCorpus, match="other face shapes"):
        check_corpus_record(moved, features, "f.pt", "x.pretrained")
    with pytest.raises(WrongCorpus, match="no corpus record"):
        check_corpus_record(None, features, "f.pt", "x.pretrained")


def test_an_evaluator_section_splits_into_trainer_keys_and_a_fine_tune_plan():
    keys, plan = split_section({"steps": 2000, "lr": 0.001, "pretrained": None, "finetune_steps": 100})
    assert keys == {"steps": 2000, "lr": 0.001} and plan is None
    keys, plan = split_section({"steps": 800, "lr": 0.002, "pretrained": "p.pt", "finetune_steps": 50,
                                "finetune_lr": 0.0005, "finetune_landmark_steps": 7})
    assert keys == {"steps": 800, "lr": 0.002}
    assert plan == FineTune("p.pt", 50, 0.0005, 7, 0.0005)
    emotion = finetune_config(emotion_train.EmotionTrainConfig(), plan)
    assert (emotion.steps, emotion.lr, emotion.landmark_steps, emotion.landmark_lr) == (50, 0.0005, 7, 0.0005)
    sync = finetune_config(sync_train.SyncTrainConfig(), plan)
    assert (sync.steps, sync.lr) == (50, 0.0005)


def test_a_pretrained_evaluator_file_must_exist_and_carry_its_record(features, tmp_path):
    from edtalk.experts import syncnet as sync

    with pytest.raises(FileNotFoundError, match="scripts/pretrain_evaluators.py"):
        check_pretrained(FineTune(str(tmp_path / "none.pt"), 1, 1e-3), features, "k")
    net = sync.SyncNet(sync.SyncConfig(0.125, 64, 8))
    sync.save_trained(net, tmp_path / "bare.pt")
    with pytest.raises(WrongCorpus, match="no `pretrained` record"):
        check_pretrained(FineTune(str(tmp_path / "bare.pt"), 1, 1e-3), features, "k")
    sync.save_trained(net, tmp_path / "ours.pt", {"recipe": "r", "corpus": train_corpus_record(features)})
    assert check_pretrained(FineTune(str(tmp_path / "ours.pt"), 1, 1e-3), features, "k") == {"recipe": "r"}
    assert sync.load(tmp_path / "ours.pt").config == net.config          # the record does not get in the way


def test_syncnet_fine_tuning_starts_from_the_given_net_and_zero_steps_only_verify():
    clips = [_clip_from(*_toy_av(s, 20), s) for s in range(2)]
    cfg = sync_train.SyncTrainConfig(embed_dim=8, steps=4, batch_size=3, negatives=2)
    base = sync_train.train(clips, cfg).net
    start = {k: v.clone() for k, v in base.state_dict().items()}
    same = sync_train.train(clips, dataclasses.replace(cfg, steps=0), init=copy.deepcopy(base))
    assert all(torch.equal(v, start[k]) for k, v in same.net.state_dict().items()) and same.losses == []
    tuned = sync_train.train(clips, dataclasses.replace(cfg, steps=3, lr=1e-4), init=copy.deepcopy(base))
    fresh = sync_train.train(clips, dataclasses.replace(cfg, steps=3, lr=1e-4))

    def drift(net: torch.nn.Module) -> float:          # weights only (BatchNorm statistics move freely)
        return max((p.detach() - start[k]).abs().max().item() for k, p in net.named_parameters())
    assert 0 < drift(tuned.net) < 0.01                        # moved a little, from the pretrained weights
    assert drift(fresh.net) > 10 * drift(tuned.net)           # a fresh net is nowhere near them


def test_emotion_fine_tuning_refuses_another_backbone_and_keeps_the_landmarker_close():
    clips = [_two_bar_clip(k, 10 * k + r, frames=6) for k in GAPS for r in range(2)]
    cfg = emotion_train.EmotionTrainConfig(width=4, hidden=16, landmark_steps=6, landmark_batch=8,
                                           head_frames=4, steps=5, clips_per_batch=3, frames_per_clip=3)
    base = emotion_train.train(clips, cfg).net
    with pytest.raises(ValueError, match="backbone 'landmarks'"):
        emotion_train.train(clips, dataclasses.replace(cfg, backbone="small"), init=copy.deepcopy(base))
    start = {k: v.clone() for k, v in base.landmarker.state_dict().items()}
    tuned = emotion_train.train(clips, dataclasses.replace(cfg, landmark_steps=0, steps=3), init=copy.deepcopy(base))
    assert all(torch.equal(v, start[k]) for k, v in tuned.net.landmarker.state_dict().items())
    assert len(tuned.losses) == 3


def test_identity_swap_moves_a_clips_shape_onto_another_identitys_build():
    from edtalk.experts import emotion_net as emo

    clips = [_two_bar_clip(k, 10 * k + r, frames=6) for k in GAPS for r in range(2)]
    for i, c in enumerate(clips):
        c.identity = f"id{i % 2}"
    net = emo.FrameAttentionNet(emo.EmotionConfig("landmarks", 16, 4, 0.0, 16))
    points = [torch.from_numpy(c.landmarks / 16) for c in clips]
    net.fit_shape_statistics(torch.cat(points))
    swap = emotion_train._IdentitySwap(net, clips, points)
    shape = net.shape_features(points[0])
    rng = np.random.default_rng(0)
    moved = [swap(shape, "id0", rng) for _ in range(20)]
    delta = swap.means["id1"] - swap.means["id0"]
    assert any(torch.allclose(m, shape) for m in moved)                # onto its own identity: unchanged
    assert any(torch.allclose(m, shape + delta, atol=1e-5) for m in moved)
    # within-clip differences (the frames' relative shapes) are kept
    assert all(torch.allclose(m - m[:1], shape - shape[:1], atol=1e-5) for m in moved)
