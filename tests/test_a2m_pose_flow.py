"""Pose flow phi_p (Eq. 13-14): invertibility, exact log-det, likelihood, sampling."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from edtalk.audio2motion.config import PoseFlowConfig
from edtalk.audio2motion.latent_process import (fit_process, kernel_correlation, process_log_prob, ridge_offset,
                                               smooth_taps, within_sequence_axes)
from edtalk.audio2motion.pose_flow import (PoseFlow, gaussian_nll, jitter, mle_loss, pose_losses, pose_rec_loss,
                                           select_noise, shrunk_covariance, temporal_loss)

CFG = PoseFlowConfig(cond_dim=8, context_dim=16, hidden=32, n_couplings=4)
PER_FRAME = replace(CFG, context_smooth=0.0)   # conditions drawn i.i.d. per frame: no low-pass


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
        flow.scale.copy_(torch.rand(6, dtype=dtype) + 0.5)
        flow.decorrelate.lower.normal_(0, 0.3)             # a mixing M far from the identity
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


def test_untrained_flow_is_the_gaussian_baseline() -> None:
    """S o A o K with zero-initialised layers = N(m, Sigma) of the training W^p, exactly."""
    w_tr, fa_tr = _conditional_dataset(8, 16, 0)
    w_te, fa_te = _conditional_dataset(4, 16, 1)
    flow = PoseFlow(CFG).double()
    flow.fit_normalization(w_tr.double())
    with torch.no_grad():
        nll = float(mle_loss(flow, w_te.double(), fa_te.double()))
        base = float(-flow.base_log_prob(w_te.double()).mean())
    assert nll == pytest.approx(gaussian_nll(w_tr, w_te), abs=1e-9)
    assert base == pytest.approx(nll, abs=1e-9)
    # dequantisation noise = the Gaussian of the noisy data: Sigma + noise^2 diag(Sigma)
    flow.fit_normalization(w_tr.double(), noise=0.5)
    cov = flow.covariance()
    assert torch.allclose(cov, shrunk_covariance(w_tr.reshape(-1, 6), 0.5), atol=1e-12)
    assert torch.allclose(torch.diagonal(cov), 1.25 * torch.diagonal(shrunk_covariance(w_tr.reshape(-1, 6))))


def test_training_improves_likelihood_and_beats_unconditional_gaussian() -> None:
    torch.manual_seed(0)
    w_tr, fa_tr = _conditional_dataset(64, 16, 0)
    w_te, fa_te = _conditional_dataset(16, 16, 1)
    flow = PoseFlow(PER_FRAME)
    flow.fit_normalization(w_tr)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    with torch.no_grad():
        nll_before = float(mle_loss(flow, w_te, fa_te))
    for _ in range(100):
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


@pytest.mark.parametrize("kernel", ["gaussian", "ar1"])
def test_correlated_latents_keep_the_marginal_and_reduce_jitter(kernel: str) -> None:
    flow = PoseFlow(replace(CFG, temporal_kernel=kernel))
    g = torch.Generator().manual_seed(0)
    z = flow.sample_latent((64, 200), rho=0.9, generator=g)
    assert abs(float(z.std()) - 1.0) < 0.05              # still N(0, I) per frame
    lag1 = float((z[:, 1:] * z[:, :-1]).mean() / z.pow(2).mean())
    assert abs(lag1 - 0.9) < 0.02
    iid = flow.sample_latent((64, 200), rho=0.0, generator=g)
    ratio = jitter(z) / jitter(iid)
    assert abs(ratio - math.sqrt(1 - 0.9)) < 0.05        # steps shrink by sqrt(1 - rho)
    # the Gaussian kernel's paths are smooth: second differences far below the AR(1)'s
    curv = float(z.diff(n=2, dim=1).pow(2).mean() / z.diff(dim=1).pow(2).mean())
    assert curv < 0.8 if kernel == "gaussian" else curv > 1.5


def test_shared_part_is_constant_over_a_sequence_and_keeps_the_marginal() -> None:
    flow = PoseFlow(CFG)
    g = torch.Generator().manual_seed(0)
    z = flow.sample_latent((256, 50), rho=0.95, shared=0.8, generator=g)
    assert abs(float(z.std()) - 1.0) < 0.05
    within = float(z.var(dim=1).mean())                   # variance along each sequence
    assert 0.1 < within < 0.3                            # ~ (1 - shared), less the centring
    still = flow.sample_latent((4, 30), shared=1.0, generator=g)
    assert torch.allclose(still, still[:, :1].expand_as(still))
    assert smooth_taps(0.0).shape == (1,) and float(smooth_taps(0.99).norm()) == pytest.approx(1.0)


def _offset_motion_noise(n: int, t: int, seed: int, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence offsets (the largest part) + slow smooth motion + white frame noise."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.randn(n, 1, 6, generator=g)
    k = smooth_taps(0.99).float()
    e = torch.randn(n * 6, 1, t + len(k) - 1, generator=g)
    motion = torch.nn.functional.conv1d(e, k.view(1, 1, -1)).view(n, 6, t).transpose(1, 2)
    w = offset + 0.4 * motion + noise * torch.randn(n, t, 6, generator=g)
    return w, torch.randn(n, t, 8, generator=g)


def test_fitted_latent_moves_smoothly_and_ignores_frame_noise() -> None:
    """GT = offsets + smooth motion + frame noise: the fitted latent puts the offsets in the
    shared part, replays the slow motion only, so samples are smoother than the ground truth
    while seeds still differ; i.i.d. latents would be far rougher."""
    w, fa = _offset_motion_noise(24, 100, 3)
    flow = PoseFlow(CFG)
    flow.fit_normalization(w)                              # the flow = its Gaussian here
    rho = flow.fit_temporal_correlation(w, fa)
    assert float(rho.mean()) > 0.95
    assert 0.7 < float(flow.shared.mean()) < 0.95         # offsets ~ 1, motion ~ 0.16 of the variance
    with torch.no_grad():
        smooth = flow.sample(fa, generator=torch.Generator().manual_seed(0))
        other = flow.sample(fa, generator=torch.Generator().manual_seed(1))
        rough = flow.sample(fa, rho=0.0, shared=0.0, generator=torch.Generator().manual_seed(0))
    assert jitter(smooth) < 0.5 * jitter(w), (jitter(smooth), jitter(w))
    assert jitter(rough) > 2.0 * jitter(w)
    assert float((smooth - other).std()) > 0.5             # the offsets differ across seeds
    # lists of sequences of different lengths give the same statistics as one batch
    flow2 = PoseFlow(CFG)
    flow2.fit_normalization(w)
    flow2.fit_temporal_correlation([w[i:i + 1] for i in range(24)], [fa[i:i + 1] for i in range(24)])
    assert torch.allclose(flow2.rho, flow.rho) and torch.allclose(flow2.shared, flow.shared)
    assert torch.allclose(flow2.white, flow.white)
    # the frame noise (0.3^2 of 1 + 0.4^2 + 0.3^2 = 1.25) is recognised as such, not as motion
    assert 0.03 < float(flow.white.mean()) < 0.15, flow.white


def test_sequence_density_is_the_exact_gaussian_process_and_iid_without_one() -> None:
    flow = _randomised_flow(3, torch.float64)
    w, fa = torch.randn(2, 7, 6, dtype=torch.float64), torch.randn(2, 7, 8, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(flow.sequence_log_prob(w, fa), flow.log_prob(w, fa).sum(1))   # rho = a = e = 0
        flow.rho.fill_(0.9), flow.shared.fill_(0.3), flow.white.fill_(0.1)
        z, logdet = flow.inverse(w, fa)
        r = kernel_correlation(7, 0.9)
        cov = 0.3 * torch.ones(7, 7, dtype=torch.float64) + 0.6 * r + 0.1 * torch.eye(7, dtype=torch.float64)
        direct = torch.distributions.MultivariateNormal(torch.zeros(7, dtype=torch.float64), cov)
        want = direct.log_prob(z.permute(0, 2, 1)).sum(1) + logdet.sum(1)
        assert torch.allclose(flow.sequence_log_prob(w, fa), want)
    assert float(r[0, 0]) == pytest.approx(1.0) and float(r[0, 1]) == pytest.approx(0.9, abs=1e-6)


def test_process_fit_recovers_its_parameters_and_beats_iid_on_held_out_sequences() -> None:
    g = torch.Generator().manual_seed(5)
    rho, a, e = 0.95, 0.5, 0.05

    def draw(n: int, t: int) -> list[torch.Tensor]:
        chol = torch.linalg.cholesky(a + (1 - a - e) * kernel_correlation(t, rho) + e * torch.eye(t, dtype=torch.float64))
        return [chol @ torch.randn(t, 2, generator=g, dtype=torch.float64) for _ in range(n)]

    rho_hat, a_hat, e_hat = fit_process(draw(60, 50))
    assert torch.all((rho_hat - rho).abs() < 0.03) and torch.all((a_hat - a).abs() < 0.2)
    assert torch.all((e_hat / e).log().abs() < math.log(2.0)), e_hat
    held = draw(10, 50)
    seq = sum(process_log_prob(z, rho_hat, a_hat, e_hat) for z in held)
    iid = sum(float(torch.distributions.Normal(0.0, 1.0).log_prob(z).sum()) for z in held)
    assert seq > iid + 10 * 50                               # nats: smooth sequences are far likelier


def test_calibration_only_ever_raises_rho_to_meet_the_jitter_cap() -> None:
    w, fa = _offset_motion_noise(16, 80, 4, noise=0.05)
    flow = PoseFlow(CFG)
    flow.fit_normalization(w)
    fitted = float(flow.fit_temporal_correlation(w, fa).max())
    assert flow.calibrate_temporal_correlation(w, fa, target_ratio=10.0) == pytest.approx(fitted)
    assert float(flow.rho.max()) == pytest.approx(fitted)
    with torch.no_grad():
        before = jitter(flow.sample(fa, generator=torch.Generator().manual_seed(0)))
    goal = 0.5 * before / jitter(w)                       # ask for half the sampled jitter
    rho = flow.calibrate_temporal_correlation(w, fa, target_ratio=goal, max_rho=0.9999)
    assert fitted < rho < 0.9999
    with torch.no_grad():
        cal = flow.sample(fa, generator=torch.Generator().manual_seed(0))
        cal2 = flow.sample(fa, generator=torch.Generator().manual_seed(6))
    assert jitter(cal) <= goal * jitter(w) * 1.001
    assert float((cal - cal2).std()) > 0.1                # still diverse across seeds


def test_context_low_pass_makes_the_mean_path_smooth() -> None:
    torch.manual_seed(0)
    rough_cfg, smooth_cfg = replace(CFG, context_smooth=0.0), replace(CFG, context_smooth=3.0)
    flows = []
    for cfg in (rough_cfg, smooth_cfg):
        torch.manual_seed(0)
        flow = PoseFlow(cfg)
        with torch.no_grad():
            for layer in (flow.affine.net[-1], *(c.net[-1] for c in flow.couplings)):
                layer.weight.normal_(0, 0.3)
        flows.append(flow.eval())
    fa = torch.randn(2, 60, 8)                            # frame-rate "audio" fluctuations
    with torch.no_grad():
        j_rough, j_smooth = (jitter(f.sample(fa, temperature=0.0)) for f in flows)
    assert j_smooth < 0.3 * j_rough


def test_select_noise_prefers_shrinkage_when_groups_are_few_and_far_apart() -> None:
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(6, 6, generator=g) * torch.tensor([3.0, 2.0, 1.0, 0.3, 0.1, 0.05])
    groups = [c + 0.02 * torch.randn(50, 6, generator=g) for c in centres]
    best, scores = select_noise(groups, (0.0, 0.2, 0.5, 1.0))
    assert best > 0.0 and scores[best] > scores[0.0]
    many = [0.02 * torch.randn(20, 6, generator=g) + torch.randn(6, generator=g) for _ in range(300)]
    best_many, _ = select_noise(many, (0.0, 0.2, 0.5, 1.0))
    assert best_many <= 0.2                               # enough groups: little shrinkage
    assert select_noise(groups[:1], (0.3, 0.1)) == (0.1, {})


def test_pose_losses_eq14() -> None:
    w = torch.zeros(1, 3, 6)
    w_hat = w.clone()
    w_hat[0, 1, 0], w_hat[0, 1, 1] = 3.0, 4.0               # one frame off by a 3-4-5 vector
    assert float(pose_rec_loss(w, w_hat)) == pytest.approx(5.0 / 3)
    assert float(temporal_loss(w, w_hat)) == pytest.approx(5.0)   # (5 + 5) / (N - 1)
    assert float(temporal_loss(w, w + 1.0)) == pytest.approx(0.0)  # constant offsets are free
    flow = PoseFlow(CFG)
    losses = pose_losses(flow, torch.randn(2, 5, 6), torch.randn(2, 5, 8))
    assert set(losses) == {"mle", "rec", "tem"} and all(v.isfinite() for v in losses.values())
    with pytest.raises(ValueError):
        flow.inverse(torch.randn(2, 5, 6), torch.randn(2, 4, 8))


def _coupled_motion(n: int, t: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequences whose offset follows a per-sequence covariate e (3-d) and whose smooth motion
    moves dims 0 and 1 against each other: (w (n,t,6), fa (n,t,8), e (n,3))."""
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(n, 3, generator=g)
    lift = torch.zeros(3, 6)
    lift[0, 0], lift[1, 2], lift[2, 3] = 1.5, -1.0, 1.0
    k = smooth_taps(0.99).float()
    noise = torch.randn(n * 6, 1, t + len(k) - 1, generator=g)
    motion = torch.nn.functional.conv1d(noise, k.view(1, 1, -1)).view(n, 6, t).transpose(1, 2)
    motion[..., 1] = -motion[..., 0] + 0.1 * motion[..., 1]          # dim 1 mirrors dim 0
    w = (e @ lift)[:, None] + 0.5 * motion + 0.05 * torch.randn(n, t, 6, generator=g)
    return w, torch.randn(n, t, 8, generator=g), e


