"""Training data: deterministic batches, DDP shards, K-frame windows, the mouth swap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edtalk.data.schema import EMOTIONS
from edtalk.train.data import (FrameTable, autoencoder_batch, expression_batch, face_masks, mouth_box,
                               mouth_masks, mouth_pose_batch, paste_mouth, window_rows)
from edtalk.train.config import StageConfig
from edtalk.train.stages import STAGES

SIZE = 16


def mouth_landmarks(cx: float, cy: float, w: float, h: float) -> np.ndarray:
    """68 points: a face outline far from the mouth, and 20 mouth points on an ellipse."""
    lm = np.zeros((68, 2), np.float32)
    lm[:48] = [2.0, 2.0]
    t = np.linspace(0, 2 * np.pi, 20, endpoint=False)
    lm[48:] = np.stack([cx + w / 2 * np.cos(t), cy + h / 2 * np.sin(t)], 1)
    return lm


def make_features(root: Path, identities: int = 3, clips: int = 2, frames: int = 8,
                  size: int = SIZE, seed: int = 0) -> Path:
    """A features dir (frames.parquet + pixels.npy) with smooth random faces and mouth landmarks;
    one extra identity forms the val split."""
    rng = np.random.default_rng(seed)
    rows, pixels = [], []
    emotions = ["neutral", "happy", "angry", "sad"]
    for ident in range(identities + 1):
        split = "val" if ident == identities else "train"
        base = rng.integers(40, 200, size=(1, 1, 3))
        for c in range(clips):
            for f in range(frames):
                img = np.clip(base + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                lm = mouth_landmarks(size / 2 + rng.uniform(-1, 1), size * 0.7 + rng.uniform(-1, 1),
                                     rng.uniform(3, 6), rng.uniform(1, 3))
                rows.append({"clip_id": f"id{ident}_c{c}", "frame": f, "split": split,
                             "identity": f"id{ident}", "emotion": emotions[(ident + c) % 4],
                             "intensity": 1, "landmarks": lm.reshape(-1), "landmarks_valid": True,
                             "pixel_index": len(pixels)})
                pixels.append(img)
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "frames.parquet")
    np.save(root / "pixels.npy", np.stack(pixels))
    return root


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> FrameTable:
    return FrameTable.load(make_features(tmp_path_factory.mktemp("feat")))


def test_table_holds_only_the_train_split(table):
    assert len(table) == 3 * 2 * 8 and len(table.clip_rows) == 6 and len(table.identity_rows) == 3


def test_batches_are_a_pure_function_of_seed_and_step(table):
    a, b = autoencoder_batch(table, 0, 5, 4), autoencoder_batch(table, 0, 5, 4)
    c = autoencoder_batch(table, 0, 6, 4)
    assert all(a[k].equal(b[k]) for k in a) and not a["driving"].equal(c["driving"])
    assert a["identity"].shape == (4, 3, SIZE, SIZE) and -1 <= a["identity"].min() and a["identity"].max() <= 1


def test_rank_shards_interleave_into_the_combined_batch(table):
    full = mouth_pose_batch(table, 0, 3, 4)
    parts = [mouth_pose_batch(table, 0, 3, 4, rank=r, world=2) for r in range(2)]
    for k in full:
        assert full[k][0::2].equal(parts[0][k]) and full[k][1::2].equal(parts[1][k])


def test_window_stays_in_the_clip_and_has_k_frames(table):
    rows = table.clip_rows[1]
    assert list(window_rows(table, rows[0], 3)) == list(rows[:3])           # clamped at the start
    assert list(window_rows(table, rows[4], 3)) == list(rows[3:6])          # centred
    assert list(window_rows(table, rows[-1], 5)) == list(rows[-5:])         # clamped at the end
    batch = expression_batch(table, 0, 0, 2, window=3)
    assert batch["window"].shape == (2, 3, 3, SIZE, SIZE)


def test_table_keeps_only_the_requested_emotions(tmp_path):
    root = make_features(tmp_path / "feat")
    neutral = FrameTable.load(root, emotions=["neutral"])
    assert set(neutral.emotion) == {EMOTIONS.index("neutral")} and len(neutral) == 8   # id0_c0 only
    with pytest.raises(ValueError, match="emotions"):
        FrameTable.load(root, "val", emotions=["surprised"])


@pytest.mark.parametrize("pairs", ["identity", "clip"])
def test_identity_frame_of_mouth_pose_pairs_is_another_frame_of_the_same_identity(table, pairs):
    px = table.pixels[table.pixel_index]                   # every frame's pixels, row order

    def row_of(img):                                       # frames are distinct random images
        arr = np.rint((img.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        return int(np.flatnonzero((px == arr).all(axis=(1, 2, 3)))[0])

    other_clip = 0
    for step in range(6):
        batch = mouth_pose_batch(table, 0, step, 4, pairs=pairs)
        for i in range(4):
            a, b, c = (row_of(batch[k][i]) for k in ("a", "b", "identity"))
            assert table.clip[a] == table.clip[b] and a != b
            assert table.identity[c] == table.identity[a] and c not in (a, b)
            other_clip += table.clip[c] != table.clip[a]
    assert (other_clip > 0) == (pairs == "identity")       # "clip": always the pair's own clip
    with pytest.raises(ValueError, match="pairs"):
        mouth_pose_batch(table, 0, 0, 2, pairs="video")


def test_expression_identity_frame_comes_from_another_clip_of_the_same_identity(table):
    """§3.2: I^i shares I^d's identity but differs in expression (another clip here)."""
    px = table.pixels[table.pixel_index]

    def row_of(img):
        arr = np.rint((img.permute(1, 2, 0).numpy() + 1) * 127.5).astype(np.uint8)
        return int(np.flatnonzero((px == arr).all(axis=(1, 2, 3)))[0])

    for step in range(3):
        batch = expression_batch(table, 0, step, 4, window=3)
        for i in range(4):
            ident, drive = row_of(batch["identity"][i]), row_of(batch["driving"][i])
            assert table.identity[ident] == table.identity[drive]
            assert table.clip[ident] != table.clip[drive]
            assert table.emotion[ident] != table.emotion[drive]    # the fixture's clips differ in emotion
            assert row_of(batch["window"][i][1]) == drive or drive in (table.clip_rows[table.clip[drive]][[0, -1]])


