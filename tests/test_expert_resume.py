"""The expert trainers through the one resumable loop: a resumed run equals an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.train.experts import emotion_train, landmark_train, sync_train
from edtalk.train.experts.loop import Resume, run_fingerprint
from edtalk.train.resumable import checkpoints
from tests.test_evaluators import GAPS, _clip_from, _toy_av, _two_bar_clip
from tests.kill9 import run_and_kill

ROOT = Path(__file__).resolve().parent.parent
EMOTION = emotion_train.EmotionTrainConfig(width=4, hidden=16, landmark_steps=6, landmark_batch=8,
                                           head_frames=4, steps=5, clips_per_batch=3, frames_per_clip=3)


pytestmark = pytest.mark.usefixtures("one_thread")


def _face_clips() -> list:
    return [_two_bar_clip(k, 10 * k + r, frames=6) for k in GAPS for r in range(2)]


def _train(name: str, resume: Resume | None):
    if name == "syncnet":
        clips = [_clip_from(*_toy_av(s, 20), s) for s in range(2)]
        cfg = sync_train.SyncTrainConfig(embed_dim=8, steps=6, batch_size=3, negatives=2)
        return sync_train.train(clips, cfg, resume)
    if name == "landmarks":
        return landmark_train.train(_face_clips(), landmark_train.LandmarkTrainConfig(width=4, steps=6,
                                                                                      batch_size=8), resume)
    if name == "emotion_small":
        cfg = emotion_train.EmotionTrainConfig(backbone="small", width=4, steps=6, clips_per_batch=3,
                                               frames_per_clip=3)
        return emotion_train.train(_face_clips(), cfg, resume)
    return emotion_train.train(_face_clips(), EMOTION, resume)


def _same(a, b) -> None:
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.losses == b.losses
    assert getattr(a, "landmark_losses", None) == getattr(b, "landmark_losses", None)


@pytest.mark.parametrize("name, stops", [("syncnet", [3]), ("landmarks", [3, 1]), ("emotion_small", [5]),
                                         ("emotion", [3]),          # inside phase 1
                                         ("emotion", [8])])         # inside phase 2
def test_resumed_expert_training_equals_an_uninterrupted_run(tmp_path, name, stops):
    whole = _train(name, None)
    for k in stops:                  # checkpoints every 2 steps: the odd step of each call is lost
        _train(name, Resume(tmp_path, "key", checkpoint_every=2, stop_after=k))
    resumed = _train(name, Resume(tmp_path, "key", checkpoint_every=2))
    _same(whole, resumed)
    assert not resumed.net.training


def test_checkpoints_of_another_fingerprint_are_discarded(tmp_path):
    _train("landmarks", Resume(tmp_path, "old", checkpoint_every=2, stop_after=4))
    assert [s for s, _ in checkpoints(tmp_path)] == [2, 4]
    _same(_train("landmarks", None), _train("landmarks", Resume(tmp_path, "new", checkpoint_every=2)))


def test_the_fingerprint_follows_config_steps_and_corpus_files(tmp_path):
    for name, data in (("frames.parquet", b"a"), ("pixels.npy", b"b")):
        (tmp_path / name).write_bytes(data)
    cfg = landmark_train.LandmarkTrainConfig()
    key = run_fingerprint(cfg, tmp_path)
    assert key == run_fingerprint(landmark_train.LandmarkTrainConfig(), tmp_path)
    assert key != run_fingerprint(landmark_train.LandmarkTrainConfig(steps=cfg.steps + 1), tmp_path)
    assert key != run_fingerprint(landmark_train.LandmarkTrainConfig(lr=cfg.lr * 2), tmp_path)
    (tmp_path / "pixels.npy").write_bytes(b"c")
    assert key != run_fingerprint(cfg, tmp_path)


# --- slow: a real kill -9 ------------------------------------------------------------------

KILL_CONFIG = dict(width=4, hidden=16, landmark_steps=10, landmark_batch=8, head_frames=4, steps=400,
                   clips_per_batch=3, frames_per_clip=3)
KILL_SCRIPT = """
import sys, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
from edtalk.train.experts import emotion_train
from edtalk.train.experts.loop import Resume
from tests.test_expert_resume import KILL_CONFIG, _face_clips
emotion_train.train(_face_clips(), emotion_train.EmotionTrainConfig(**KILL_CONFIG),
                    Resume({ckpt!r}, "key", checkpoint_every=1))
"""


@pytest.mark.slow
def test_kill_9_then_rerun_of_the_emotion_trainer_ends_with_the_uninterrupted_weights(tmp_path):
    ckpt = tmp_path / "killed"
    script = KILL_SCRIPT.format(root=str(ROOT), ckpt=str(ckpt))
    newest = run_and_kill(script, ckpt / "classifier", 5, cwd=ROOT)   # inside the classifier phase
    assert 5 <= newest < KILL_CONFIG["steps"], "killed too early or finished before the kill"
    cfg = emotion_train.EmotionTrainConfig(**KILL_CONFIG)
    resumed = emotion_train.train(_face_clips(), cfg, Resume(ckpt, "key", checkpoint_every=1))
    whole = emotion_train.train(_face_clips(), cfg)
    _same(whole, resumed)
    assert len(resumed.losses) == KILL_CONFIG["steps"] and np.isfinite(resumed.losses).all()
