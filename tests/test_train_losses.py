"""Each training loss on inputs whose value is known by hand (paper Eqs. 5-7, 9-10)."""

from __future__ import annotations

import math

import pytest
import torch

from edtalk.train import losses as L
from edtalk.train.config import PerceptualConfig


def test_rec_is_the_mean_absolute_error():
    assert L.rec(torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)).item() == 1.0
    assert L.rec(torch.full((1, 3, 2, 2), 0.5), torch.full((1, 3, 2, 2), -0.5)).item() == 1.0


@pytest.mark.parametrize("norm, expected", [("l1", 2.0), ("l2", 4.0)])
def test_perceptual_on_a_constant_offset_counts_only_the_image_slice(norm, expected):
    # image_gradients features: the image and its x/y differences; a constant offset of 2
    # moves only the image (|2| or 2^2), at every pyramid scale, times the slice weight.
    per = L.Perceptual(PerceptualConfig(network="image_gradients", norm=norm, scales=2, slice_weight=0.5))
    x = torch.rand(2, 3, 8, 8)
    assert per(x + 2, x).item() == pytest.approx(2 * 0.5 * expected, rel=1e-6)
    assert per(x, x).item() == 0.0


def test_masked_rec_is_the_mean_error_inside_each_mask_whatever_its_area():
    fake, real = torch.zeros(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    fake[0, :, 0, 0] = 1.0                     # image 0: error 1 on its one-pixel mask
    fake[1, :, :2, :2] = 0.5                   # image 1: error 0.5 on a four-pixel mask ...
    fake[1, :, 3, 3] = 9.0                     # ... and a large error outside it, ignored
    mask = torch.zeros(2, 1, 4, 4)
    mask[0, 0, 0, 0] = 1.0
    mask[1, 0, :2, :2] = 1.0
    assert L.masked_rec(fake, real, mask).item() == pytest.approx((1.0 + 0.5) / 2)


def test_perceptual_gradient_flows_to_the_fake_only():
    per = L.Perceptual(PerceptualConfig(network="image_gradients"))
    fake, real = torch.rand(1, 3, 8, 8, requires_grad=True), torch.rand(1, 3, 8, 8, requires_grad=True)
    per(fake, real).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0 and real.grad is None


def test_adversarial_losses_are_the_non_saturating_log_terms():
    zero = torch.zeros(4, 1)
    assert L.adv_generator(zero).item() == pytest.approx(math.log(2))
    assert L.adv_discriminator(zero, zero).item() == pytest.approx(2 * math.log(2))
    # a confident, correct D: loss -> 0; G fooled nothing: large loss
    assert L.adv_discriminator(torch.full((4, 1), 20.0), torch.full((4, 1), -20.0)).item() < 1e-6
    assert L.adv_generator(torch.full((4, 1), -20.0)).item() == pytest.approx(20.0, rel=1e-6)


def test_exp_neg_cos_is_inverse_e_aligned_one_orthogonal_e_opposite():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert L.exp_neg_cos(a, 3 * a).item() == pytest.approx(math.exp(-1))
    assert L.exp_neg_cos(a, a.flip(1)).item() == pytest.approx(1.0)
    assert L.exp_neg_cos(a, -a).item() == pytest.approx(math.e)


def test_fea_sums_its_pairs():
    a = torch.tensor([[1.0, 0.0]])
    assert L.fea([(a, a), (a, -a)]).item() == pytest.approx(math.exp(-1) + math.e)


def test_mot_is_the_l2_distance_of_each_network_summed():
    fake, real = torch.zeros(2, 3, 2, 2), torch.zeros(2, 3, 2, 2)
    fake[:, 0, 0, 0] = 3.0
    fake[:, 1, 0, 0] = 4.0                          # per-sample L2 distance 5 for the identity net
    nets = [lambda x: x, lambda x: 2 * x]
    assert L.mot(fake, real, nets).item() == pytest.approx(5.0 + 10.0, rel=1e-5)
    f = fake.clone().requires_grad_()
    L.mot(f, real, nets).backward()
    assert torch.isfinite(f.grad).all()
    z = torch.zeros(1, 3, 2, 2, requires_grad=True)   # zero distance: finite gradient
    L.mot(z, torch.zeros(1, 3, 2, 2), nets).backward()
    assert torch.isfinite(z.grad).all()


def test_mouth_consistency_does_not_push_the_real_side():
    fake = torch.tensor([[1.0, 1.0]], requires_grad=True)
    real = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = L.mouth_consistency(fake, real)
    assert loss.item() == pytest.approx(math.exp(-1 / math.sqrt(2)))
    loss.backward()
    assert real.grad is None and fake.grad.abs().sum() > 0
