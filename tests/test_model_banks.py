"""Orthogonal bases, sizes, parameter counts and stage groups of the EDTalk model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from edtalk.model import EDTalk, profile

REF = Path(__file__).resolve().parent / "reference"


@pytest.fixture(scope="module")
def paper() -> EDTalk:
    torch.manual_seed(0)
    return EDTalk(profile("paper"))


@pytest.fixture(scope="module")
def tiny() -> EDTalk:
    torch.manual_seed(0)
    return EDTalk(profile("tiny"))


def _max_cross_inner_product(q: torch.Tensor) -> float:
    g = q.t() @ q
    return (g - torch.diag(torch.diag(g))).abs().max().item()


@pytest.mark.parametrize("name", ["paper", "tiny"])
def test_bases_are_orthonormal_within_and_across_banks(name: str, request: pytest.FixtureRequest) -> None:
    model: EDTalk = request.getfixturevalue(name)
    with torch.no_grad():
        # make the raw banks strongly non-orthogonal: QR must still orthonormalise them
        model.direction_exp.weight.copy_(model.direction_lipnonlip.weight[:, :10] + 0.1 * model.direction_exp.weight)
        q = model.bases()
    cfg = model.cfg
    assert q.shape == (cfg.latent_dim, cfg.n_mouth + cfg.n_pose + cfg.n_exp)
    assert (cfg.n_mouth, cfg.n_pose, cfg.n_exp) == (20, 6, 10)
    assert _max_cross_inner_product(q) <= 1e-5
    assert torch.allclose(q.norm(dim=0), torch.ones(q.shape[1]), atol=1e-5)
    sl = model.bank_slices()
    for a in sl:                                       # pairs across the three banks
        for b in sl:
            if a != b:
                assert (q[:, sl[a]].t() @ q[:, sl[b]]).abs().max() <= 1e-5


def test_expression_bank_leaves_mouth_and_pose_bases_unchanged(tiny: EDTalk) -> None:
    lip_pose = EDTalk(profile("tiny", with_expression=False))
    lip_pose.direction_lipnonlip.weight.data.copy_(tiny.direction_lipnonlip.weight.data)
    with torch.no_grad():
        assert torch.allclose(lip_pose.bases(), tiny.bases()[:, :26], atol=1e-6)


@pytest.mark.parametrize("layout", ["EDTalk", "EDTalk_lip_pose"])
def test_paper_parameter_counts_equal_the_release(layout: str) -> None:
    ref = json.loads((REF / f"official_state_dict_{layout}.json").read_text())
    torch.manual_seed(0)
    model = EDTalk(profile("paper", with_expression=layout == "EDTalk"))
    top, second = model.parameter_counts(1), model.parameter_counts(2)
    print(f"\n{layout} parameters per module:", top, f"total {sum(top.values()):,}")
    assert top == ref["params_per_top_level_submodule"]
    assert second == ref["params_per_second_level_submodule"]
    assert sum(top.values()) == ref["total_parameters"]


def test_tiny_profile_is_small_with_same_structure(tiny: EDTalk, paper: EDTalk) -> None:
    counts = tiny.parameter_counts(1)
    print("\ntiny parameters per module:", counts, f"total {sum(counts.values()):,}")
    assert tiny.cfg.size == 64 and tiny.cfg.latent_dim == 128
    assert max(tiny.cfg.channels(r) for r in [4] + tiny.cfg.levels) <= 128
    assert set(counts) == set(paper.parameter_counts(1))
    assert sum(counts.values()) < 5_000_000


def test_stage_groups_freeze_everything_else(tiny: EDTalk) -> None:
    tiny.set_trainable("MLN", "PLN", "trunk")
    names = {n.split(".")[0] for n, p in tiny.named_parameters() if p.requires_grad}
    assert names == {"fc", "lip_fc", "pose_fc", "direction_lipnonlip"}
    tiny.set_trainable("ELN", "EEM")
    trainable = [n for n, p in tiny.named_parameters() if p.requires_grad]
    assert all(n.startswith(("exp_fc", "direction_exp", "dec.fineadainresblock")) for n in trainable)
    assert any(n.startswith("dec.fineadainresblock") for n in trainable)
    tiny.set_trainable("E", "G")
    frozen = {n.split(".")[0] for n, p in tiny.named_parameters() if not p.requires_grad}
    assert frozen == {"direction_lipnonlip", "direction_exp", "fc", "lip_fc", "pose_fc", "exp_fc", "dec"}
    assert not any(p.requires_grad for p in tiny.dec.fineadainresblock.parameters())
    tiny.requires_grad_(True)
