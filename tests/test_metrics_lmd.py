"""M-LMD / F-LMD: centring, masks and the linspace pairing, with hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

from metrics.landmarks import dataset_lmd, lmd


def face(t: int = 4, seed: int = 0) -> np.ndarray:
    base = np.random.default_rng(seed).uniform(0, 100, (68, 2))
    return np.repeat(base[None], t, axis=0)


def test_whole_face_translation_costs_nothing():
    gt = face()
    got = lmd(gt, gt + [3.0, -2.0])
    assert got["m_lmd"] == pytest.approx(0.0, abs=1e-12) and got["f_lmd"] == pytest.approx(0.0, abs=1e-12)


def test_mouth_only_shift():
    # Mouth moved by s (|s| = 5): the mouth, centred on itself, is unchanged (M-LMD 0).
    # The face mean moves by 20 s / 68, so mouth points move 48 s / 68 and the other 48
    # points -20 s / 68 relative to it: F-LMD = (20*48/68 + 48*20/68) * 5 / 68.
    gt = face()
    pred = gt.copy()
    pred[:, 48:68] += [3.0, 4.0]
    got = lmd(gt, pred)
    assert got["m_lmd"] == pytest.approx(0.0, abs=1e-12)
    assert got["f_lmd"] == pytest.approx(2 * 20 * 48 / 68 * 5 / 68, rel=1e-12)


def test_mouth_scaling_about_its_mean():
    gt = face()
    pred = gt.copy()
    c = gt[:, 48:68].mean(axis=1, keepdims=True)
    pred[:, 48:68] = c + 1.5 * (gt[:, 48:68] - c)
    spread = np.linalg.norm(gt[0, 48:68] - c[0], axis=-1)
    got = lmd(gt, pred)
    assert got["m_lmd"] == pytest.approx(0.5 * spread.mean(), rel=1e-12)
    assert got["f_lmd"] == pytest.approx(0.5 * spread.sum() / 68, rel=1e-12)


def test_masks_drop_frames_and_divide_by_valid_pairs():
    gt, pred = face(), face()
    pred[1] += np.random.default_rng(5).normal(size=(68, 2)) * 1e3   # garbage, but masked
    pred[2, 60] += [6.0, 8.0]                                        # one point off by 10
    gv = np.array([True, True, True, False])
    pv = np.array([True, False, True, True])
    got = lmd(gt, pred, gv, pv)                                      # valid pairs: 0, 2
    # frame 2: point 60 off by 10 -> centred mouth: 60 moves 10*19/20, 19 others 10/20
    assert got["m_lmd"] == pytest.approx((10 * 19 / 20 + 19 * 10 / 20) / (2 * 20), rel=1e-12)
    assert got["f_lmd"] == pytest.approx((10 * 67 / 68 + 67 * 10 / 68) / (2 * 68), rel=1e-12)
    assert np.isnan(lmd(gt, pred, np.zeros(4, bool))["m_lmd"])


def test_linspace_pairing_of_unequal_lengths():
    gt = face(6)
    gt[[1, 3, 5], 62] += [0.0, 50.0]     # frames the pairing skips
    pred = face(3)                       # pairs with gt frames 0, 2, 4
    assert lmd(gt, pred) == {"m_lmd": 0.0, "f_lmd": 0.0}
    pred2 = face(3)
    pred2[1, 62] += [0.0, 20.0]          # pred frame 1 <-> gt frame 2
    assert lmd(gt, pred2)["m_lmd"] == pytest.approx((20 * 19 / 20 + 19 * 1.0) / (3 * 20))


def test_dataset_mean_and_errors():
    assert dataset_lmd([{"m_lmd": 1.0, "f_lmd": 3.0}, {"m_lmd": 2.0, "f_lmd": 5.0}]) == \
        {"m_lmd": 1.5, "f_lmd": 4.0}
    with pytest.raises(ValueError):
        lmd(np.zeros((2, 20, 2)), np.zeros((2, 20, 2)))
    with pytest.raises(ValueError):
        lmd(face(), face(), gt_valid=np.ones(3, bool))


# --- ground-truth factor measures (edtalk.evaluation.factors), landmark-based ---------------

from edtalk.evaluation import factors  # noqa: E402


def test_mouth_err_ignores_face_size_and_place_but_sees_mouth_opening():
    src = face(3, seed=2)
    other = 1.7 * src + 11.0                            # another face size/place, same mouth
    assert factors.mouth_err(other, src) == pytest.approx(0.0, abs=1e-12)
    opened = src.copy()
    opened[:, 57, 1] += 9.0                             # lower lip point down by 9 px
    iod = np.linalg.norm(src[0, 45] - src[0, 36])
    want = (9.0 * 19 / 20 + 19 * 9.0 / 20) / 20 / iod   # centred on the mouth mean
    assert factors.mouth_err(opened, src) == pytest.approx(want, rel=1e-12)


def test_id_drift_is_zero_for_a_similarity_and_grows_with_shape_change():
    ref = face(1, seed=3)[0]
    th = np.radians(-12.0)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    moved = (0.8 * ref @ rot.T + [5.0, -3.0])[None]
    assert factors.id_drift(moved, ref) == pytest.approx(0.0, abs=1e-12)
    changed = moved.copy()
    changed[0, 27:36] += [0.0, 6.0]                     # a longer nose: another identity
    assert factors.id_drift(changed, ref) > 0.01


def test_pose_err_roll_and_emotion_agreement():
    assert factors.pose_err(np.array([[10.0, 0.0], [20.0, 2.0]]), np.array([[12.0, 0.0]] * 4)) == \
        {"pose_err": 3.0, "pose_err_0": 5.0, "pose_err_1": 1.0}   # |-2|,|8| and |0|,|2|
    lm = face(1)
    lm[0, 36], lm[0, 45] = [0.0, 0.0], [10.0, -10.0]
    assert factors.roll_from_landmarks(lm)[0] == pytest.approx(-45.0)
    assert factors.emo_agree(["happy", "sad", "sad"], ["happy", "sad", "fear"]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        factors.emo_agree([], [])
