"""PSNR and SSIM: known values and agreement with scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metrics import image


def test_psnr_of_a_known_mse():
    a = np.full((8, 8, 3), 100, np.uint8)
    b = a.copy()
    b[::2] += 4                       # half the values off by 4 -> MSE = 8
    assert image.psnr(a, b) == pytest.approx(10 * np.log10(255.0 ** 2 / 8.0), abs=1e-10)
    assert image.psnr(a, a) == float("inf")


def test_ssim_of_identical_frames_is_one_and_matches_skimage():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 40, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 21, a.shape), 0, 255).astype(np.uint8)
    assert image.ssim(a, a) == 1.0
    want = structural_similarity(a, b, data_range=255, channel_axis=-1)
    assert image.ssim(a, b) == pytest.approx(want, abs=1e-12)
    per_channel = np.mean([structural_similarity(a[..., c], b[..., c], data_range=255) for c in range(3)])
    assert image.ssim(a, b) == pytest.approx(per_channel, abs=1e-12)
    assert image.psnr(a, b) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), abs=1e-10)


def test_video_variants_use_the_linspace_pairing():
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    pred = gt[[0, 2, 4]].copy()       # 3 frames pair with gt frames 0, 2, 4
    assert np.all(np.isinf(image.psnr_frames(gt, pred)))
    assert np.allclose(image.ssim_frames(gt, pred), 1.0)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.uint8),
                                 np.zeros((5, 4, 3), np.uint8)])
def test_bad_frames_raise(bad):
    with pytest.raises(ValueError):
        image.psnr(np.zeros((4, 4, 3), np.uint8), bad)
