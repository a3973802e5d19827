"""``python -m metrics evaluate``: several sets, matching errors, short clips, streaming, crop decision."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from edtalk.data.detect import Detector, Face
from edtalk.data.media import read_frames, write_video, write_wav
from edtalk.experts import emotion_net
from edtalk.experts import syncnet as sn
from metrics import crop_auto, fid, image, stream, sync
from metrics.__main__ import main
from metrics.suite import Suite, SuiteConfig

S = 48


def _video(rng: np.random.Generator, n: int) -> np.ndarray:
    base = rng.integers(40, 200, (1, S, S, 3))
    return np.clip(base + rng.integers(-30, 31, (n, S, S, 3)), 0, 255).astype(np.uint8)


def _noisy(v: np.ndarray, rng: np.random.Generator, amp: int) -> np.ndarray:
    return np.clip(v.astype(int) + rng.integers(-amp, amp + 1, v.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """GT of 3 clips (one of 10 frames: short), two methods (small and large noise), a
    tiny SyncNet and emotion net, an audio folder and a labels CSV."""
    root = tmp_path_factory.mktemp("evalcli")
    rng = np.random.default_rng(1)
    for cid, n in (("a_happy", 30), ("b_sad", 26), ("short", 10)):
        gt = _video(rng, n)
        audio = (rng.standard_normal(n * 640) * 0.1).astype(np.float32)
        write_video(root / "gt" / f"{cid}.mp4", gt)                       # no audio track ...
        write_wav(root / "audio" / f"{cid}.wav", audio)                   # ... the driving audio is here
        write_video(root / "good" / f"{cid}.mp4", _noisy(gt, rng, 5))
        write_video(root / "bad" / f"{cid}_gen.mp4", _noisy(gt, rng, 60))
    pd.DataFrame({"clip_id": ["a_happy", "b_sad", "short"], "emotion": ["sad", "sad", "angry"]}
                 ).to_csv(root / "labels.csv", index=False)
    torch.manual_seed(0)
    sn.save_trained(sn.SyncNet(sn.SyncConfig(0.0625, 64, 16)).eval(), root / "sync.pt")
    emotion_net.save_trained(emotion_net.FrameAttentionNet(emotion_net.EmotionConfig(width=4, image_size=32))
                             .eval(), root / "emo.pt")
    return root


def _run(args: list[str]) -> int:
    return main(["evaluate", "--no-landmarks", "--quiet", "--device", "cpu", *args])


def test_two_sets_give_two_rows_with_backends_in_every_format(sets, tmp_path, capsys):
    # 'bad' names its files <id>_gen.mp4 (no match); copies named by clip id, given as a glob
    bad = tmp_path / "bad"
    for p in (sets / "bad").glob("*_gen.mp4"):
        bad.mkdir(exist_ok=True)
        (bad / p.name.replace("_gen", "")).write_bytes(p.read_bytes())
    out = tmp_path / "res"
    rc = _run(["--gt", str(sets / "gt"), "--pred", str(sets / "good"), "--name", "Good",
               "--pred", str(bad / "*.mp4"), "--name", "Bad", "--audio", str(sets / "audio"),
               "--labels", str(sets / "labels.csv"), "--sync-weights", str(sets / "sync.pt"),
               "--emotion-weights", str(sets / "emo.pt"), "--out", str(out)])
    assert rc == 0
    digest = json.loads(capsys.readouterr().out)
    assert [d["method"] for d in digest] == ["Good", "Bad"]
    good, badm = (d["metrics"] for d in digest)
    assert good["psnr"] > badm["psnr"] and good["ssim"] > badm["ssim"]
    lse = [k for k in good if k.startswith("lse_c[syncnet:trained-here")]
    assert lse and lse[0] in badm                                   # LSE from the --audio folder
    assert any(k.startswith("acc_emo[") for k in good)
    md = (out / "table1.md").read_text()
    assert "| Good |" in md and "| Bad |" in md and "Backends:" in md and "syncnet:trained-here" in md
    assert "Sync_dist↓" in md                                        # the columns beyond Table 1
    csv = pd.read_csv(out / "table1.csv", comment="#")
    assert list(csv.Method) == ["Good", "Bad"] and csv["PSNR↑"][0] == pytest.approx(good["psnr"])
    assert "# Backends:" in (out / "table1.csv").read_text()
    assert r"\begin{tabular}" in (out / "table1.tex").read_text()
    records = json.loads((out / "results.json").read_text())
    assert all(r["backends"]["fid"] == "fd[rgb-pool8]" and "sync" in r["backends"] for r in records)
    assert pd.read_parquet(out / "Good" / "clips.parquet").clip_id.tolist() == ["a_happy", "b_sad", "short"]
    # Acc_emo against the CSV labels, recomputed from the per-clip predictions
    rows = pd.read_parquet(out / "Good" / "clips.parquet")
    assert rows.emotion_label.tolist() == ["sad", "sad", "angry"]
    acc = [v for k, v in good.items() if k.startswith("acc_emo[")][0]
    assert acc == pytest.approx((rows.emotion_pred == rows.emotion_label).mean())


def test_unmatched_names_are_an_error_listing_them(sets, tmp_path, capsys):
    rc = _run(["--gt", str(sets / "gt"), "--pred", str(sets / "bad"), "--name", "Bad",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "3 generated video(s) without ground truth" in err and "a_happy_gen" in err
    assert "3 ground-truth video(s) without a generated one" in err and "short" in err
    assert not (tmp_path / "table1.md").exists()


def test_allow_unmatched_scores_the_common_clips(sets, tmp_path, capsys):
    part = tmp_path / "part"
    part.mkdir()
    (part / "b_sad.mp4").write_bytes((sets / "good" / "b_sad.mp4").read_bytes())
    with pytest.raises(ValueError):                                   # strict by default
        from metrics.suite import match_clips
        match_clips(sets / "gt", part, strict=True)
    rc = _run(["--gt", str(sets / "gt"), "--pred", str(part), "--method", "Part", "--allow-unmatched",
               "--out", str(tmp_path / "o")])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["clips"] == 1
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert any("2 ground-truth clip(s) without a generated video" in n for n in summary["notes"])


def test_short_clip_is_scored_and_flagged(sets, tmp_path):
    cfg = SuiteConfig(sync_weights=sets / "sync.pt", landmarker=None, device="cpu",
                      audio_dir=sets / "audio")
    summary = Suite(cfg).run(sets / "gt", sets / "good", "Good", tmp_path, progress=False)
    rows = pd.read_parquet(tmp_path / "clips.parquet").set_index("clip_id")
    assert rows.loc["short", "sync_windows"] == 10 - 5 and bool(rows.loc["short", "sync_short"])
    assert not rows.loc["a_happy", "sync_short"] and np.isfinite(rows.loc["short", "lse_c"])
    assert any("1 clip(s) shorter than 21 frames" in n for n in summary["notes"])


@pytest.mark.parametrize("n,batch", [(7, 20), (26, 20), (47, 8)])
def test_streamed_sync_equals_the_whole_clip_reference(n, batch):
    torch.manual_seed(n)
    net = sn.SyncNet(sn.SyncConfig(0.0625, 64, 16)).eval()
    rng = np.random.default_rng(n)
    frames = rng.integers(0, 256, (n, 40, 40, 3), dtype=np.uint8)
    audio = (rng.standard_normal(n * 640 - 300) * 0.2).astype(np.float32)   # audio a bit short
    ref = sync.score(frames, audio, 16000, net, batch)
    ls = stream.LipStream(net, n, audio, batch)
    for f in frames:
        ls.push(f)
    got = ls.result()
    assert (got.offset, got.windows) == (ref.offset, ref.windows)
    assert np.allclose(got.mdist, ref.mdist, atol=1e-6) and got.lse_c == pytest.approx(ref.lse_c, abs=1e-6)


def test_too_short_for_one_window_is_a_clear_error():
    net = sn.SyncNet(sn.SyncConfig(0.0625, 64, 16)).eval()
    with pytest.raises(ValueError, match="at least 6 frames"):
        stream.LipStream(net, 5, np.zeros(5 * 640, np.float32))


def test_streamed_suite_pairs_resizes_and_pools_like_whole_arrays(tmp_path):
    """Unequal lengths and sizes: PSNR over linspace pairs of the resized prediction and FD
    over every frame, recomputed here from whole decoded arrays."""
    rng = np.random.default_rng(5)
    gt = _video(rng, 150)                                        # > 2 chunks of 64 pairs
    pred = np.stack([cv2.resize(f, (64, 64)) for f in _noisy(gt[::2], rng, 20)])   # 75 frames, 64 px
    write_video(tmp_path / "g" / "c.mp4", gt)
    write_video(tmp_path / "p" / "c.mp4", pred)
    summary = Suite(SuiteConfig(landmarker=None, device="cpu")).run(tmp_path / "g", tmp_path / "p", "M",
                                                                      progress=False)
    g, _ = read_frames(tmp_path / "g" / "c.mp4")
    p, _ = read_frames(tmp_path / "p" / "c.mp4")
    p = np.stack([cv2.resize(f, (S, S)) for f in p])
    gi = np.linspace(0, len(g), len(p), endpoint=False).astype(int)
    assert summary["metrics"]["psnr"] == pytest.approx(np.mean(image.psnr_frames(g[gi], p)), rel=1e-12)
    backend = fid.PooledPixels()
    assert summary["metrics"]["fd[rgb-pool8]"] == pytest.approx(
        fid.frame_set_distance(backend(g), backend(p)), rel=1e-9)


class _Boxes(Detector):
    """One face whose box is a given share of the frame width."""

    name = "fixed"

    def __init__(self, share: float | None) -> None:
        self.share = share

    def detect(self, frame, index=None, with_landmarks=False):
        if self.share is None:
            return []
        w = frame.shape[1]
        return [Face(box=np.array([0.0, 0.0, self.share * w, self.share * w]))]


def test_crop_decision_from_frame_shape_and_face_size(tmp_path):
    rng = np.random.default_rng(0)
    write_video(tmp_path / "sq.mp4", rng.integers(0, 255, (6, 64, 64, 3), dtype=np.uint8))
    write_video(tmp_path / "wide.mp4", rng.integers(0, 255, (6, 48, 96, 3), dtype=np.uint8))
    assert crop_auto.looks_like_crop(tmp_path / "sq.mp4", _Boxes(0.6)) is True
    assert crop_auto.looks_like_crop(tmp_path / "sq.mp4", _Boxes(0.1)) is False       # small face
    assert crop_auto.looks_like_crop(tmp_path / "wide.mp4", _Boxes(0.6)) is False     # not square
    assert crop_auto.looks_like_crop(tmp_path / "sq.mp4", _Boxes(None)) is None
    assert crop_auto.set_needs_crop({"w": tmp_path / "wide.mp4"}, _Boxes(0.6))[0] is True
    assert crop_auto.set_needs_crop({"s": tmp_path / "sq.mp4"}, _Boxes(None))[0] is None


def test_count_frames_matches_decoding_and_rejects_non_video(tmp_path):
    rng = np.random.default_rng(2)
    write_video(tmp_path / "v.mp4", rng.integers(0, 255, (13, 32, 32, 3), dtype=np.uint8))
    assert stream.count_frames(tmp_path / "v.mp4") == 13 == sum(1 for _ in stream.frames(tmp_path / "v.mp4"))
    (tmp_path / "x.mp4").write_text("not a video")
    from edtalk.data.quarantine import ClipRejected
    with pytest.raises(ClipRejected):
        stream.count_frames(tmp_path / "x.mp4")


def _moving_landmarks(frames):
    """Landmarks that translate and scale with the frame's brightness (a head that moves)."""
    base = np.linspace(10, 40, 136).reshape(68, 2)
    m = frames.mean(axis=(1, 2, 3))[:, None, None]
    return base[None] * (1 + m / 500) + m / 5, np.ones(len(frames), bool)


