"""The mouth gain: W^m's motion scaled at render time, its calibration, and where it is stored."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edtalk import generate as gen
from edtalk.model import save_checkpoint
from edtalk.train.mouth_gain import calibrate, gap_agreement, opening_spread, spread_ratio
from tests.test_generate import _frames, _model

torch.set_num_threads(1)


def test_scale_motion_keeps_the_mean_and_scales_the_motion() -> None:
    w = np.random.default_rng(0).normal(size=(30, 20)).astype(np.float32)
    out = gen.scale_motion(w, 1.8)
    np.testing.assert_allclose(out.mean(0), w.mean(0), atol=1e-5)
    np.testing.assert_allclose(out - out.mean(0), 1.8 * (w - w.mean(0)), atol=1e-5)
    np.testing.assert_array_equal(gen.scale_motion(w, 1.0), w)
    still = np.repeat(w[:1], 5, 0)                 # no motion: nothing to scale
    np.testing.assert_allclose(gen.scale_motion(still, 3.0), still, atol=1e-6)


# A stand-in renderer and landmarker: a clip's "mouth opening" is the mean pixel value of
# each frame, the landmarker puts the inner lips that far apart, and the renderer opens
# mouths `articulation` times as far as the driving clip (times the gain).
def _landmarker(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pts = np.zeros((len(frames), 68, 2))
    pts[:, 66, 1] = frames.reshape(len(frames), -1).mean(1)
    return pts, np.ones(len(frames), bool)


def _clip(seed: int, n: int = 40) -> np.ndarray:
    opening = 100 + 40 * np.sin(np.arange(n) / 3.0 + seed)
    return np.repeat(opening[:, None, None, None], 8, 1).repeat(8, 2).repeat(3, 3).astype(np.uint8)


def _renderer(articulation: float):
    def render(identity: np.ndarray, video: np.ndarray, gain: float) -> np.ndarray:
        o = video.astype(np.float64)
        return np.clip(np.round(o.mean() + articulation * gain * (o - o.mean())), 0, 255).astype(np.uint8)
    return render


def test_opening_spread_reads_the_inner_lip_gap() -> None:
    clip = _clip(0)
    assert opening_spread(clip, _landmarker) == pytest.approx(clip.reshape(len(clip), -1).mean(1).std())
    assert opening_spread(np.full((5, 8, 8, 3), 90, np.uint8), _landmarker) == 0.0


def test_calibration_finds_the_gain_that_restores_the_driving_amplitude() -> None:
    pairs = [(clip[0], clip) for clip in (_clip(0), _clip(1), _clip(2))]
    under = calibrate(pairs, _renderer(0.6), _landmarker)
    assert under.gain == pytest.approx(1 / 0.6, rel=0.03)           # opens 0.6 as far -> g = 1/0.6
    assert under.ratios[1.0] == pytest.approx(0.6, abs=0.02)
    assert under.ratios[under.gain] == pytest.approx(1.0, abs=0.03)
    assert under.to_dict()["clips"] == 3
    # a renderer that already over-articulates is left at the lower bound, one beyond reach at the upper
    assert calibrate(pairs, _renderer(1.3), _landmarker).gain == 1.0
    assert calibrate(pairs, _renderer(0.2), _landmarker).gain == 3.0
    with pytest.raises(ValueError, match="moving mouth"):
        spread_ratio([(pairs[0][0], np.full((5, 8, 8, 3), 90, np.uint8))], _renderer(1.0), _landmarker, 1.0)


def test_a_model_files_gain_drives_every_render_and_can_be_overridden(tmp_path) -> None:
    m = _model()
    ident, video = _frames(1, 1)[0], _frames(6, 2)
    plain = gen.generate(m, ident, mouth=video, pose=video)               # in memory: gain 1
    save_checkpoint(tmp_path / "g.pt", m, mouth_gain=2.0)
    loaded = gen.load_model(tmp_path / "g.pt")
    assert loaded.mouth_gain == 2.0
    out = gen.generate(loaded, ident, mouth=video, pose=video)
    np.testing.assert_allclose(out.weights["mouth"], gen.scale_motion(plain.weights["mouth"], 2.0), atol=1e-5)
    np.testing.assert_allclose(out.weights["pose"], plain.weights["pose"], atol=1e-6)   # only the mouth
    assert not np.array_equal(out.frames, plain.frames)
    # weight sources (EDTalk-A's W^m) get the same gain; mouth_gain= overrides the file's
    by_weights = gen.generate(loaded, ident, mouth=plain.weights["mouth"], pose=plain.weights["pose"])
    np.testing.assert_allclose(by_weights.weights["mouth"], out.weights["mouth"], atol=1e-5)
    again = gen.generate(loaded, ident, mouth=video, pose=video, mouth_gain=1.0)
    np.testing.assert_array_equal(again.frames, plain.frames)
    save_checkpoint(tmp_path / "none.pt", m)                               # no gain recorded: the paper's 1
    assert gen.load_model(tmp_path / "none.pt").mouth_gain == 1.0


def test_gap_agreement_tells_a_faithful_reader_from_one_that_misses_the_opening() -> None:
    rng = np.random.default_rng(0)
    true = rng.normal(30, 5, (50, 68, 2))
    true[:, 66, 1] = true[:, 62, 1] + rng.uniform(0, 6, 50)          # the inner lips part by 0-6 px
    faithful = gap_agreement(true + rng.normal(0, 0.05, true.shape), true)
    assert faithful["opening_r"] > 0.99 and faithful["opening_spread_ratio"] == pytest.approx(1.0, abs=0.05)
    flat = true.copy()
    flat[:, 66] = true[:, 62] + (true[:, 66] - true[:, 62]) * 0.25 + rng.normal(0, 0.5, (50, 2))
    missed = gap_agreement(flat, true)
    assert missed["opening_spread_ratio"] < 0.5 and missed["opening_r"] < faithful["opening_r"]
