"""The suite over tiny generated mp4 pairs: per-clip rows, a summary, backend labels."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from edtalk.data.media import read_frames, write_video
from edtalk.experts import emotion_net
from edtalk.experts import syncnet as sync
from metrics import emotion, higher_is_better, image
from metrics.__main__ import main
from metrics.suite import Suite, SuiteConfig, match_clips


def fake_landmarker(frames):
    """Landmarks that follow mean brightness (deterministic, no detector needed)."""
    base = np.linspace(0, 60, 136).reshape(68, 2)
    lm = base[None] + frames.mean(axis=(1, 2, 3))[:, None, None] / 10
    lm[:, 48:68] *= 1 + frames[:, :8].mean(axis=(1, 2, 3))[:, None, None] / 1000
    return lm, np.ones(len(frames), bool)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("suite")
    rng = np.random.default_rng(0)
    gt_dir, pred_dir = root / "gt", root / "pred"
    for i, (cid, n_gt, n_pred) in enumerate([("c1_happy", 20, 20), ("c2_sad", 18, 12), ("c3_angry", 16, 16)]):
        gt = rng.integers(40, 200, (n_gt, 64, 64, 3), dtype=np.uint8)
        audio = (rng.standard_normal(n_gt * 640) * 0.1).astype(np.float32)
        pred = np.clip(gt[np.linspace(0, n_gt, n_pred, endpoint=False).astype(int)].astype(int)
                       + rng.integers(-15, 16, (n_pred, 64, 64, 3)), 0, 255).astype(np.uint8)
        write_video(gt_dir / f"{cid}.mp4", gt, audio=audio)
        write_video(pred_dir / f"{cid}.mp4", pred, audio=audio[: n_pred * 640])
    write_video(gt_dir / "only_gt.mp4", gt)                       # unmatched: ignored
    torch.manual_seed(0)
    sync.save_trained(sync.SyncNet(sync.SyncConfig(0.0625, 64, 16)).eval(), root / "sync.pt")
    emotion_net.save_trained(emotion_net.FrameAttentionNet(emotion_net.EmotionConfig(width=4, image_size=32)).eval(),
                         root / "emo.pt")
    return root


def test_matching_by_clip_id(folders):
    ids = [c for c, _, _ in match_clips(folders / "gt", folders / "pred")]
    assert ids == ["c1_happy", "c2_sad", "c3_angry"]


def test_suite_writes_rows_and_summary(folders, tmp_path):
    cfg = SuiteConfig(sync_weights=folders / "sync.pt", emotion_weights=folders / "emo.pt",
                      landmarker=fake_landmarker, device="cpu")
    summary = Suite(cfg).run(folders / "gt", folders / "pred", "noisy", tmp_path, progress=False)
    rows = pd.read_parquet(tmp_path / "clips.parquet")
    assert list(rows.clip_id) == ["c1_happy", "c2_sad", "c3_angry"]
    assert rows.pairs.tolist() == [20, 12, 16]
    # PSNR pooled over all paired frames, recomputed here from the decoded videos
    vals = []
    for cid in rows.clip_id:
        g, _ = read_frames(folders / "gt" / f"{cid}.mp4")
        p, _ = read_frames(folders / "pred" / f"{cid}.mp4")
        gi = np.linspace(0, len(g), len(p), endpoint=False).astype(int) if len(p) < len(g) else np.arange(len(g))
        vals += [image.psnr(a, b) for a, b in zip(g[gi], p)]
    m = summary["metrics"]
    assert m["psnr"] == pytest.approx(np.mean(vals), rel=1e-9)
    assert 0 < m["ssim"] < 1 and m["m_lmd"] >= 0 and m["fd[rgb-pool8]"] >= 0
    sync_keys = [k for k in m if k.startswith("lse_c[")]
    assert len(sync_keys) == 1 and sync_keys[0].startswith("lse_c[syncnet:trained-here:w0.0625-s64-d16@")
    assert any(k.startswith("acc_emo[emotion:trained-here@") for k in m)
    assert json.loads((tmp_path / "summary.json").read_text())["clips"] == 3
    assert summary["backends"]["fid"] == "fd[rgb-pool8]" and summary["failed"] == []
    assert all(isinstance(higher_is_better(k), bool) for k in m)     # every key declares its direction


def test_cli_evaluate_without_networks_notes_what_is_missing(folders, tmp_path, capsys):
    rc = main(["evaluate", "--gt", str(folders / "gt"), "--pred", str(folders / "gt"),
               "--method", "GT", "--out", str(tmp_path), "--no-landmarks", "--quiet"])
    assert rc == 0
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["metrics"]["ssim"] == 1.0 and out["metrics"]["psnr"] == float("inf")
    assert "no SyncNet weights" in cap.err
    assert (tmp_path / "clips.parquet").exists()


def test_cli_sync_json(folders, capsys):
    rc = main(["sync", str(folders / "pred" / "c1_happy.mp4"), "--weights", str(folders / "sync.pt"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["mdist"]) == 31 and out["mode"] == "direct"
    assert out["lse_d"] == pytest.approx(min(out["mdist"]))


def test_emotion_fan_checkpoint_loads_with_dataparallel_prefix(tmp_path):
    net = emotion_net.FrameAttentionNet(emotion_net.EmotionConfig(backbone="resnet18", image_size=64))
    state = {"module." + k: v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "emotion_fan_mead8.pth")
    back = emotion_net.from_emotion_fan(tmp_path / "emotion_fan_mead8.pth", image_size=64)
    assert not back.training
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(back(x), net.eval()(x))
    with pytest.raises(FileNotFoundError, match="emotion_fan_mead8.pth"):
        emotion_net.from_emotion_fan(tmp_path / "absent.pth")
    bad = {k: v for k, v in state.items() if "pred_fc2" not in k}
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="pred_fc2"):
        emotion_net.from_emotion_fan(tmp_path / "bad.pth")


def test_video_accuracy_and_labels():
    assert emotion.video_accuracy([4, 4, 0], [4, 1, 0]) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        emotion.video_accuracy([0], [8])
    assert emotion_net.label_index("surprised") == 7