def test_extras_are_scored_with_their_backends_or_a_reason(sets, tmp_path):
    from metrics import motion_stats, sharpness

    cfg = SuiteConfig(landmarker=_moving_landmarks, device="cpu", audio_dir=sets / "audio", extras=True)
    summary = Suite(cfg).run(sets / "gt", sets / "good", "Good", tmp_path, progress=False)
    rows = pd.read_parquet(tmp_path / "clips.parquet").set_index("clip_id")
    m = summary["metrics"]
    # CPBD over the sampled generated frames (all of them: clips are under 32 frames)
    p, _ = read_frames(sets / "good" / "a_happy.mp4")
    assert rows.loc["a_happy", "cpbd"] == pytest.approx(sharpness.cpbd(p, max_frames=None)[0])
    assert m[f"cpbd[{sharpness.BACKEND}]"] == pytest.approx(rows.cpbd.mean())
    # head-motion diversity from the landmarks of the generated frames
    lm, _ = _moving_landmarks(p)
    assert rows.loc["a_happy", "head_motion_diversity"] == pytest.approx(motion_stats.head_motion_diversity(lm)[0])
    assert any(k.startswith("head_motion_diversity[") for k in m)
    # noise has no face: CSIM says why instead of a number; LPIPS is a value or names its file
    assert "csim" not in m and rows.csim_error.notna().all()
    assert any(k.startswith("lpips[") for k in m) or rows.lpips_error.str.contains("alex|vgg|squeeze").all()
