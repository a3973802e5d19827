"""Loading the released checkpoint layouts, round-tripping ours, refusing mismatches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edtalk.model import CheckpointMismatch, EDTalk, load_checkpoint, load_official, profile, save_checkpoint
from edtalk.model.checkpoint import random_state_from_layout
from edtalk.model.discriminator import Discriminator

REF = Path(__file__).resolve().parent / "reference"


def _layout(name: str) -> list[dict]:
    return json.loads((REF / f"official_state_dict_{name}.json").read_text())["state_dict"]


@pytest.fixture(scope="module")
def official_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    state = random_state_from_layout(_layout("EDTalk"), seed=1)
    path = tmp_path_factory.mktemp("ckpt") / "EDTalk.pt"
    torch.save({"gen": state}, path)
    return path, state


def test_official_layout_loads_strictly_with_every_value(official_file) -> None:
    path, state = official_file
    model = load_official(path)
    assert model.cfg.with_expression and model.cfg.size == 256
    ours = model.state_dict()
    assert list(ours) == [e["key"] for e in _layout("EDTalk")]     # same keys, same order
    assert all(torch.equal(ours[k], v) for k, v in state.items())


def test_official_weights_round_trip_through_our_checkpoint(official_file, tmp_path: Path) -> None:
    path, state = official_file
    model = load_official(path)
    save_checkpoint(tmp_path / "ours.pt", model, step=7)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]      # no partial left
    again, extra = load_checkpoint(tmp_path / "ours.pt")
    assert extra["step"] == 7 and again.cfg == model.cfg
    assert all(torch.equal(again.state_dict()[k], v) for k, v in state.items())
    same, _ = load_checkpoint(path)                                # our loader takes the official file too
    assert all(torch.equal(same.state_dict()[k], v) for k, v in state.items())


def test_lip_pose_layout_loads_without_expression_parts(tmp_path: Path) -> None:
    path = tmp_path / "EDTalk_lip_pose.pt"
    torch.save({"gen": random_state_from_layout(_layout("EDTalk_lip_pose"))}, path)
    model = load_official(path)
    assert not model.cfg.with_expression
    assert model.exp_fc is None and model.direction_exp is None and model.dec.fineadainresblock is None
    assert len(model.state_dict()) == 195


@pytest.mark.parametrize("corruption", ["rename", "shape", "drop"])
def test_mismatched_file_is_refused_naming_the_first_differing_keys(official_file, tmp_path: Path,
                                                                     corruption: str) -> None:
    _, state = official_file
    bad = dict(state)
    if corruption == "rename":
        bad["fc.0.weightt"] = bad.pop("fc.0.weight")
        expected = ["'fc.0.weight'", "'fc.0.weightt'"]
    elif corruption == "shape":
        bad["lip_fc.2.weight"] = torch.zeros(21, 512)
        expected = ["'lip_fc.2.weight'", "(20, 512)", "(21, 512)"]
    else:
        del bad["dec.convs.3.conv.weight"]
        expected = ["'dec.convs.3.conv.weight'"]
    path = tmp_path / "bad.pt"
    torch.save({"gen": bad}, path)
    with pytest.raises(CheckpointMismatch) as err:
        load_official(path, EDTalk(profile("paper")))
    for s in expected:
        assert s in str(err.value)


class Payload:                                          # arbitrary pickled object: must not be unpickled
    pass


def test_loading_uses_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"gen": {}, "x": Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        load_checkpoint(path)


def test_tiny_checkpoint_refused_by_paper_model(tmp_path: Path) -> None:
    tiny = EDTalk(profile("tiny"))
    save_checkpoint(tmp_path / "tiny.pt", tiny)
    with pytest.raises(CheckpointMismatch, match="shape of 'enc.net_app.convs.0.0.weight'"):
        load_checkpoint(tmp_path / "tiny.pt", EDTalk(profile("paper")))


def test_discriminator_has_the_release_layout() -> None:
    ref = json.loads((REF / "official_state_dict_Discriminator.json").read_text())
    d = Discriminator(profile("paper"))
    assert [(k, tuple(v.shape)) for k, v in d.state_dict().items()] == \
        [(e["key"], tuple(e["shape"])) for e in ref["state_dict"]]
    assert sum(p.numel() for p in d.parameters()) == ref["total_parameters"]
    d.load_state_dict(random_state_from_layout(ref["state_dict"]), strict=True)


def test_the_same_weights_save_to_the_same_bytes(tmp_path) -> None:
    # DVC hashes model files: an unchanged model must not look changed to the stages after it
    torch.manual_seed(0)
    model = EDTalk(profile("tiny"))
    save_checkpoint(tmp_path / "a" / "model.pt", model, step=3)
    save_checkpoint(tmp_path / "b" / "model.pt", model, step=3)
    assert (tmp_path / "a" / "model.pt").read_bytes() == (tmp_path / "b" / "model.pt").read_bytes()
    assert load_checkpoint(tmp_path / "a" / "model.pt")[1]["step"] == 3
