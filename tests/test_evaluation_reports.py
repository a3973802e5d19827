"""The disentangle and SyncNet-sensitivity reports on tiny inputs (no trained model needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from edtalk.data import media
from edtalk.evaluation import disentangle as dis
from edtalk.evaluation import disentangle_report, sync_sensitivity
from edtalk.experts import emotion_net, landmark_net, syncnet

torch.set_num_threads(1)


def _results() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Landmark, emotion, pixel and expression-carrier rows of one pair: a perfectly
    disentangled model."""
    factors = [dict(model="trained", identity_clip="a", source_clip="b", swapped=s, factor=f,
                    err_source=0.1 if s == f else 1.0, err_identity=1.0 if s == f else 0.1,
                    gain=1.0 if s == f else 0.0)
               for s in dis.FACTORS for f in dis.FACTORS]
    emotions = [dict(model="trained", identity_clip="a", source_clip="b", swapped=s,
                     emotion_shift=2.0 if s == "exp" else -2.0, reads_source=s == "exp",
                     reads_identity=s != "exp") for s in (*dis.FACTORS, "still")]
    pixels = [dict(model="trained", identity_clip="a", source_clip="b", swapped=s, err_target=1.0,
                   still_err_target=5.0, err_still=4.0) for s in dis.FACTORS]
    carriers = [dict(model="trained", identity_clip="a", source_clip="b", swapped=s, region=r,
                     dot=2.0 if s == "exp" else 0.0, norm2=2.0) for s in dis.FACTORS for r in dis.REGIONS]
    return pd.DataFrame(factors), pd.DataFrame(emotions), pd.DataFrame(pixels), pd.DataFrame(carriers)


def test_disentangle_report_words_every_table_and_writes_five_files(tmp_path) -> None:
    results, emotions, pixels, carriers = _results()
    text = disentangle_report.render_markdown("Header line.", results, emotions, pixels, carriers,
                                              "emotion:x", 12.4)
    assert text.startswith("# Disentanglement on the synthetic corpus\n\nHeader line.\n")
    assert "closer: trained 100%." in text and "`emotion:x` on each output video" in text
    for heading in ("## Following the source over time", "## Expression read by the emotion evaluator",
                    "## Which source carries the expression", "## Against the rendered ground truth of each swap"):
        assert heading in text
    assert "| trained: exp source   |    1.00 |      1.00 |            1.00 |" in text
    assert text.endswith("(12 s)\n")
    report = disentangle_report.Report(results, emotions, pixels, carriers, text)
    disentangle_report.write(report, tmp_path / "disentangle")
    assert (tmp_path / "disentangle.md").read_text() == text
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "disentangle.csv"), results)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "disentangle_emotion.csv"), emotions)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "disentangle_pixels.csv"), pixels)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "disentangle_carriers.csv"), carriers)


