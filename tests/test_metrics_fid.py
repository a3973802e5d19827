"""Fréchet distance: pytorch-fid 0.3.0 numerics, closed forms, and its fallback branches."""

from __future__ import annotations

import numpy as np
import pytest

from metrics import fid


def test_identical_sets_give_zero():
    feats = np.random.default_rng(0).normal(size=(200, 16))
    mu, sigma = fid.statistics(feats)
    assert fid.frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-8)


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(1)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    v1, v2 = rng.uniform(0.5, 3, 5), rng.uniform(0.5, 3, 5)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(v1) - np.sqrt(v2)) ** 2)
    got = fid.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2))
    assert got == pytest.approx(want, rel=1e-10)


def test_statistics_are_float64_mean_and_sample_covariance():
    x = np.array([[1, 2], [3, 5], [4, 4]], dtype=np.float32)
    mu, sigma = fid.statistics(x)
    assert mu.dtype == np.float64 and np.allclose(mu, [8 / 3, 11 / 3])
    assert np.allclose(sigma, np.cov(x.astype(np.float64).T, ddof=1))


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")
def test_agrees_with_pytorch_fid_where_it_still_runs():
    pfid = pytest.importorskip("pytorch_fid.fid_score")
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(120, 12)), rng.normal(size=(90, 12)) * 1.4 + 0.3
    s1, s2 = fid.statistics(a), fid.statistics(b)
    try:
        want = pfid.calculate_frechet_distance(*s1, *s2)
    except TypeError:                      # SciPy without sqrtm(disp=...)
        pytest.skip("pytorch-fid 0.3.0 broken by this SciPy")
    assert fid.frechet_distance(*s1, *s2) == pytest.approx(want, rel=1e-12)


def test_nonfinite_sqrtm_retries_with_eps_on_the_diagonal(monkeypatch):
    calls = []
    real = fid._sqrtm

    def fake(m):
        calls.append(m.copy())
        return np.full_like(m, np.nan) if len(calls) == 1 else real(m)
    monkeypatch.setattr(fid, "_sqrtm", fake)
    s = np.diag([1.0, 4.0])
    got = fid.frechet_distance(np.zeros(2), s, np.zeros(2), s, eps=1e-6)
    assert np.allclose(calls[1], (s + 1e-6 * np.eye(2)) @ (s + 1e-6 * np.eye(2)))
    # tr S1 + tr S2 - 2 tr (S + eps I) = -4 eps
    assert got == pytest.approx(-4e-6, abs=1e-12)


def test_complex_sqrtm_real_part_or_error(monkeypatch):
    s = np.eye(2)
    monkeypatch.setattr(fid, "_sqrtm", lambda m: np.eye(2) + 1e-5j * np.ones((2, 2)))
    assert fid.frechet_distance(np.zeros(2), s, np.zeros(2), s) == pytest.approx(0.0, abs=1e-12)
    monkeypatch.setattr(fid, "_sqrtm", lambda m: np.eye(2) + 0.5j * np.eye(2))
    with pytest.raises(ValueError, match="Imaginary component"):
        fid.frechet_distance(np.zeros(2), s, np.zeros(2), s)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        fid.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    with pytest.raises(ValueError):
        fid.statistics(np.zeros((1, 4)))


def test_offline_backend_is_labelled_not_fid():
    backend = fid.PooledPixels(8)
    frames = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    feats = backend(frames)
    assert backend.label == "fd[rgb-pool8]" and feats.shape == (4, 192)
    assert feats[0, 0] == pytest.approx(frames[0, :4, :4, 0].mean() / 255.0)


def test_inception_backend_without_weights_names_the_file(tmp_path, monkeypatch):
    from edtalk.weights import MissingWeights
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("EDTALK_WEIGHTS", raising=False)
    with pytest.raises(MissingWeights, match="pt_inception-2015-12-05-6726825d.pth"):
        fid.InceptionFeatures(cache_dir=tmp_path)
    assert isinstance(fid.default_backend(cache_dir=tmp_path), fid.PooledPixels)


@pytest.mark.slow
def test_inception_backend_builds_from_a_local_file_without_download(tmp_path, monkeypatch):
    import torch
    from pytorch_fid import inception as pfi

    with monkeypatch.context() as m:       # the architecture, with random weights, for the file
        m.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(torch.nn.Module, "load_state_dict", lambda self, sd, strict=True: None)
        arch = pfi.fid_inception_v3()
    torch.save(arch.state_dict(), tmp_path / "pt_inception-2015-12-05-6726825d.pth")

    def no_download(*a, **k):
        raise AssertionError("download attempted")
    monkeypatch.setattr(pfi, "load_state_dict_from_url", no_download)
    backend = fid.InceptionFeatures(cache_dir=tmp_path, batch_size=2)
    assert backend.label == "fid" and pfi.load_state_dict_from_url is no_download
    feats = backend(np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8))
    assert feats.shape == (3, 2048) and feats.dtype == np.float64
    assert isinstance(fid.default_backend(cache_dir=tmp_path), fid.InceptionFeatures)
