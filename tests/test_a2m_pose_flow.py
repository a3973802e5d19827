"""Pose flow phi_p (Eq. 13-14): invertibility, exact log-det, likelihood, sampling."""

from __future__ import annotations

import math

import pytest
import torch

from edtalk.audio2motion.config import PoseFlowConfig
from edtalk.audio2motion.pose_flow import (PoseFlow, gaussian_nll, jitter, mle_loss, pose_losses,
                                           pose_rec_loss, temporal_loss)

CFG = PoseFlowConfig(cond_dim=8, context_dim=16, hidden=32, n_couplings=4)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny CPU models train far faster on one thread when the cores are shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomised_flow(seed: int = 0, dtype: torch.dtype = torch.float32) -> PoseFlow:
    """A flow whose zero-initialised layers are perturbed, so it is far from identity."""
    torch.manual_seed(seed)
    flow = PoseFlow(CFG).to(dtype)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
        flow.mean.copy_(torch.randn(6, dtype=dtype))
        flow.std.copy_(torch.rand(6, dtype=dtype) + 0.5)
    return flow.eval()


def test_flow_is_invertible_within_1e5() -> None:
    flow = _randomised_flow()
    w = torch.randn(3, 17, 6)
    fa = torch.randn(3, 17, 8)
    z, _ = flow.inverse(w, fa)
    assert (z - w).abs().max() > 0.1                     # really a non-trivial map
    w_back = flow(z, fa)
    assert torch.allclose(w_back, w, atol=1e-5, rtol=0)
    z2 = torch.randn(3, 17, 6)
    assert torch.allclose(flow.inverse(flow(z2, fa), fa)[0], z2, atol=1e-5, rtol=0)


