"""The `edtalk generate` command on a real photo, a driving video made from it, and speech."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from edtalk import cli
from edtalk import generate as gen
from edtalk.audio2motion import driver as audio_driver
from edtalk.audio2motion.audio_pose import AudioPose
from edtalk.audio2motion.config import a2m_config
from edtalk.audio2motion.model_files import save_expression, save_mouth, save_pose
from edtalk.audio2motion.mouth import AudioToMouth
from edtalk.audio2motion.semantic_expression import SemanticExpression
from edtalk.data import media
from edtalk.data.schema import EMOTIONS
from edtalk.model import EDTalk, profile, save_checkpoint

from test_generate import StandInDriver

torch.set_num_threads(1)
N_VIDEO = 15


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from skimage import data

    d = tmp_path_factory.mktemp("cli")
    photo = data.astronaut()                                      # 512 x 512 RGB, one face
    cv2.imwrite(str(d / "face.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    # a driving video from the photo: 320 x 256, the face drifting and nodding a little
    frames = []
    for t in range(N_VIDEO):
        m = cv2.getRotationMatrix2D((230, 130), 4 * np.sin(t / 3), 1.0)
        m[:, 2] += (3 * t, np.sin(t / 2) * 4)
        frames.append(cv2.resize(cv2.warpAffine(photo, m, (512, 512), borderMode=cv2.BORDER_REFLECT),
                                 (320, 320))[32:288])
    speech = (0.2 * np.sin(2 * np.pi * 180 * np.arange(int(16000 * N_VIDEO / 25)) / 16000)).astype(np.float32)
    media.write_video(d / "drive.mp4", np.stack(frames), audio=speech)
    long_speech = np.tile(speech, 2)[: int(16000 * 1.03)]        # 1.03 s -> 26 frames
    media.write_wav(d / "speech.wav", long_speech)
    torch.manual_seed(0)
    save_checkpoint(d / "model.pt", EDTalk(profile("tiny")).eval())
    return {"dir": d, "photo": d / "face.png", "video": d / "drive.mp4", "speech": d / "speech.wav",
            "ckpt": d / "model.pt"}


def _check_mp4(path: Path, n_frames: int, with_audio: bool = True) -> None:
    info = media.probe(path)
    frames, fps = media.read_frames(path)
    assert frames.shape == (n_frames, 64, 64, 3) and fps == 25
    assert info.has_audio == with_audio
    if with_audio:
        assert abs(len(media.read_audio(path)) - n_frames * 640) <= 1024   # AAC frame granularity


def test_photo_and_driving_video_make_a_playable_mp4_with_sound(assets, tmp_path, capsys) -> None:
    out = tmp_path / "out.mp4"
    rc = cli.main(["generate", "--identity", str(assets["photo"]), "--mouth-video", str(assets["video"]),
                   "--pose-video", str(assets["video"]), "--expression-video", str(assets["video"]),
                   "--out", str(out), "--checkpoint", str(assets["ckpt"]), "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    _check_mp4(out, N_VIDEO)                       # the mouth video's sound, its length
    assert "with audio" in capsys.readouterr().out


def test_the_mouth_gain_comes_from_the_checkpoint_unless_given(assets, tmp_path) -> None:
    gained = tmp_path / "gained.pt"
    save_checkpoint(gained, EDTalk(profile("tiny")).eval(), mouth_gain=1.7)
    common = ["--identity", str(assets["photo"]), "--mouth-video", str(assets["video"]), "--threads", "1"]
    own = cli.run_generate(cli.build_parser().parse_args(
        ["generate", *common, "--out", str(tmp_path / "a.mp4"), "--checkpoint", str(gained)]))
    plain = cli.run_generate(cli.build_parser().parse_args(
        ["generate", *common, "--out", str(tmp_path / "b.mp4"), "--checkpoint", str(gained), "--mouth-gain", "1"]))
    assert own["mouth_gain"] == 1.7 and plain["mouth_gain"] == 1.0
    assert not np.array_equal(media.read_frames(tmp_path / "a.mp4")[0], media.read_frames(tmp_path / "b.mp4")[0])


def test_identity_photo_is_cropped_to_the_face(assets) -> None:
    face = cli.load_identity(assets["photo"], 64)
    assert face.shape == (64, 64, 3)
    # skin fills the crop's centre: far redder than blue (the photo's background and suit are not)
    centre = face[24:40, 24:40].reshape(-1, 3).mean(0)
    assert centre[0] > centre[2] + 20


def test_audio_with_a_stand_in_driver_and_pose_from_video(assets, tmp_path, monkeypatch, capsys) -> None:
    driver = StandInDriver()
    monkeypatch.setattr(audio_driver, "load_audio_driver", lambda path: driver)
    out = tmp_path / "a.mp4"
    rc = cli.main(["generate", "--identity", str(assets["photo"]), "--audio", str(assets["speech"]),
                   "--text", "what a lovely day", "--emotion", "happy", "--pose-video", str(assets["video"]),
                   "--pose-seed", "7", "--out", str(out), "--checkpoint", str(assets["ckpt"])])
    assert rc == 0, capsys.readouterr().err
    _check_mp4(out, 26)                            # the audio decides the length; the pose video holds
    assert driver.calls[-1] == dict(n_frames=26, transcript="what a lovely day", pose_seed=7, emotion="happy")


def test_audio_with_the_real_audio_driver(assets, tmp_path) -> None:
    """The command loads the three audio model files itself (random tiny predictors here)."""
    models = tmp_path / "audio2motion"
    models.mkdir()
    torch.manual_seed(0)
    cfg = a2m_config("tiny")
    save_mouth(models / "mouth.pt", AudioToMouth(cfg.mouth), "mfcc")
    save_pose(models / "pose.pt", AudioPose(cfg.mouth.encoder, cfg.pose), "mfcc")
    save_expression(models / "expression.pt", SemanticExpression(cfg.expression),
                    torch.zeros(len(EMOTIONS), cfg.expression.n_weights), "minilm")
    out = tmp_path / "real.mp4"
    rc = cli.main(["generate", "--identity", str(assets["photo"]), "--audio", str(assets["speech"]),
                   "--out", str(out), "--checkpoint", str(assets["ckpt"]), "--audio-models", str(models)])
    assert rc == 0
    info = media.probe(out)
    assert info.has_audio and abs(info.frames - 26) <= 1


def test_missing_checkpoint_names_the_file_and_the_stage(assets, tmp_path, capsys) -> None:
    missing = tmp_path / "models" / "train_expression" / "model.pt"
    rc = cli.main(["generate", "--identity", str(assets["photo"]), "--mouth-video", str(assets["video"]),
                   "--out", str(tmp_path / "x.mp4"), "--checkpoint", str(missing)])
    err = capsys.readouterr().err
    assert rc == 2 and str(missing) in err and "train_expression" in err and "dvc repro" in err
    assert not (tmp_path / "x.mp4").exists()


def test_missing_audio_models_and_bad_usage_are_clear(assets, tmp_path, capsys) -> None:
    rc = cli.main(["generate", "--identity", str(assets["photo"]), "--audio", str(assets["speech"]),
                   "--out", str(tmp_path / "x.mp4"), "--checkpoint", str(assets["ckpt"]),
                   "--audio-models", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert rc == 2 and "nowhere" in err and "audio2motion" in err
    if Path("edtalk/audio2motion/driver.py").is_file():      # a folder without the model files
        (tmp_path / "empty").mkdir()
        rc = cli.main(["generate", "--identity", str(assets["photo"]), "--audio", str(assets["speech"]),
                       "--out", str(tmp_path / "x.mp4"), "--checkpoint", str(assets["ckpt"]),
                       "--audio-models", str(tmp_path / "empty")])
        err = capsys.readouterr().err
        assert rc == 2 and "mouth.pt" in err and "train_audio2mouth" in err
    rc = cli.main(["generate", "--identity", str(assets["photo"]), "--out", str(tmp_path / "x.mp4"),
                   "--checkpoint", str(assets["ckpt"])])
    assert rc == 2 and "at least one source" in capsys.readouterr().err
    rc = cli.main(["generate", "--identity", str(assets["photo"]), "--mouth-video", str(assets["video"]),
                   "--emotion", "happy", "--out", str(tmp_path / "x.mp4"), "--checkpoint", str(assets["ckpt"])])
    assert rc == 2 and "need --audio" in capsys.readouterr().err


def test_official_checkpoint_layout_is_accepted(tmp_path) -> None:
    import json

    from edtalk.model.checkpoint import random_state_from_layout

    ref = Path(__file__).resolve().parent / "reference" / "official_state_dict_EDTalk.json"
    if not ref.is_file():
        pytest.skip("reference layout not available")
    state = random_state_from_layout(json.loads(ref.read_text())["state_dict"], seed=0)
    torch.save({"gen": state}, tmp_path / "EDTalk.pt")
    model = gen.load_model(tmp_path / "EDTalk.pt")
    assert model.cfg.size == 256 and gen.model_factors(model) == ("mouth", "pose", "exp")


@pytest.mark.slow
def test_console_script_runs(assets, tmp_path) -> None:
    out = tmp_path / "s.mp4"
    subprocess.run([sys.executable, "-m", "edtalk.cli", "generate", "--identity", str(assets["photo"]),
                    "--mouth-video", str(assets["video"]), "--out", str(out), "--checkpoint", str(assets["ckpt"])],
                   check=True, timeout=300)
    _check_mp4(out, N_VIDEO)
