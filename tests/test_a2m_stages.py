"""Audio-to-Motion stages: weight cache, the three training loops, resume, AudioDriver.

Everything runs on a hand-made features folder (6 clips x 24 frames at 32 px) and a
random-weight tiny EDTalk, so the fast set takes seconds; the Prefect flows end to end
are marked slow.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch

from edtalk.audio2motion import a2m_config, weights_cache
from edtalk.audio2motion import train_pose as train_pose_module
from edtalk.audio2motion.audio_encoder import frame_windows
from edtalk.audio2motion.audio_pose import AudioPose
from edtalk.audio2motion.config import ExpressionConfig, SemanticEncoderConfig
from edtalk.audio2motion.data import ClipData, emotion_means, load_clips
from edtalk.audio2motion.driver import AudioDriver
from edtalk.audio2motion.model_files import save_expression, save_mouth, save_pose
from edtalk.audio2motion.mouth import AudioToMouth, mouth_feature_loss
from edtalk.audio2motion.params import ExpressionTrainConfig, LoopConfig, MouthTrainConfig, PoseTrainConfig
from edtalk.audio2motion.semantic_expression import SemanticExpression, expression_loss
from edtalk.audio2motion.train_expression import train_expression
from edtalk.audio2motion.train_mouth import RenderContext, train_mouth
from edtalk.audio2motion.train_pose import NOISE_GRID, holdout_split, resolve_noise, train_pose
from edtalk.data import pixel_cache
from edtalk.data.media import write_wav
from edtalk.data.pixel_cache import PixelCache
from edtalk.data.schema import EMOTIONS
from edtalk.model import EDTalk, profile, save_checkpoint
from edtalk.train.resumable import checkpoints
from tests.kill9 import run_and_kill

torch.set_num_threads(1)
N_CLIPS, N_FRAMES, SIZE = 6, 24, 32
SMALL_SEMANTIC = SemanticEncoderConfig(conv_channels=16, d_model=16, n_layers=1, n_heads=2, ffn_dim=32,
                                       pos_conv_kernel=8, pos_conv_groups=2, dropout=0.1)
SMALL_EXP = ExpressionConfig(semantic=SMALL_SEMANTIC, hidden=32)


def _loop(steps: int, batch: int = 8, every: int = 2) -> LoopConfig:
    return LoopConfig(steps=steps, batch=batch, lr=3e-3, seed=0, checkpoint_every=every,
                      keep_checkpoints=2, log_every=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """features/{frames,clips}.parquet + pixel cache, crop/clips/*.wav, model.pt, weights.parquet."""
    root = tmp_path_factory.mktemp("a2m")
    feats, crop = root / "features", root / "crop"
    rng = np.random.default_rng(0)
    rows, clips, ids = [], [], []
    for c in range(N_CLIPS):
        clip_id = f"clip{c}"
        ids.append(clip_id)
        t = np.arange(N_FRAMES)
        frames = np.clip(127 + 60 * np.sin(t[:, None, None, None] / 3 + c)
                         + rng.normal(0, 20, (N_FRAMES, SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
        pixel_cache.write_shard(feats / "shards", clip_id, frames)
        split = "test" if c >= 4 else "train"
        wave = (0.3 * np.sin(2 * np.pi * (150 + 40 * c) * np.arange(N_FRAMES * 640) / 16000)
                * (1 + np.sin(np.arange(N_FRAMES * 640) / 900))).astype(np.float32)
        write_wav(crop / "clips" / f"{clip_id}.wav", wave)
        emotion = EMOTIONS[c % 3]
        clips.append({"clip_id": clip_id, "emotion": emotion, "split": split,
                      "transcript": f"I feel {emotion} today", "audio_path": f"clips/{clip_id}.wav"})
        for i in range(N_FRAMES):
            rows.append({"clip_id": clip_id, "frame": i, "split": split,
                         "mfcc": rng.normal(0, 1, 52).astype(np.float32) + np.sin(i / 2 + c),
                         "mel": rng.normal(0, 1, 320).astype(np.float32), "pixel_index": 0})
    index = pixel_cache.assemble(feats / "shards", ids, feats / "pixels.npy")
    start = dict(zip(index["clip_id"], index["start"]))
    df = pd.DataFrame(rows)
    df["pixel_index"] = [start[c] + f for c, f in zip(df["clip_id"], df["frame"])]
    df.to_parquet(feats / "frames.parquet")
    pd.DataFrame(clips).to_parquet(feats / "clips.parquet")
    torch.manual_seed(0)
    model = EDTalk(profile("tiny", size=SIZE))
    save_checkpoint(root / "model.pt", model)
    table = weights_cache.extract(model, df, PixelCache(feats / "pixels.npy"), batch_size=32)
    weights_cache.write(table, root / "weights.parquet")
    return root


def _clips(corpus: Path, splits=("train",)) -> list[ClipData]:
    return load_clips(corpus / "features", corpus / "weights.parquet", splits, corpus / "crop")


def test_extract_writes_the_declared_schema_and_the_models_weights(corpus: Path) -> None:
    table = pq.read_table(corpus / "weights.parquet")
    assert table.schema.equals(weights_cache.WEIGHTS)
    assert table.num_rows == N_CLIPS * N_FRAMES
    df = weights_cache.read(corpus / "weights.parquet")
    from edtalk.model import load_checkpoint
    model, _ = load_checkpoint(corpus / "model.pt")
    px = PixelCache(corpus / "features" / "pixels.npy")
    w = weights_cache.frame_weights(model.eval(), weights_cache.to_images(px[[5]]))
    row = df[(df.clip_id == "clip0") & (df.frame == 5)].iloc[0]
    for k, col in weights_cache.COLUMNS.items():
        np.testing.assert_allclose(row[col], w[k][0], atol=1e-5)
    arrays = weights_cache.clip_arrays(df)
    assert arrays["clip1"]["pose"].shape == (N_FRAMES, 6) and arrays["clip1"]["exp"].shape == (N_FRAMES, 10)


def test_mouth_loop_reduces_feature_loss_and_uses_rec_and_sync(corpus: Path, tmp_path: Path) -> None:
    from edtalk.model import load_checkpoint
    from edtalk.experts.syncnet import SyncConfig, SyncNet

    clips = _clips(corpus)
    model, _ = load_checkpoint(corpus / "model.pt")
    render = RenderContext(model, PixelCache(corpus / "features" / "pixels.npy"),
                           SyncNet(SyncConfig(0.125, 64, 16)))
    cfg = MouthTrainConfig(loop=_loop(40, 32, 100), rec_every=5)
    torch.manual_seed(0)
    fresh = AudioToMouth(a2m_config("tiny").mouth)
    net, res = train_mouth(clips, cfg, a2m_config("tiny").mouth, tmp_path, render)
    windows = torch.cat([frame_windows(c.mfcc) for c in clips])
    target = torch.from_numpy(np.concatenate([c.mouth for c in clips]))
    with torch.no_grad():
        before = mouth_feature_loss(target, fresh(windows))
        after = mouth_feature_loss(target, net(windows))
    assert after < 0.5 * before
    assert {"loss/fea", "loss/rec", "loss/sync"} <= set(res.first)
    assert all(np.isfinite(v) for v in res.first.values())
    assert all(not p.requires_grad for p in model.parameters())


def test_pose_loop_reduces_mle_and_calibrates_rho(corpus: Path, tmp_path: Path) -> None:
    clips = _clips(corpus)
    cfg = PoseTrainConfig(loop=_loop(40, 4, 100), seq_len=16, eval_every=5)
    model, res, rho = train_pose(clips, cfg, a2m_config("tiny"), tmp_path)
    assert res.last["loss/mle"] < res.first["loss/mle"]   # from the Gaussian, already a good fit
    assert 0.0 <= rho <= 0.9999 and float(model.flow.rho[0]) == pytest.approx(rho)
    assert 0.0 <= float(model.flow.shared.min()) <= float(model.flow.shared.max()) <= 1.0
    # early stopping on a held-out part of the train split (here: one of the 4 clips, since
    # the hand-made manifest names no identities): the kept state is the best one seen
    info = model.train_info
    assert len(info["heldout_identities"]) == 1
    steps = [s for s, _, _ in info["heldout_curve"]]
    assert steps == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert info["best_step"] in steps
    ok = [nll for _, nll, ratio in info["heldout_curve"] if ratio <= cfg.jitter_ratio]
    if ok:
        assert info["best_heldout_nll"] == pytest.approx(min(ok), abs=1e-4)
    # then a fresh model trains on every train clip for the chosen number of steps
    assert info["refit_steps"] == info["best_step"]
    if info["best_step"] > 0:
        assert checkpoints(tmp_path / "checkpoints" / "pose" / "refit")[-1][0] == info["best_step"]


def test_pose_offset_on_expression_is_fitted_only_when_asked(corpus: Path, tmp_path: Path) -> None:
    clips = _clips(corpus)
    cfg = PoseTrainConfig(loop=_loop(4, 4, 100), seq_len=16, holdout=0.0)
    plain, _, _ = train_pose(clips, cfg, a2m_config("tiny"), tmp_path / "plain")
    assert float(plain.flow.exp_map.abs().max()) == 0.0 and torch.equal(plain.flow.spread, torch.ones(6))
    cond, _, _ = train_pose(clips, replace(cfg, condition_on_expression=True), a2m_config("tiny"),
                            tmp_path / "cond")
    assert float(cond.flow.exp_map.abs().max()) > 0.0
    axes = cond.flow.axes
    assert torch.allclose(axes.T @ axes, torch.eye(6), atol=1e-5)   # a rotation of z


def test_pose_refit_trains_every_clip_for_the_chosen_steps(corpus: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    clips = _clips(corpus)
    scores = iter([(1.0, 0.1), (0.5, 0.1), (0.2, 0.1), (0.1, 5.0)])   # (NLL, jitter) at steps 0 2 4, end (6)
    monkeypatch.setattr(train_pose_module, "heldout_scores", lambda *a, **k: next(scores))
    cfg = PoseTrainConfig(loop=_loop(6, 2), seq_len=8, eval_every=2)
    model, _, _ = train_pose(clips, cfg, a2m_config("tiny"), tmp_path / "a")
    info = model.train_info
    assert info["best_step"] == 4 and info["refit_steps"] == 4     # step 6 is too jittery
    assert checkpoints(tmp_path / "a" / "checkpoints" / "pose" / "refit")[-1][0] == 4
    plain, _, _ = train_pose(clips, replace(cfg, loop=_loop(4, 2), holdout=0.0),
                             a2m_config("tiny"), tmp_path / "b")
    for (k, a), (_, b) in zip(model.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), k


def test_pose_holdout_split_and_automatic_noise(corpus: Path) -> None:
    clips = _clips(corpus)
    assert all(c.identity == "" for c in clips)          # no identity column: one group per clip
    fit, held = holdout_split(clips, 0.25, 0)
    assert len(held) == 1 and len(fit) == 3 and not {c.clip_id for c in fit} & {c.clip_id for c in held}
    assert holdout_split(clips, 0.0, 0) == (list(clips), [])
    assert len(holdout_split(clips, 1.0, 0)[0]) == 1  # never all identities
    noise, scores = resolve_noise("auto", clips)
    assert noise in NOISE_GRID and scores[noise] == max(scores.values())
    assert resolve_noise(0.3, clips) == (0.3, {})


def _exp_inputs(clips: list[ClipData]) -> tuple[list[np.ndarray], torch.Tensor]:
    from edtalk.data.media import read_audio

    g = torch.Generator().manual_seed(0)
    proto = torch.randn(len(EMOTIONS), 384, generator=g)
    text = torch.stack([proto[c.label] for c in clips])
    return [read_audio(c.audio_path) for c in clips], text


def test_expression_loop_reduces_l1(corpus: Path, tmp_path: Path) -> None:
    clips = _clips(corpus)
    waves, text = _exp_inputs(clips)
    cfg = ExpressionTrainConfig(loop=_loop(30, 4, 100), crop_seconds=0.5)
    model, res = train_expression(clips, waves, text, cfg, SMALL_EXP, tmp_path)
    targets = torch.from_numpy(np.stack([c.exp.mean(0) for c in clips]))
    torch.manual_seed(0)
    fresh = SemanticExpression(SMALL_EXP).eval()
    wave = torch.from_numpy(np.stack(waves))
    with torch.no_grad():
        assert expression_loss(targets, model(wave, text)) < expression_loss(targets, fresh(wave, text))
        # Eq. 15: both single-modality paths work after training
        assert model(wave, None).shape == model(None, text).shape == (len(clips), 10)


@pytest.mark.parametrize("part", ["mouth", "pose", "expression"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(corpus: Path, tmp_path: Path, part: str) -> None:
    clips = _clips(corpus)

    def run(out: Path, stop_after: int | None) -> torch.nn.Module:
        if part == "mouth":
            return train_mouth(clips, MouthTrainConfig(loop=_loop(6)), a2m_config("tiny").mouth,
                               out, stop_after=stop_after)[0]
        if part == "pose":
            return train_pose(clips, PoseTrainConfig(loop=_loop(6, 2), seq_len=8, eval_every=2),
                              a2m_config("tiny"), out, stop_after=stop_after)[0]
        waves, text = _exp_inputs(clips)
        return train_expression(clips, waves, text, ExpressionTrainConfig(_loop(6, 2), 0.25),
                                SMALL_EXP, out, stop_after=stop_after)[0]

    whole = run(tmp_path / "whole", None)
    run(tmp_path / "crashed", 3)                     # checkpoint at step 2, step 3 lost
    resumed = run(tmp_path / "crashed", None)
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k


KILL_SCRIPT = """
import torch
torch.set_num_threads(1)
from edtalk.audio2motion import a2m_config
from edtalk.audio2motion.data import load_clips
from edtalk.audio2motion.params import LoopConfig, MouthTrainConfig
from edtalk.audio2motion.train_mouth import train_mouth
clips = load_clips({features!r}, {weights!r}, ("train",))
loop = LoopConfig(steps={steps}, batch=8, lr=3e-3, seed=0, checkpoint_every=1, keep_checkpoints=2, log_every=1)
train_mouth(clips, MouthTrainConfig(loop=loop), a2m_config("tiny").mouth, {out!r}, live_dir={live!r})
"""


@pytest.mark.slow
def test_kill_9_then_rerun_of_an_audio_stage_ends_with_the_uninterrupted_weights(corpus: Path,
                                                                                tmp_path: Path) -> None:

    steps, root = 300, Path(__file__).resolve().parents[1]
    cfg = MouthTrainConfig(loop=_loop(steps, 8, 1))      # as KILL_SCRIPT's
    killed, live = tmp_path / "killed", tmp_path / "live"
    script = KILL_SCRIPT.format(features=str(corpus / "features"), weights=str(corpus / "weights.parquet"),
                                steps=steps, out=str(killed), live=str(live))
    newest = run_and_kill(script, killed / "checkpoints" / "mouth", 5, cwd=root)
    assert 5 <= newest < steps, "killed too early or finished before the kill"
    clips = _clips(corpus)
    resumed, res = train_mouth(clips, cfg, a2m_config("tiny").mouth, killed, live_dir=live)
    assert res.resumed_from >= 5
    whole, _ = train_mouth(clips, cfg, a2m_config("tiny").mouth, tmp_path / "whole")
    for (k, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), k
    rows = (live / "plots" / "metrics" / "loss" / "fea.tsv").read_text().splitlines()[1:]
    assert [int(r.split("\t")[0]) for r in rows] == list(range(1, steps + 1))   # history without repeats


def test_fingerprint_change_restarts(corpus: Path, tmp_path: Path) -> None:
    clips = _clips(corpus)
    cfg = PoseTrainConfig(loop=_loop(2, 2), seq_len=8)
    train_pose(clips, cfg, a2m_config("tiny"), tmp_path, fingerprint="a")
    _, res, _ = train_pose(clips, replace(cfg, loop=_loop(4, 2)), a2m_config("tiny"), tmp_path,
                           fingerprint="a")
    assert res.resumed_from == 2
    _, res, _ = train_pose(clips, cfg, a2m_config("tiny"), tmp_path, fingerprint="b")
    assert res.resumed_from == 0


def test_audio_driver_round_trip(corpus: Path, tmp_path: Path) -> None:
    clips = _clips(corpus)
    torch.manual_seed(0)
    cfg = a2m_config("tiny")
    pose = AudioPose(cfg.mouth.encoder, cfg.pose)
    pose.flow.fit_normalization(torch.from_numpy(np.concatenate([c.pose for c in clips])))
    pose.flow.rho.fill_(0.5)
    pose.flow.exp_map.copy_(torch.randn(10, 6, generator=torch.Generator().manual_seed(0)))  # W^e offset
    save_mouth(tmp_path / "mouth.pt", AudioToMouth(cfg.mouth), "mfcc")
    save_pose(tmp_path / "pose.pt", pose, "mfcc")
    save_expression(tmp_path / "expression.pt", SemanticExpression(SMALL_EXP),
                        emotion_means(clips), "minilm")
    driver = AudioDriver.load(tmp_path)
    audio = (0.1 * np.random.default_rng(1).normal(size=16000)).astype(np.float32)
    out = driver.predict(audio, 25)
    assert {k: v.shape for k, v in out.items()} == {"mouth": (25, 20), "pose": (25, 6), "exp": (25, 10)}
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in out.values())
    again = driver.predict(audio, 25, pose_seed=0)
    other = driver.predict(audio, 25, pose_seed=1)
    np.testing.assert_array_equal(out["pose"], again["pose"])
    np.testing.assert_array_equal(out["mouth"], again["mouth"])
    assert np.abs(out["pose"] - other["pose"]).max() > 1e-4
    happy = driver.predict(audio, 10, emotion=EMOTIONS[0])
    np.testing.assert_allclose(happy["exp"][3], emotion_means(clips)[0].numpy(), rtol=1e-6)
    # the pose's latent offset follows the clip's W^e: same seed, other emotion, other pose
    known = [e for k, e in enumerate(EMOTIONS) if not torch.isnan(emotion_means(clips)[k]).any()]
    a, b = (driver.predict(audio, 10, emotion=e, pose_seed=0)["pose"] for e in known[:2])
    assert np.abs(a - b).max() > 1e-3
    assert torch.equal(driver.pose.flow.exp_map, pose.flow.exp_map)
    assert float(pose.flow.rho[0]) == pytest.approx(float(driver.pose.flow.rho[0]))
    with pytest.raises(ValueError):
        driver.predict(audio, 10, emotion="bored")
    with pytest.raises(FileNotFoundError):
        AudioDriver.load(tmp_path / "nowhere")


@pytest.mark.slow
def test_flows_end_to_end(corpus: Path, tmp_path: Path, prefect_harness) -> None:
    """extract_weights -> the three training flows -> evaluation, on the tiny corpus."""
    import json

    from pipeline.evaluate_audio2motion import evaluate_audio2motion
    from pipeline.extract_weights import extract_weights
    from pipeline.train_audio2exp import train_audio2exp
    from pipeline.train_audio2mouth import train_audio2mouth
    from pipeline.train_audio2pose import train_audio2pose
    from tests.pipeline_params import tiny_params

    params = tiny_params()
    sec = params["audio2motion"]
    sec["edtalk_checkpoint"] = str(corpus / "model.pt")
    sec["syncnet"] = str(tmp_path / "absent.pt")
    for part in ("mouth", "pose", "expression"):
        sec[part].update(steps=4, batch=4)
    sec["pose"]["seq_len"] = 8
    sec["expression"].update(crop_seconds=0.5, text_backend="minilm")
    weights = tmp_path / "weights.parquet"
    extract_weights(params, str(corpus / "features"), None, str(weights))
    assert pq.read_table(weights).schema.equals(weights_cache.WEIGHTS)
    kw = dict(features_dir=str(corpus / "features"), weights=str(weights), out_dir=str(tmp_path / "m"))
    train_audio2mouth(params, live_dir=str(tmp_path / "live_m"), **kw)
    train_audio2pose(params, live_dir=str(tmp_path / "live_p"), **kw)
    train_audio2exp(params, crop_dir=str(corpus / "crop"), live_dir=str(tmp_path / "live_e"), **kw)
    assert (tmp_path / "live_p" / "metrics.json").exists()
    report = tmp_path / "a2m.json"
    evaluate_audio2motion(params, str(corpus / "features"), str(corpus / "crop"), str(weights),
                          str(tmp_path / "m"), str(report))
    out = json.loads(report.read_text())
    assert {"pose", "expression", "mouth"} <= set(out)
    driver = AudioDriver.load(tmp_path / "m")
    pred = driver.predict(np.zeros(8000, np.float32), 12, transcript="I am so happy")
    assert pred["exp"].shape == (12, 10)


def test_rendered_expression_check_reads_each_mode_through_the_generator(corpus: Path) -> None:
    """The ground-truth W^e mode renders exactly the clip's own weights; a classifier that
    recognises those renders scores 1 on it and 0 on the identity's own weights."""
    from edtalk import generate as gen
    from edtalk.evaluation.audio2motion import evaluate_expression_rendered
    from edtalk.model import load_checkpoint

    model, _ = load_checkpoint(corpus / "model.pt")
    model.eval()
    test = _clips(corpus, ("test",))
    px = PixelCache(corpus / "features" / "pixels.npy")
    identities = [px[int(c.pixel_index[0])] for c in test]
    idx = np.linspace(0, len(test[0]) - 1, 4).round().astype(int)
    truth = [gen.generate(model, ident, mouth=c.mouth[idx], pose=c.pose[idx], exp=c.exp[idx]).frames
             for c, ident in zip(test, identities)]

    class Driver:             # predicts the train-free constant W^e = 0
        def expression(self, audio, text):
            return torch.zeros(1, 10)

    def classify(frames: np.ndarray) -> int:
        match = [k for k, t in enumerate(truth) if np.array_equal(t, frames)]
        return test[match[0]].label if match else -1

    out = evaluate_expression_rendered(model, Driver(), test, [np.zeros(800, np.float32)] * len(test),
                                       torch.zeros(len(test), 384), identities, classify, n_frames=4)
    assert out["accuracy_gt_weights"] == 1.0
    assert out["accuracy_identity_own"] == 0.0 and out["accuracy_audio+text"] == 0.0
    assert out["clips"] == len(test) and out["chance"] == 1 / len(EMOTIONS)
