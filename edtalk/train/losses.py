"""The training losses of paper §3.2 (Eqs. 5-7, 9-10) as plain functions.

Images are float (B,3,H,W) in [-1, 1]; every loss is a mean over the batch, so that under
DDP the average of the ranks' gradients is the gradient of the combined batch.

* ``rec``  (Eq. 5)  L1 between image and reconstruction.
* ``per``  (Eq. 5)  distance between Phi features. The paper writes a squared L2 on VGG19;
  the release uses L1 with weight 10 per relu slice over a 4-scale pyramid. Both are here
  (``PerceptualConfig.norm``); the default follows the release (L1), which is the loss
  that produced the released weights. Phi is ``edtalk.model.perceptual.PerceptualFeatures``
  (ImageNet VGG19 when its file is cached, else the named offline substitute).
* ``adv``  (Eq. 6)  non-saturating GAN: D minimises softplus(-D(I)) + softplus(D(Î)), i.e.
  -log D(I) - log(1 - D(Î)); G minimises softplus(-D(Î)) = -log D(Î).
* ``fea``  (Eq. 7)  exp(-cos(f, f')) between navigation features of swapped and original images.
* ``mot``  (Eq. 9)  ||phi(I) - phi(Î)||_2 + ||psi(I) - psi(Î)||_2 with substitutes for EMOCA's
  networks (see ``motion_nets.py``).
* ``mc``   (Eq. 10) exp(-cos(MLN(E(Î)), MLN(E(I)))).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from edtalk.model.perceptual import PerceptualFeatures

from .config import PerceptualConfig


def rec(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Eq. 5, L_rec: mean absolute error."""
    return (fake - real).abs().mean()


def masked_rec(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute error inside ``mask`` (B,1,H,W in [0, 1]), each image's region weighing
    the same whatever its area."""
    err = ((fake - real).abs() * mask).sum(dim=(1, 2, 3))
    area = mask.sum(dim=(1, 2, 3)) * fake.shape[1]
    return (err / area.clamp_min(1.0)).mean()


class Perceptual(nn.Module):
    """Eq. 5, L_per over an image pyramid: sum_s sum_l w * mean |Phi_l(x_s) - Phi_l(y_s)|^p."""

    def __init__(self, cfg: PerceptualConfig, seed: int = 0,
                 phi: PerceptualFeatures | None = None) -> None:
        super().__init__()
        self.phi = phi if phi is not None else PerceptualFeatures(cfg.network, seed=seed)
        self.cfg = cfg

    @property
    def name(self) -> str:
        return f"{self.phi.name}/{self.cfg.norm}x{self.cfg.scales}"

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss, real = fake.new_zeros(()), real.detach()
        for s in range(self.cfg.scales):
            if s:
                fake, real = F.avg_pool2d(fake, 2), F.avg_pool2d(real, 2)
            with torch.no_grad():
                target = self.phi(real)
            for a, b in zip(self.phi(fake), target):
                d = a - b
                loss = loss + self.cfg.slice_weight * (d.abs().mean() if self.cfg.norm == "l1"
                                                       else d.pow(2).mean())
        return loss


def adv_generator(fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6, generator side (non-saturating): mean -log sigmoid(D(Î))."""
    return F.softplus(-fake_logits).mean()


def adv_discriminator(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 6, discriminator side: mean -log sigmoid(D(I)) - log(1 - sigmoid(D(Î)))."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def exp_neg_cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """exp(-S(a, b)) averaged over the batch (Eqs. 7, 10); 1/e when aligned, e when opposite."""
    return torch.exp(-F.cosine_similarity(a, b, dim=1, eps=1e-8)).mean()


def fea(swapped: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Eq. 7: sum over (feature of a swapped image, feature of the original) pairs."""
    return sum(exp_neg_cos(f, g) for f, g in swapped)


def mot(fake: torch.Tensor, real: torch.Tensor,
        nets: list[Callable[[torch.Tensor], torch.Tensor]]) -> torch.Tensor:
    """Eq. 9: sum over feature networks of the batch-mean L2 distance (not squared).

    The real image's features are targets (no gradient)."""
    loss = fake.new_zeros(())
    for net in nets:
        with torch.no_grad():
            target = net(real)
        d = (net(fake) - target).flatten(1)
        loss = loss + (d.pow(2).sum(1) + 1e-12).sqrt().mean()
    return loss


def mouth_consistency(mln_fake: torch.Tensor, mln_real: torch.Tensor) -> torch.Tensor:
    """Eq. 10: exp(-S(MLN(E(Î)), MLN(E(I^d))))."""
    return exp_neg_cos(mln_fake, mln_real.detach())