def test_within_sequence_axes_decorrelate_the_motion_and_ridge_offset_recovers_a_map() -> None:
    w, _, e = _coupled_motion(40, 60, 0)
    axes = within_sequence_axes([x.double() for x in w])
    assert torch.allclose(axes.T @ axes, torch.eye(6, dtype=torch.float64), atol=1e-9)
    y = [x.double() @ axes for x in w]
    within = sum((v - v.mean(0)).T @ (v - v.mean(0)) for v in y) / sum(len(v) for v in y)
    off = within - torch.diag(torch.diagonal(within))
    assert float(off.abs().max()) < 1e-9 * float(within.abs().max()) + 1e-12
    center, weights, offset = ridge_offset(w.mean(1), e, ridge=1e-6)
    assert torch.allclose(weights[0, 0], torch.tensor(1.5, dtype=torch.float64), atol=0.15)
    assert torch.allclose(weights[1, 2], torch.tensor(-1.0, dtype=torch.float64), atol=0.15)
    assert float(weights[:, 4:].abs().max()) < 0.15                  # dims the covariate never moves
    assert torch.allclose(offset, w.mean(1).double().mean(0)) and torch.allclose(center, e.double().mean(0))


def test_fitted_axes_keep_the_motions_cross_correlation() -> None:
    """Dims 0 and 1 move against each other within every sequence: in the fitted axes the
    samples do too; modelled per dimension of z ('identity' axes) they would not."""
    w, fa, _ = _coupled_motion(32, 80, 1)

    def corr01(cfg: PoseFlowConfig) -> float:
        flow = PoseFlow(cfg)
        flow.fit_normalization(w)
        flow.fit_temporal_correlation(w, fa)
        with torch.no_grad():
            s = flow.sample(fa, generator=torch.Generator().manual_seed(0))
        s = s - s.mean(1, keepdim=True)
        return float((s[..., 0] * s[..., 1]).mean() / (s[..., 0].std() * s[..., 1].std()))

    w0 = w - w.mean(1, keepdim=True)
    truth = float((w0[..., 0] * w0[..., 1]).mean() / (w0[..., 0].std() * w0[..., 1].std()))
    assert truth < -0.9
    assert corr01(CFG) < -0.8
    assert corr01(replace(CFG, latent_axes="identity")) > -0.5
    with pytest.raises(ValueError, match="latent_axes"):
        PoseFlow(replace(CFG, latent_axes="pca"))


