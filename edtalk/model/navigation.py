"""Component-aware Latent Navigation (paper §3.1, Eq. 1): MLN, PLN, ELN.

Each navigation maps a latent to weights W over its bank of bases. As released, the
three heads share one 4-layer trunk (``fc``) and no layer has a nonlinearity. The banks
are stored as raw matrices (``direction_lipnonlip`` = mouth | pose, ``direction_exp``)
and orthonormalised *jointly* at every use by a reduced QR of their concatenation, so
bases are orthogonal within and across banks. Householder QR builds column j from
columns <= j, so appending the expression bank never changes the mouth/pose bases.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import EqualLinear

QR_EPS = 1e-8  # added to the raw bank before QR, as released


class SharedTrunk(nn.Sequential):
    """``fc``: stacked equalised linears, no activation."""

    def __init__(self, dim: int, layers: int = 4) -> None:
        super().__init__(*[EqualLinear(dim, dim) for _ in range(layers)])


class NavigationHead(nn.Sequential):
    """``lip_fc`` / ``pose_fc`` / ``exp_fc``: dim -> dim -> ... -> n weights, no activation."""

    def __init__(self, dim: int, n: int, layers: int = 3) -> None:
        super().__init__(*[EqualLinear(dim, dim) for _ in range(layers - 1)], EqualLinear(dim, n))


class BasisBank(nn.Module):
    """Raw, unorthogonalised bases as columns of ``weight`` (latent_dim x n)."""

    def __init__(self, dim: int, n: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim, n))


def orthonormal_bases(*banks: torch.Tensor) -> torch.Tensor:
    """Q of the reduced QR of [bank_1 | bank_2 | ...] + 1e-8: (D, n_total), Q^T Q = I."""
    q, _ = torch.linalg.qr(torch.cat(banks, dim=1) + QR_EPS, mode="reduced")
    return q


def navigate(weights: torch.Tensor, bases: torch.Tensor) -> torch.Tensor:
    """Eq. 1: f^{r->c} = sum_i w_i b_i, batched: (B, n) @ (n, D)."""
    return weights @ bases.t()