def test_mouth_swap_takes_the_mouth_box_from_the_other_frame_and_keeps_the_rest():
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    dst = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    lm_src, lm_dst = mouth_landmarks(15, 22, 8, 4), mouth_landmarks(17, 21, 6, 3)
    margin, feather = 2, 2
    out = paste_mouth(src, dst, lm_src, lm_dst, margin, feather)
    c_src, h_src = mouth_box(lm_src, margin)
    c_dst, h_dst = mouth_box(lm_dst, margin)
    half = np.ceil(np.maximum(h_src, h_dst)).astype(int)
    cx, cy = np.round(c_dst).astype(int)
    sx, sy = np.round(c_src - c_dst).astype(int)
    inside = np.zeros((32, 32), bool)
    inside[cy - half[1]: cy + half[1] + 1, cx - half[0]: cx + half[0] + 1] = True
    assert (out[~inside] == dst[~inside]).all()                      # outside: untouched
    core = (slice(cy - half[1] + feather, cy + half[1] + 1 - feather),
            slice(cx - half[0] + feather, cx + half[0] + 1 - feather))
    shifted = src[core[0].start + sy: core[0].stop + sy, core[1].start + sx: core[1].stop + sx]
    assert (out[core] == shifted).all()                               # core: the other mouth
    # every landmark of dst's mouth lies in the pasted core, so dst's mouth is gone
    for x, y in np.round(lm_dst[48:]).astype(int):
        assert core[0].start <= y < core[0].stop and core[1].start <= x < core[1].stop
    # the feathered rim mixes both images
    rim = out[cy - half[1], cx].astype(int)
    assert not np.array_equal(rim, dst[cy - half[1], cx]) or np.array_equal(
        src[cy - half[1] + sy, cx + sx], dst[cy - half[1], cx])


def test_the_lips_chin_region_moves_the_chin_with_the_mouth():
    rng = np.random.default_rng(2)
    src = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    dst = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    lm_src, lm_dst = mouth_landmarks(16, 18, 8, 4), mouth_landmarks(16, 18, 8, 2)
    lm_src[6:11] = [[13, 26], [14, 27], [16, 28], [18, 27], [19, 26]]   # chin dropped with the lip
    lm_dst[6:11] = [[13, 24], [14, 25], [16, 25], [18, 25], [19, 24]]
    (_, h_lips), (c, h) = mouth_box(lm_src, 1, "lips"), mouth_box(lm_src, 1, "lips_chin")
    assert h[1] > h_lips[1] and c[1] + h[1] >= 28 + 1          # the box reaches below the chin
    lips = paste_mouth(src, dst, lm_src, lm_dst, 1, 0, "lips")
    chin = paste_mouth(src, dst, lm_src, lm_dst, 1, 0, "lips_chin")
    assert (lips[27] == dst[27]).all()                          # the lips' box leaves the chin rows
    sx, sy = np.round(c - mouth_box(lm_dst, 1, "lips_chin")[0]).astype(int)
    assert (chin[27, 14:19] == src[27 + sy, 14 + sx:19 + sx]).all()   # the chin's box takes the source's
    with pytest.raises(ValueError, match="mouth region"):
        mouth_box(lm_src, 1, "jaw")


