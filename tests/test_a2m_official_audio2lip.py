"""The released Audio2Lip layout: strict round trip, refusal of other layouts, smoothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edtalk.audio2motion.official_audio2lip import (SMOOTHING_KERNEL, OfficialAudio2Lip,
                                                    load_official, official_windows,
                                                    predict_mouth, smooth_weights)

REFERENCE = Path(__file__).resolve().parent / "reference" / "official_state_dict_Audio2Lip.json"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny CPU models train far faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _reference_entries() -> list[dict]:
    if not REFERENCE.is_file():
        pytest.skip(f"reference key list {REFERENCE} not available")
    return json.loads(REFERENCE.read_text())["state_dict"]


def _random_release_state(entries: list[dict], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict built only from the reference key/shape/dtype list (not from our module)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for e in entries:
        shape = tuple(e["shape"])
        if e["dtype"] == "int64":
            state[e["key"]] = torch.tensor(7, dtype=torch.int64).reshape(shape)
        elif e["key"].endswith("running_var"):
            state[e["key"]] = torch.rand(shape, generator=g) + 0.5
        else:
            state[e["key"]] = 0.1 * torch.randn(shape, generator=g)
    return state


def test_module_layout_equals_the_release() -> None:
    entries = _reference_entries()
    ours = OfficialAudio2Lip().state_dict()
    assert [e["key"] for e in entries] == list(ours)
    assert all(tuple(e["shape"]) == tuple(ours[e["key"]].shape) for e in entries)
    n_params = sum(p.numel() for p in OfficialAudio2Lip().parameters())
    assert n_params == json.loads(REFERENCE.read_text())["total_parameters"] == 2_822_932


def test_release_file_round_trip(tmp_path: Path) -> None:
    state = _random_release_state(_reference_entries())
    path = tmp_path / "Audio2Lip.pt"
    torch.save({"audio2lip": state}, path)
    model = load_official(path)
    assert not model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    out = model(torch.randn(5, 1, 80, 16))
    assert out.shape == (5, 20) and out.isfinite().all()


def test_mismatched_file_is_refused_naming_keys(tmp_path: Path) -> None:
    state = _random_release_state(_reference_entries())
    renamed = dict(state)
    renamed["audio_encoder.3.conv.weight"] = renamed.pop("audio_encoder.3.conv_block.0.weight")
    torch.save({"audio2lip": renamed}, tmp_path / "renamed.pt")
    with pytest.raises(ValueError, match=r"missing audio_encoder\.3\.conv_block\.0\.weight.*"
                                         r"unexpected audio_encoder\.3\.conv\.weight"):
        load_official(tmp_path / "renamed.pt")
    reshaped = dict(state)
    reshaped["mapping.weight"] = torch.zeros(10, 512)
    torch.save({"audio2lip": reshaped}, tmp_path / "reshaped.pt")
    with pytest.raises(ValueError, match=r"shape mapping\.weight: file \(10, 512\)"):
        load_official(tmp_path / "reshaped.pt")
    torch.save({"gen": state}, tmp_path / "wrong_wrapper.pt")
    with pytest.raises(ValueError, match="no 'audio2lip' key"):
        load_official(tmp_path / "wrong_wrapper.pt")


def test_smoothing_is_the_3tap_kernel_with_zero_padding() -> None:
    w = torch.randn(9, 20, dtype=torch.float64)
    k0, k1, k2 = SMOOTHING_KERNEL
    padded = torch.cat([torch.zeros(1, 20, dtype=w.dtype), w, torch.zeros(1, 20, dtype=w.dtype)])
    expected = k0 * padded[:-2] + k1 * padded[1:-1] + k2 * padded[2:]
    assert torch.allclose(smooth_weights(w), expected, atol=1e-12)
    ones = smooth_weights(torch.ones(4, 1))
    assert float(ones[0]) == pytest.approx(k1 + k2)       # zero padding shrinks the ends
    assert float(ones[1]) == pytest.approx(sum(SMOOTHING_KERNEL))


def test_official_windows_feed_the_module() -> None:
    t = np.arange(16_000) / 16_000
    audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    wins = official_windows(audio)
    assert wins.shape == (25, 1, 80, 16)
    assert float(wins.min()) >= -4 and float(wins.max()) <= 4
    out = predict_mouth(OfficialAudio2Lip().eval(), audio)
    assert out.shape == (25, 20)
