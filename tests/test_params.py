"""params.yaml resolution: one profile switch for every section (edtalk.params)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from edtalk.model import profile as model_profile
from edtalk.params import PROFILES, load_params, section
from edtalk.train import run_stage, stage_config
from tests.test_train_data import make_features
from tests.test_train_loop import SMALL

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params(ROOT / "params.yaml")


def with_profile(params: dict, name: str) -> dict:
    out = copy.deepcopy(params)
    out["base"]["profile"] = name
    return out


def test_profile_overrides_merge_nested_maps_and_replace_the_rest() -> None:
    raw = {"base": {"profile": "paper"},
           "s": {"a": 1, "nested": {"x": 1, "y": 2}, "items": [1, 2],
                 "profiles": {"paper": {"nested": {"y": 3}, "items": [4]}}}}
    assert section(raw, "s") == {"a": 1, "nested": {"x": 1, "y": 3}, "items": [4]}
    raw["base"]["profile"] = "tiny"
    assert section(raw, "s") == {"a": 1, "nested": {"x": 1, "y": 2}, "items": [1, 2]}
    assert "profiles" in raw["s"] and raw["s"]["nested"] == {"x": 1, "y": 2}   # input untouched
    raw["base"]["profile"] = "huge"
    with pytest.raises(ValueError, match="base.profile"):
        section(raw, "s")


@pytest.mark.parametrize("name", PROFILES)
def test_crop_size_follows_the_profile_to_the_model_size(params, name) -> None:
    p = with_profile(params, name)
    assert int(section(p, "crop")["size"]) == model_profile(name).size


def test_paper_profile_switches_training_and_audio_budgets(params) -> None:
    tiny, paper = params, with_profile(params, "paper")
    ae = stage_config(paper, "autoencoder")
    assert (ae.steps, ae.lr, ae.betas, ae.pretrained, ae.pairs) == (200000, 0.002, (0.0, 0.99), None, "clip")
    assert ae.perceptual.slice_weight == 10.0 and ae.perceptual.norm == "l1" and ae.weights.adv == 1.0
    assert ae.weights.mot == 10.0                                  # kept from the shared weights
    assert stage_config(tiny, "autoencoder").steps == 1000
    assert section(paper, "audio2motion")["mouth"]["steps"] == 100000
    assert section(tiny, "audio2motion")["mouth"]["steps"] == params["audio2motion"]["mouth"]["steps"]


def test_training_refuses_features_at_another_size_than_the_model(tmp_path) -> None:
    features = make_features(tmp_path / "features")
    cfg = stage_config({"base": {"seed": 0}, "train": {}}, "autoencoder", steps=1, batch=2,
                       model_overrides={**SMALL, "size": 2 * SMALL["size"]})
    with pytest.raises(ValueError, match="px crops but the model is"):
        run_stage(cfg, features, tmp_path / "models", None)