def test_pairs_are_swapped_both_ways(table):
    batch = mouth_pose_batch(table, 0, 2, 2, margin=1, feather=0)
    for k in ("ma_pb", "mb_pa"):
        assert not batch[k].equal(batch["a"]) and not batch[k].equal(batch["b"])
    # the swapped image keeps b's pixels far from the mouth (top rows)
    assert batch["ma_pb"][:, :, :4].equal(batch["b"][:, :, :4])
    assert batch["mb_pa"][:, :, :4].equal(batch["a"][:, :, :4])


def test_mouth_masks_cover_exactly_the_mouth_box_of_each_frame(table):
    lm = np.stack([mouth_landmarks(8.0, 11.0, 4.0, 2.0), mouth_landmarks(6.0, 9.0, 6.0, 3.0)])
    masks = mouth_masks(lm, SIZE, margin=1).numpy()
    assert masks.shape == (2, 1, SIZE, SIZE) and set(np.unique(masks)) == {0.0, 1.0}
    for m, points in zip(masks[:, 0], lm):
        ys, xs = np.nonzero(m)
        mouth = points[48:]
        # every mouth point lies inside its mask's box, and the box is the points' extent + margin
        assert xs.min() <= mouth[:, 0].min() - 1 + 1e-6 and xs.max() >= mouth[:, 0].max() + 1 - 1
        assert ys.min() <= mouth[:, 1].min() - 1 + 1e-6 and ys.max() >= mouth[:, 1].max() + 1 - 1
        assert m.sum() < 0.5 * SIZE * SIZE
    batch = mouth_pose_batch(table, 0, 2, 2, margin=1, feather=0)
    assert batch["mouth_a"].shape == (2, 1, SIZE, SIZE) and batch["mouth_a"].sum() > 0


def test_face_masks_add_the_brow_and_eye_box_to_the_mouth_box(table):
    lm = mouth_landmarks(8.0, 12.0, 4.0, 2.0)
    lm[17:48] = np.stack([np.linspace(4.0, 11.0, 31), np.linspace(3.0, 6.0, 31)], 1)   # brows .. eyes
    face = face_masks(lm[None], SIZE, margin=1)[0, 0].numpy()
    mouth = mouth_masks(lm[None], SIZE, margin=1)[0, 0].numpy()
    assert set(np.unique(face)) == {0.0, 1.0} and (face >= mouth).all()
    ys, xs = np.nonzero(face - mouth)
    # the rest is the box of points 17-47 plus the margin: x 3..12, y 2..7
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (3, 11, 2, 6)
    assert face[7:10].sum() == 0                 # between the eyes' box and the mouth's: untouched
    batch = autoencoder_batch(table, 0, 1, 2)
    assert batch["face"].shape == (2, 1, SIZE, SIZE) and (batch["face"] >= batch["mouth"]).all()


def test_the_mouth_pose_stage_swaps_the_configured_region(table):
    """train.mouth_pose.mouth_region reaches the stage's batches: the chin points of the fixture
    lie outside the lips, so the lips-and-chin box (and its loss mask) is the larger one."""
    lips = STAGES["mouth_pose"].make_batch(table, StageConfig("mouth_pose", mouth_margin=1), 2, 0, 1)
    chin = STAGES["mouth_pose"].make_batch(
        table, StageConfig("mouth_pose", mouth_margin=1, mouth_region="lips_chin"), 2, 0, 1)
    assert lips["a"].equal(chin["a"]) and lips["identity"].equal(chin["identity"])   # same frames
    assert (chin["mouth_a"] >= lips["mouth_a"]).all() and chin["mouth_a"].sum() > lips["mouth_a"].sum()
    assert not chin["ma_pb"].equal(lips["ma_pb"])
