"""The EDTalk-A sync check's bookkeeping: which audio drives the video, which audio scores it,
and how offsets are compared (sign convention of metrics.sync: a lagging video = +k)."""

from __future__ import annotations

import numpy as np
import pytest

from edtalk.data.schema import SAMPLES_PER_FRAME
from edtalk.evaluation import sync_check


class _Generated:
    def __init__(self, frames: np.ndarray) -> None:
        self.frames = frames


def _onset_frame(audio: np.ndarray) -> int:
    return int(np.flatnonzero(np.abs(audio) > 0.05)[0] // SAMPLES_PER_FRAME)


def test_offsets_follow_the_delay_of_the_driving_speech(monkeypatch: pytest.MonkeyPatch) -> None:
    # A fake EDTalk-A whose "video" remembers the onset of the speech that drove it, and a fake
    # SyncNet that reports (video onset - reference onset), i.e. how far the video lags.
    monkeypatch.setattr(sync_check.gen, "audio_sources",
                        lambda driver, audio, n, **kw: {"mouth": audio, "pose": None, "exp": None})
    monkeypatch.setattr(sync_check.gen, "model_factors", lambda model: ("mouth", "pose", "exp"))
    monkeypatch.setattr(sync_check.gen, "generate",
                        lambda model, identity, n_frames, batch_size, mouth, pose, exp:
                        _Generated(np.full((n_frames, 4, 4, 3), _onset_frame(mouth), np.uint8)))
    seen = []

    def fake_score(frames, audio, rate, net):
        seen.append(len(audio))
        return type("S", (), {"offset": int(frames[0, 0, 0, 0]) - _onset_frame(audio),
                              "lse_c": 1.0, "lse_d": 2.0})()

    monkeypatch.setattr(sync_check.sync, "score", fake_score)
    audio = np.zeros(40 * SAMPLES_PER_FRAME, np.float32)
    audio[10 * SAMPLES_PER_FRAME:] = 0.5                    # speech starts at frame 10
    items = [sync_check.SyncItem("a", np.zeros((4, 4, 3), np.uint8), audio)]
    out = sync_check.audio_shift_offsets(None, None, items, net=None, shifts=(0, -3, 3))
    assert out["mean_offset_per_shift"] == {"0": 0.0, "-3": -3.0, "3": 3.0}
    assert out["aligned_within_tolerance"] == 1.0 and out["shift_followed"] == 1.0
    assert seen == [40 * SAMPLES_PER_FRAME] * 3             # always scored against the original speech


def test_a_video_that_ignores_its_audio_does_not_follow_shifts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sync_check.gen, "audio_sources", lambda driver, audio, n, **kw: {"mouth": audio})
    monkeypatch.setattr(sync_check.gen, "model_factors", lambda model: ("mouth", "pose"))
    monkeypatch.setattr(sync_check.gen, "generate",
                        lambda model, identity, n_frames, batch_size, **sources:
                        _Generated(np.zeros((n_frames, 4, 4, 3), np.uint8)))
    monkeypatch.setattr(sync_check.sync, "score",
                        lambda frames, audio, rate, net: type("S", (), {"offset": 0, "lse_c": 0.1,
                                                                        "lse_d": 9.0})())
    audio = np.full(20 * SAMPLES_PER_FRAME, 0.5, np.float32)
    out = sync_check.audio_shift_offsets(None, None, [sync_check.SyncItem("a", None, audio)], None,
                                         shifts=(0, -3, 3))
    assert out["aligned_within_tolerance"] == 1.0 and out["shift_followed"] == 0.0
    with pytest.raises(ValueError, match="include 0"):
        sync_check.audio_shift_offsets(None, None, [], None, shifts=(2,))