def test_expression_carriers_measure_the_share_of_the_ideal_expression_change() -> None:
    """A fake landmarker moves every expression point up by the frames' mean level / 100: the
    ideal expression swap (level 100 against 0) sets the direction and size; against a still
    output at level 25, an exp output at 50 carries a quarter of it and mouth and pose outputs
    at 0 move the other way by a quarter."""
    base = np.stack([np.linspace(0, 10, 68), np.cos(np.arange(68))], 1)
    moved = np.concatenate(list(dis.REGIONS.values()))

    def landmarker(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pts = np.repeat(base[None], len(frames), 0)
        pts[:, moved, 1] -= frames.reshape(len(frames), -1).mean(1)[:, None] / 100
        return pts, np.ones(len(frames), bool)

    def level(v: float) -> np.ndarray:
        return np.full((3, 4, 4, 3), v, np.uint8)

    targets = {("a", "b", "exp"): level(100), ("a", "b", "still"): level(0)}
    outputs = {("a", "b", "pose"): level(0), ("a", "b", "mouth"): level(0), ("a", "b", "exp"): level(50),
               ("a", "b", "still"): level(25)}
    rows = dis.expression_carriers(outputs, targets, landmarker, "m")
    assert len(rows) == 3 * len(dis.REGIONS)
    t = dis.carrier_table(rows)
    assert list(t.index) == ["m: pose source", "m: mouth source", "m: exp source"]
    assert list(t.columns) == list(dis.REGIONS)
    np.testing.assert_allclose(t.loc["m: exp source"], 0.25)
    np.testing.assert_allclose(t.loc["m: pose source"], -0.25)
    np.testing.assert_allclose(t.loc["m: mouth source"], -0.25)


def test_disentangle_landmarker_reads_a_regressor_or_an_emotion_net_file(tmp_path) -> None:
    torch.manual_seed(0)
    landmark_net.save(landmark_net.LandmarkNet(landmark_net.LandmarkConfig(image_size=32, width=4)),
                      tmp_path / "landmarks.pt")
    emotion_net.save_trained(emotion_net.FrameAttentionNet(emotion_net.EmotionConfig(
        backbone="landmarks", image_size=32, width=4, hidden=8)), tmp_path / "emotion.pt")
    frames = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for name, label in (("landmarks.pt", "landmarks:"), ("emotion.pt", "heatmap-landmarks:emotion:")):
        landmarker = disentangle_report.load_landmarker(tmp_path / name)
        points, valid = landmarker(frames)
        assert landmarker.label.startswith(label) and points.shape == (2, 68, 2) and len(valid) == 2


def test_sync_sensitivity_scores_ground_truth_defects_and_generated_videos(tmp_path) -> None:
    rng = np.random.default_rng(0)
    video = rng.integers(0, 256, (12, 64, 64, 3), dtype=np.uint8)
    audio = (rng.normal(size=12 * media.SAMPLE_RATE // 25) * 3000).astype(np.int16)
    clips, generated = tmp_path / "clips", tmp_path / "generate"
    media.write_video(clips / "c1.mp4", video)
    media.write_wav(clips / "c1.wav", audio)
    media.write_video(generated / "EDTalk-V" / "c1.mp4", video[::-1].copy())
    blurred = sync_sensitivity.DEFECTS["ground truth, blurred (Gaussian, sigma 1 px)"](video)
    half = sync_sensitivity.DEFECTS["ground truth, half the motion (blend with the clip's mean frame)"](video)
    assert blurred.dtype == half.dtype == np.uint8 and blurred.shape == half.shape == video.shape
    assert np.abs(half.astype(int) - video.mean(0)).mean() < np.abs(video.astype(int) - video.mean(0)).mean()
    torch.manual_seed(0)
    net = syncnet.SyncNet(syncnet.SyncConfig(width=0.125, image_size=64, embed_dim=16)).eval()
    scores = sync_sensitivity.score_clips(["c1"], clips, generated, net)
    assert list(scores["video"]) == [*sync_sensitivity.DEFECTS, "EDTalk-V"]
    assert np.isfinite(scores["lse_c"]).all()
    table = sync_sensitivity.summary(scores)
    assert list(table.columns) == ["LSE-C (mean)", "share with offset within ±1 frame"]
    text = sync_sensitivity.render_markdown(table, "syncnet:x", 1, "test", 3.2)
    assert text.startswith("# SyncNet sensitivity\n\nSyncNet `syncnet:x`; 1 `test` clips, each scored")
    assert "| EDTalk-V" in text and text.endswith("(3 s)\n")
    assert sync_sensitivity.generated_methods(tmp_path / "absent") == []
    # with an emotion reader: each video's reading lands in its own row and in Acc_emo
    def sharp_reads_happy(frames: np.ndarray) -> str:
        return "happy" if np.abs(np.diff(frames.astype(int), axis=2)).mean() > 40 else "sad"
    scores = sync_sensitivity.score_clips(["c1"], clips, generated, net, sharp_reads_happy, {"c1": "happy"})
    stored, made = (media.read_frames(p)[0] for p in (clips / "c1.mp4", generated / "EDTalk-V" / "c1.mp4"))
    expected = [sharp_reads_happy(v) == "happy"
                for v in [d(stored) for d in sync_sensitivity.DEFECTS.values()] + [made]]
    assert list(scores["emotion_read"]) == expected and expected[0] and not expected[1]   # blur reads "sad"
    table = sync_sensitivity.summary(scores)
    assert list(table["Acc_emo"]) == [float(e) for e in expected]
    text = sync_sensitivity.render_markdown(table, "syncnet:x", 1, "test", 3.2, "emotion:y")
    assert text.startswith("# SyncNet and emotion evaluator sensitivity") and "emotion evaluator `emotion:y`" in text
