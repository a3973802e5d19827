"""The three training flows end to end (in-process Prefect) on a small model and corpus."""

from __future__ import annotations

import json

import pytest
import torch

from tests.test_train_data import make_features
from tests.test_train_loop import SMALL


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_flows_train_resume_and_write_models_and_dvclive(tmp_path, prefect_harness, capsys):
    from pipeline.train_autoencoder import train_autoencoder
    from pipeline.train_expression import train_expression
    from pipeline.train_mouth_pose import train_mouth_pose

    features = make_features(tmp_path / "features")
    stage = {"steps": 2, "batch": 2, "checkpoint_every": 1, "model_overrides": SMALL}
    params = {"base": {"seed": 0, "profile": "tiny"},
              "train": {"perceptual": {"network": "image_gradients", "scales": 2}, "val_frames": 4,
                        "autoencoder": stage, "mouth_pose": stage,
                        "expression": {**stage, "window": 3, "aux_steps": 3,
                                       "emotion_checkpoint": str(tmp_path / "absent.pt")}}}
    dirs = dict(features_dir=str(features), models_dir=str(tmp_path / "models"),
                live_dir=str(tmp_path / "dvclive"))
    summaries = [f(params, **dirs) for f in (train_autoencoder, train_mouth_pose, train_expression)]
    assert [s["step"] for s in summaries] == [2, 2, 2]
    assert summaries[2]["mot_networks"] == ["landmarks:corpus-regressor", "emotion:corpus-head"]
    for name in ("train_autoencoder", "train_mouth_pose", "train_expression"):
        assert (tmp_path / "models" / name / "model.pt").is_file()
        metrics = json.loads((tmp_path / "dvclive" / name / "metrics.json").read_text())
        assert metrics["step"] == 2 and "rec" in metrics["loss"] and "val/l1" not in metrics
        assert metrics["val"]["l1_still_identity"] > 0
    assert "train_expression: stage=expression" in capsys.readouterr().out
    # a re-run with a larger budget resumes from the last checkpoint
    params["train"]["expression"]["steps"] = 3
    again = train_expression(params, **dirs)
    assert again["resumed_from"] == 2 and again["step"] == 3