def test_offset_on_expression_follows_the_clip_and_scores_the_right_one_higher() -> None:
    w, fa, e = _coupled_motion(48, 60, 2)
    with pytest.raises(ValueError, match="exp_dim"):
        PoseFlow(CFG).fit_temporal_correlation(w, fa, exp=e)       # 3-d covariate, 10-d expected
    flow = PoseFlow(replace(CFG, exp_dim=3))
    flow.fit_normalization(w)
    flow.fit_temporal_correlation(w, fa, exp=[x for x in e])   # a list of rows works
    assert float(flow.spread.max()) < 1.0                      # the covariate explained part of z
    with torch.no_grad():
        gen = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
        means = torch.stack([flow.sample(fa[i:i + 1], generator=gen(i), exp=e[i:i + 1])[0].mean(0)
                             for i in range(48)])
        free = torch.stack([flow.sample(fa[i:i + 1], generator=gen(i))[0].mean(0) for i in range(48)])
        truth = w.mean(1)
        # sampled clip means track each clip's own offset; without W^e they cannot
        assert float((means - truth).pow(2).mean()) < 0.3 * float((free - truth).pow(2).mean())
        right = flow.sequence_log_prob(w, fa, e)
        wrong = flow.sequence_log_prob(w, fa, e.roll(1, 0))
        assert float((right - wrong).mean()) > 5.0
        assert torch.allclose(flow.process_mean(None, 2), flow.offset.expand(2, 1, -1))
        # temperature 0: the conditional mean path, the same for every seed
        assert torch.allclose(flow.sample(fa[:1], 0.0, generator=gen(0), exp=e[:1]),
                              flow.sample(fa[:1], 0.0, generator=gen(5), exp=e[:1]))
    with pytest.raises(ValueError, match="W\\^e rows"):
        flow.fit_temporal_correlation(w, fa, exp=e[:3])