def test_log_det_matches_numerical_jacobian() -> None:
    flow = _randomised_flow(1, torch.float64)
    fa = torch.randn(1, 1, 8, dtype=torch.float64)
    for _ in range(3):
        w = torch.randn(6, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(
            lambda x: flow.inverse(x.view(1, 1, 6), fa)[0].view(6), w)
        _, logdet = flow.inverse(w.view(1, 1, 6), fa)
        expected = torch.linalg.slogdet(jac).logabsdet
        assert abs(float(logdet.detach()) - float(expected)) < 1e-8
        assert abs(float(expected)) > 1e-3               # the flow really changes volume


def _conditional_dataset(n_seq: int, t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """w_t = A f^a_t + heteroscedastic noise: the condition explains most of the variance."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(6, 8, generator=torch.Generator().manual_seed(99)) / 8 ** 0.5  # fixed mixing
    fa = torch.randn(n_seq, t, 8, generator=g)
    noise_scale = 0.05 + 0.1 * torch.sigmoid(fa[..., :1])
    w = fa @ a.T + noise_scale * torch.randn(n_seq, t, 6, generator=g)
    return w, fa


def test_training_improves_likelihood_and_beats_unconditional_gaussian() -> None:
    torch.manual_seed(0)
    w_tr, fa_tr = _conditional_dataset(32, 16, 0)
    w_te, fa_te = _conditional_dataset(16, 16, 1)
    flow = PoseFlow(CFG)
    flow.fit_normalization(w_tr)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    with torch.no_grad():
        nll_before = float(mle_loss(flow, w_te, fa_te))
    for _ in range(150):
        opt.zero_grad()
        loss = mle_loss(flow, w_tr, fa_tr)
        loss.backward()
        opt.step()
    with torch.no_grad():
        nll_after = float(mle_loss(flow, w_te, fa_te))
    nll_gauss = gaussian_nll(w_tr, w_te)
    assert nll_after < nll_before - 3.0, (nll_before, nll_after)
    assert nll_after < nll_gauss - 3.0, (nll_gauss, nll_after)


def test_seeds_differ_and_temperature_zero_is_the_mean_path() -> None:
    flow = _randomised_flow(2)
    fa = torch.randn(2, 40, 8)
    s1 = flow.sample(fa, generator=torch.Generator().manual_seed(1))
    s2 = flow.sample(fa, generator=torch.Generator().manual_seed(2))
    s1b = flow.sample(fa, generator=torch.Generator().manual_seed(1))
    assert torch.equal(s1, s1b)
    assert (s1 - s2).abs().mean() > 0.1
    m1 = flow.sample(fa, temperature=0.0, generator=torch.Generator().manual_seed(1))
    m2 = flow.sample(fa, temperature=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(m1, m2)
    assert torch.allclose(m1, flow(torch.zeros(2, 40, 6), fa))


def test_correlated_latents_keep_the_marginal_and_reduce_jitter() -> None:
    flow = PoseFlow(CFG)
    g = torch.Generator().manual_seed(0)
    z = flow.sample_latent((64, 200), rho=0.9, generator=g)
    assert abs(float(z.std()) - 1.0) < 0.05              # still N(0, I) per frame
    iid = flow.sample_latent((64, 200), rho=0.0, generator=g)
    ratio = jitter(z) / jitter(iid)
    assert abs(ratio - math.sqrt(1 - 0.9)) < 0.05        # steps shrink by sqrt(1 - rho)


def test_fitted_temporal_correlation_matches_ground_truth_jitter() -> None:
    """Smooth GT (AR(1) residuals around an audio-driven path): samples with the fitted rho
    have GT-like jitter, i.i.d. samples are far rougher, and seeds still differ."""
    g = torch.Generator().manual_seed(3)
    n, t, rho = 24, 100, 0.95
    fa = torch.randn(n, t, 8, generator=g).cumsum(1) * 0.1    # slowly varying audio feature
    eps = torch.randn(n, t, 6, generator=g)
    r = torch.zeros_like(eps)
    r[:, 0] = eps[:, 0]
    for i in range(1, t):
        r[:, i] = rho * r[:, i - 1] + math.sqrt(1 - rho ** 2) * eps[:, i]
    w = torch.tanh(fa[..., :6]) + 0.3 * r
    flow = PoseFlow(CFG)
    flow.fit_normalization(w)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(80):
        opt.zero_grad()
        mle_loss(flow, w, fa).backward()
        opt.step()
    fitted = flow.fit_temporal_correlation(w, fa)
    assert float(fitted.mean()) > 0.7
    with torch.no_grad():
        smooth = flow.sample(fa, generator=torch.Generator().manual_seed(0))
        other = flow.sample(fa, generator=torch.Generator().manual_seed(1))
        rough = flow.sample(fa, rho=0.0, generator=torch.Generator().manual_seed(0))
    assert jitter(smooth) <= 1.25 * jitter(w), (jitter(smooth), jitter(w))
    assert jitter(rough) > 2.0 * jitter(w)
    assert float((smooth - other).std()) > 0.1
    # calibrating rho on jitter directly brings samples within the ground truth's jitter
    rho_cal = flow.calibrate_temporal_correlation(w, fa)
    assert 0.0 < rho_cal < 0.995
    with torch.no_grad():
        cal = flow.sample(fa, generator=torch.Generator().manual_seed(5))
        cal2 = flow.sample(fa, generator=torch.Generator().manual_seed(6))
    assert jitter(cal) <= 1.05 * jitter(w), (jitter(cal), jitter(w))
    assert float((cal - cal2).std()) > 0.1                    # still diverse across seeds


def test_pose_losses_eq14() -> None:
    w = torch.zeros(1, 3, 6)
    w_hat = w.clone()
    w_hat[0, 1, 0] = 3.0; w_hat[0, 1, 1] = 4.0              # one frame off by a 3-4-5 vector
    assert float(pose_rec_loss(w, w_hat)) == pytest.approx(5.0 / 3)
    assert float(temporal_loss(w, w_hat)) == pytest.approx(5.0)   # (5 + 5) / (N - 1)
    assert float(temporal_loss(w, w + 1.0)) == pytest.approx(0.0)  # constant offsets are free
    flow = PoseFlow(CFG)
    losses = pose_losses(flow, torch.randn(2, 5, 6), torch.randn(2, 5, 8))
    assert set(losses) == {"mle", "rec", "tem"} and all(v.isfinite() for v in losses.values())
    with pytest.raises(ValueError):
        flow.inverse(torch.randn(2, 5, 6), torch.randn(2, 4, 8))
