"""edtalk.generate: per-factor sources, the fast path against model.forward, lengths, mp4 output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edtalk import generate as gen
from edtalk.data import media
from edtalk.model import EDTalk, prepare_identity, profile

torch.set_num_threads(1)


def _model(double: bool = False, **kw) -> EDTalk:
    torch.manual_seed(0)
    m = EDTalk(profile("tiny", **kw)).eval()
    with torch.no_grad():                       # non-zero biases exercise every bias path
        for n, p in m.named_parameters():
            if n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return m.double() if double else m


def _frames(n: int, seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


class StandInDriver:
    """The AudioDriver interface with deterministic, audio-dependent weights."""

    def __init__(self, n_mouth: int = 20, n_pose: int = 6, n_exp: int = 10) -> None:
        self.sizes = {"mouth": n_mouth, "pose": n_pose, "exp": n_exp}
        self.calls: list[dict] = []

    def predict(self, audio, n_frames, transcript=None, pose_seed=0, temperature=1.0, emotion=None):
        self.calls.append(dict(n_frames=n_frames, transcript=transcript, pose_seed=pose_seed, emotion=emotion))
        rng = np.random.default_rng(0 if pose_seed is None else pose_seed)
        energy = np.array([np.abs(c).mean() for c in np.array_split(audio, n_frames)], np.float32)
        return {k: (rng.normal(size=(n_frames, n)) * 0.5 + energy[:, None]).astype(np.float32)
                for k, n in self.sizes.items()}


@pytest.mark.parametrize("case", ["one_video", "three_videos"])
def test_fast_path_equals_model_forward_per_frame(case: str) -> None:
    m = _model(double=True)
    ident_img, a = _frames(1, 1)[0], _frames(3, 2)
    b, c = (a, a) if case == "one_video" else (_frames(2, 3), _frames(1, 4))  # unequal: hold last
    ident = prepare_identity(m, gen.to_tensor(ident_img, 64, torch.float64))
    w = gen.factor_weights(m, ident, {"mouth": a, "pose": b, "exp": c}, 3, batch_size=2)
    fast = torch.cat(list(gen.decode_weights(m, ident, w, batch_size=2)))
    x = lambda f, i: gen.to_tensor(f[min(i, len(f) - 1)], 64, torch.float64)  # noqa: E731
    with torch.no_grad():
        ref = torch.cat([m(x(ident_img[None], 0), x(a, i), x(b, i), x(c, i)) for i in range(3)])
    assert fast.shape == ref.shape == (3, 3, 64, 64)
    assert (fast - ref).abs().max().item() < 1e-9


def test_one_encoder_pass_per_frame_when_one_video_drives_all() -> None:
    m = _model()
    seen: list[int] = []
    handle = m.enc.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].shape[0]))
    try:
        v = _frames(6, 2)
        gen.generate(m, _frames(1, 1)[0], mouth=v, pose=v, exp=v, batch_size=4)
        assert sum(seen) == 1 + 6                  # the identity once, each frame once
        seen.clear()
        gen.generate(m, _frames(1, 1)[0], mouth=v, pose=_frames(6, 3), exp=_frames(6, 4), batch_size=4)
        assert sum(seen) == 1 + 3 * 6 and len(seen) == 1 + 2   # distinct videos share one E call per chunk
    finally:
        handle.remove()


def test_missing_sources_keep_the_identitys_own_weights() -> None:
    m = _model()
    out = gen.generate(m, _frames(1, 1)[0], mouth=_frames(4, 2))
    for k in ("pose", "exp"):
        np.testing.assert_array_equal(out.weights[k], np.repeat(out.own[k], 4, axis=0))
    assert not np.allclose(out.weights["mouth"], out.own["mouth"])
    # nothing but the length: the identity's own reconstruction, every frame the same
    still = gen.generate(m, _frames(1, 1)[0], n_frames=3)
    assert (still.frames == still.frames[:1]).all()
    # the identity's own weights given explicitly render the same frames as no source
    own = gen.generate(m, _frames(1, 1)[0], mouth=np.repeat(still.own["mouth"], 3, 0), n_frames=3)
    np.testing.assert_array_equal(own.frames, still.frames)


def test_weight_sources_render_like_the_video_they_came_from() -> None:
    m = _model()
    v = _frames(4, 2)
    by_video = gen.generate(m, _frames(1, 1)[0], mouth=v, pose=v, exp=v)
    by_weights = gen.generate(m, _frames(1, 1)[0], **by_video.weights)
    np.testing.assert_array_equal(by_video.frames, by_weights.frames)


def test_lengths_hold_or_loop() -> None:
    m = _model()
    mouth, pose = _frames(5, 2), _frames(3, 3)
    held = gen.generate(m, _frames(1, 1)[0], mouth=mouth, pose=pose)
    assert len(held.frames) == 5
    np.testing.assert_allclose(held.weights["pose"][3:], np.repeat(held.weights["pose"][2:3], 2, 0))
    looped = gen.generate(m, _frames(1, 1)[0], mouth=mouth, pose=pose, fit="loop", n_frames=7)
    assert len(looped.frames) == 7
    np.testing.assert_allclose(looped.weights["pose"][3:6], looped.weights["pose"][0:3], atol=1e-6)
    np.testing.assert_allclose(looped.weights["mouth"][5:7], looped.weights["mouth"][0:2], atol=1e-6)


def test_bad_sources_are_refused() -> None:
    m = _model()
    with pytest.raises(ValueError, match=r"mouth weights must be \(T, 20\)"):
        gen.generate(m, _frames(1, 1)[0], mouth=np.zeros((3, 7), np.float32))
    with pytest.raises(ValueError, match="nothing says how long"):
        gen.generate(m, _frames(1, 1)[0])
    with pytest.raises(ValueError, match="no exp bank"):
        gen.generate(_model(with_expression=False), _frames(1, 1)[0], exp=_frames(2, 2))


def test_writes_playable_mp4_with_audio_of_the_right_length(tmp_path) -> None:
    m = _model()
    audio = (0.1 * np.sin(np.arange(int(16000 * 0.9)) / 5)).astype(np.float32)   # 0.9 s -> 23 frames
    n = gen.frames_for_audio(len(audio))
    out = gen.generate(m, _frames(1, 1)[0], mouth=_frames(10, 2), n_frames=n)
    gen.write(tmp_path / "o.mp4", out.frames, audio)
    frames, fps = media.read_frames(tmp_path / "o.mp4")
    assert frames.shape == (n, 64, 64, 3) and fps == 25
    back = media.read_audio(tmp_path / "o.mp4")
    assert abs(len(back) - n * 640) <= 1024          # AAC frame granularity


def test_edtalk_a_sources_from_a_stand_in_driver() -> None:
    m = _model()
    drv = StandInDriver()
    audio = np.random.default_rng(0).normal(size=16000).astype(np.float32) * 0.1
    n = gen.frames_for_audio(len(audio))
    src = gen.audio_sources(drv, audio, n, transcript="hello", pose_seed=3)
    assert drv.calls[-1] == dict(n_frames=25, transcript="hello", pose_seed=3, emotion=None)
    out = gen.generate(m, _frames(1, 1)[0], n_frames=n, **src)
    np.testing.assert_array_equal(out.weights["mouth"], src["mouth"])
    assert out.frames.shape == (25, 64, 64, 3)
    video = _frames(25, 5)                          # mixed: pose from a video, the rest from audio
    mixed = gen.audio_sources(drv, audio, n, pose=video)
    assert mixed["pose"] is video and mixed["mouth"].shape == (25, 20)
    assert src["exp"] is not None                   # a lip/pose model gets no predicted expression
    assert gen.audio_sources(drv, audio, n, factors=("mouth", "pose"))["exp"] is None


@pytest.mark.slow    # the Prefect test server's start-up dominates (~60 s alone)
def test_generate_stage_writes_every_test_clip_with_its_audio(tmp_path, prefect_harness, monkeypatch) -> None:
    import pandas as pd

    import pipeline.generate as pipeline_generate
    from pipeline.generate import generate as generate_flow

    clips = tmp_path / "crop" / "clips"
    rows = []
    for i, (ident, split, n) in enumerate([("a", "test", 6), ("a", "test", 8), ("b", "test", 5), ("c", "train", 4)]):
        cid = f"{ident}_c{i}"
        audio = (0.1 * np.sin(np.arange(n * 640) / (3 + i))).astype(np.float32)
        media.write_video(clips / f"{cid}.mp4", _frames(n, 10 + i), audio=audio)
        media.write_wav(clips / f"{cid}.wav", audio)
        rows.append(dict(clip_id=cid, identity=ident, split=split, frames=n, transcript="hi"))
    (tmp_path / "features").mkdir()
    pd.DataFrame(rows).to_parquet(tmp_path / "features" / "clips.parquet")
    from edtalk.model import save_checkpoint

    save_checkpoint(tmp_path / "model.pt", _model())
    params = {"base": {"seed": 0}, "generate": {
        "split": "test", "methods": ["EDTalk-V", "EDTalk-A"], "checkpoint": str(tmp_path / "model.pt"),
        "audio_models": str(tmp_path / "no_audio_models"), "batch_size": 4, "threads": 1, "fit": "hold",
        "pose_seed": 0, "temperature": 1.0}}
    run = generate_flow(params, str(tmp_path / "features"), str(tmp_path / "crop"), str(tmp_path / "gen"))
    assert list(run["methods"]) == ["EDTalk-V"]                 # no audio models: EDTalk-A skipped
    out = tmp_path / "gen" / "EDTalk-V"
    assert sorted(p.name for p in out.glob("*.mp4")) == ["a_c0.mp4", "a_c1.mp4", "b_c2.mp4"]
    for cid, n in [("a_c0", 6), ("a_c1", 8), ("b_c2", 5)]:
        frames, _ = media.read_frames(out / f"{cid}.mp4")
        assert len(frames) == n and media.probe(out / f"{cid}.mp4").has_audio
        assert len(media.read_audio(out / f"{cid}.wav")) == n * 640
    assert (tmp_path / "gen" / "run.json").is_file()
    # with audio models (a stand-in driver), EDTalk-A joins: length = the audio's
    (tmp_path / "a2m").mkdir()
    monkeypatch.setattr(pipeline_generate, "load_audio_driver", lambda path: StandInDriver())
    params["generate"]["audio_models"] = str(tmp_path / "a2m")
    run = generate_flow(params, str(tmp_path / "features"), str(tmp_path / "crop"), str(tmp_path / "gen"))
    assert list(run["methods"]) == ["EDTalk-V", "EDTalk-A"]
    frames, _ = media.read_frames(tmp_path / "gen" / "EDTalk-A" / "a_c1.mp4")
    assert len(frames) == 8


def test_disentangle_reader_and_table() -> None:
    import pandas as pd

    from edtalk.evaluation import disentangle as dis

    rng = np.random.default_rng(0)
    base = rng.normal(size=(68, 2)) * 10 + 32
    base[36], base[45] = (20, 30), (44, 30)                   # eye corners: inter-ocular 24 px
    n = 400
    yaw, opening = rng.uniform(-10, 10, n), rng.uniform(0, 1, n)
    lm = np.repeat(base[None], n, 0)
    lm[:, 30, 0] += 0.3 * yaw                                 # nose tip moves with yaw
    lm[:, 57, 1] += 6 * opening                               # lower lip with the mouth opening
    code = dis.expression_code(["happy"] * (n // 2) + ["neutral"] * (n // 2), [3] * n)
    lm[:, 21, 1] -= 4 * code[:, dis.EXPRESSIVE.index("happy")]
    targets = {"pose": np.c_[yaw, 0 * yaw, 0 * yaw], "mouth": np.c_[opening, 0 * opening], "exp": code}
    reader = dis.FactorReader.fit(lm, targets)
    est = reader(lm)
    assert np.abs(est["pose"][:, 0] - yaw).max() < 0.05 and np.abs(est["mouth"][:, 0] - opening).max() < 0.01
    assert np.abs(est["exp"] - code).max() < 0.01
    rows = [dict(model="m", identity_clip="a", source_clip="b", swapped=s, factor=f,
                 err_source=0.1 if s == f else 1.0, err_identity=1.0 if s == f else 0.1)
            for s in dis.FACTORS for f in dis.FACTORS]
    t = dis.table(pd.DataFrame(rows))
    assert list(t.index) == ["m: pose source", "m: mouth source", "m: exp source"]
    assert t.loc["m: pose source", "pose vs source"] == 0.1 and dis.verdict(pd.DataFrame(rows))["holds"].all()


def test_disentangle_gain_ignores_offsets_and_orders_reference_rows_last() -> None:
    import pandas as pd

    from edtalk.evaluation import disentangle as dis

    t = np.linspace(0, 1, 30)
    target = np.c_[np.sin(6 * t), np.cos(4 * t)]
    assert abs(dis.factor_gain(0.5 * target + 7.0, target) - 0.5) < 1e-9     # half the motion, any offset
    assert abs(dis.factor_gain(np.c_[t, t] * 0 + 3.0, target)) < 1e-12       # a still output: no gain
    assert np.isnan(dis.factor_gain(target, np.ones_like(target)))          # a still source: undefined
    rows = [dict(model=m, identity_clip="a", source_clip="b", swapped=s, factor=f, err_source=1.0,
                 err_identity=1.0, gain=1.0 if s == f else 0.0)
            for m in ("floor (real source frames)", "ideal (rendered swap)", "m") for s in dis.FACTORS
            for f in dis.FACTORS]
    g = dis.gain_table(pd.DataFrame(rows))
    assert list(g.columns) == ["pose gain", "mouth gain"]
    assert list(g.index[:3]) == ["m: pose source", "m: mouth source", "m: exp source"]
    assert g.index[3].startswith("ideal") and g.index[-1].startswith("floor")
    assert g.loc["m: mouth source", "mouth gain"] == 1.0 and g.loc["m: mouth source", "pose gain"] == 0.0
    assert dis.table(pd.DataFrame(rows)).index[-1].startswith("floor")


class _TwoClipCorpus:
    """Just what the disentangle scorers read: clip info and frames of two clips."""

    def __init__(self) -> None:
        import pandas as pd

        self.clips = pd.DataFrame({"clip_id": ["a", "b"], "emotion": ["happy", "sad"]})

    def info(self, clip_id: str):
        return self.clips.set_index("clip_id").loc[clip_id]

    def frames(self, clip_id: str, n: int) -> np.ndarray:
        return np.full((n, 4, 4, 3), 200 if clip_id == "b" else 50, np.uint8)


def test_disentangle_emotion_and_pixel_scores() -> None:
    from edtalk.data.schema import EMOTIONS
    from edtalk.evaluation import disentangle as dis

    corpus = _TwoClipCorpus()
    dark, bright = np.full((3, 4, 4, 3), 50, np.uint8), np.full((3, 4, 4, 3), 200, np.uint8)

    def classify(frames: np.ndarray) -> np.ndarray:          # bright faces read "sad", dark "happy"
        logp = np.full(len(EMOTIONS), -5.0)
        logp[EMOTIONS.index("sad" if frames.mean() > 128 else "happy")] = -0.1
        return logp

    outputs = {("a", "b", "pose"): dark, ("a", "b", "exp"): bright, ("a", "b", "still"): dark}
    r = dis.emotion_run(outputs, classify, corpus, "m").set_index(["model", "swapped"])
    assert r.loc[("m", "exp"), "emotion_shift"] == pytest.approx(4.9) and r.loc[("m", "exp"), "reads_source"]
    assert r.loc[("m", "pose"), "emotion_shift"] == pytest.approx(-4.9) and r.loc[("m", "pose"), "reads_identity"]
    assert r.loc[("floor (real source frames)", "exp"), "emotion_shift"] == pytest.approx(4.9)
    t = dis.emotion_table(r.reset_index())
    assert t.index[-1].startswith("floor") and len(t) == 4
    targets = {("a", "b", "pose"): dark, ("a", "b", "exp"): dark, ("a", "b", "still"): dark}
    p = dis.pixel_run({("a", "b", "exp"): bright}, targets, "m").iloc[0]
    assert (p["err_target"], p["err_still"], p["still_err_target"]) == (150.0, 150.0, 0.0)


def test_the_disentangle_landmarker_reads_each_video_once() -> None:
    from edtalk.evaluation.disentangle_report import MemoLandmarker

    calls = []

    def landmarker(frames):
        calls.append(frames)
        return np.full((len(frames), 68, 2), float(frames.mean())), np.ones(len(frames), bool)

    memo = MemoLandmarker(landmarker)
    a, b = _frames(3, 1), _frames(3, 2)
    first = memo(a)
    assert memo(a) is first and len(calls) == 1                       # the same array: read once
    np.testing.assert_array_equal(memo(b)[0], landmarker(b)[0])       # another array: read anew
    assert memo(a.copy())[0][0, 0, 0] == first[0][0, 0, 0] and len(calls) == 4
