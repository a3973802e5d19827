"""Audio -> mouth (Eq. 11-12): windows, loss values, and fitting a synthetic mapping."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from edtalk.audio2motion.audio_encoder import AudioEncoder, frame_windows
from edtalk.audio2motion.config import AudioEncoderConfig, MouthConfig
from edtalk.audio2motion.mouth import AudioToMouth, mouth_feature_loss, sync_loss


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny CPU models train far faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_batch_input_norm_keeps_the_loudness_that_layer_norm_drops() -> None:
    """A louder step shifts every log-energy coefficient alike: per-step layer norm cannot
    see it, per-coefficient batch norm (the mouth's E_a) can."""
    torch.manual_seed(0)
    window = torch.randn(8, 20, 13)
    louder = window + 3.0
    for norm, visible in (("layer", False), ("batch", True)):
        enc = AudioEncoder(AudioEncoderConfig(input_norm=norm))
        enc.train()
        enc(torch.cat([window, louder]))                   # running statistics from both
        enc.eval()
        with torch.no_grad():
            moved = (enc(louder) - enc(window)).abs().max().item()
        assert (moved > 1e-3) is visible, (norm, moved)
    assert MouthConfig().encoder.input_norm == "batch"
    with pytest.raises(ValueError, match="input_norm"):
        AudioEncoder(AudioEncoderConfig(input_norm="instance"))


def test_frame_windows_are_centred_and_edge_clamped() -> None:
    per_frame = np.arange(5)[:, None, None] * np.ones((5, 4, 13))   # frame i is filled with i
    win = frame_windows(per_frame, context_frames=2)
    assert win.shape == (5, 20, 13)
    assert win[2, :, 0].tolist() == [float(i) for i in (0, 1, 2, 3, 4) for _ in range(4)]
    assert win[0, :, 0].tolist() == [float(i) for i in (0, 0, 0, 1, 2) for _ in range(4)]
    flat = frame_windows(per_frame.reshape(5, 52), context_frames=2)   # FRAMES layout
    assert torch.equal(flat, win)
    with pytest.raises(ValueError):
        frame_windows(np.zeros((5, 3, 13)))


def test_encoder_shapes_batch_and_sequence() -> None:
    enc = AudioEncoder(AudioEncoderConfig(feature_dim=80))
    assert enc(torch.randn(4, 20, 80)).shape == (4, 128)
    assert enc(torch.randn(2, 7, 20, 80)).shape == (2, 7, 128)
    with pytest.raises(ValueError, match="80"):
        enc(torch.randn(4, 20, 13))


def test_eq11_and_eq12_values() -> None:
    w = torch.zeros(2, 20)
    w_hat = torch.zeros(2, 20)
    w_hat[0, :2] = torch.tensor([3.0, 4.0])
    assert float(mouth_feature_loss(w, w_hat)) == pytest.approx(2.5)   # (5 + 0) / 2
    v = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    s = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    expected = -(math.log(1.0) + math.log(1 / math.sqrt(2))) / 2
    assert float(sync_loss(v, s)) == pytest.approx(expected, abs=1e-6)
    orth = sync_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), eps=1e-8)
    assert float(orth) == pytest.approx(-math.log(1e-8), rel=1e-4)     # clamped, finite
    zero = sync_loss(torch.zeros(1, 4), torch.zeros(1, 4))
    assert torch.isfinite(zero)


def test_mouth_head_fits_a_synthetic_audio_to_weights_mapping() -> None:
    torch.manual_seed(0)
    cfg = MouthConfig(encoder=AudioEncoderConfig(channels=(16, 32, 32), out_dim=32))
    x = torch.randn(128, 20, 13)
    # targets: a smooth nonlinear function of band energies in the centre frame
    proj = torch.randn(13, 20) / math.sqrt(13)
    target = torch.tanh(x[:, 8:12].mean(1) @ proj * 2.0)
    model = AudioToMouth(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(mouth_feature_loss(target, model(x)))
    for _ in range(200):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = float(mouth_feature_loss(target, model(x)))
    assert last < first / 5, (first, last)
