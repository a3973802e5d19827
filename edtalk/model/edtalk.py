"""EDTalk: encoder, three latent navigations over orthogonal banks, generator (paper §3.1-3.2).

Attribute names follow the released ``Generator`` so its state dict loads as is:
``enc``, ``dec``, ``direction_lipnonlip`` (mouth | pose bases), ``direction_exp``,
``fc`` (shared trunk), ``lip_fc`` (MLN), ``pose_fc`` (PLN), ``exp_fc`` (ELN).

Reading order, as in the paper's figure:
    f^{i->r}, f^id = E(I^i)                                   encode
    W_m, W_p, W_e  = heads(fc(f^{d->r}))                      weights    (Eq. 1, weights)
    f^{r->m}, f^{r->p}, f^{r->e} = W_c @ B_c^T                motion     (Eq. 1, bases)
    f^{i->d} = f^{i->r} + f^{r->m} + f^{r->p} + f^{r->e}      generate   (Eq. 2)
    I^o = G(f^{i->d}, EEM(f^id, f^{r->e}))                               (Eq. 2, Eq. 8)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import EDTalkConfig
from .encoder import Encoder
from .generator import Generator
from .navigation import BasisBank, NavigationHead, SharedTrunk, navigate, orthonormal_bases

# Parameter groups, for the training stages' freeze/train switches.
GROUPS: dict[str, tuple[str, ...]] = {
    "E": ("enc",),
    "G": ("dec.input", "dec.conv1", "dec.to_rgb1", "dec.convs", "dec.to_rgbs", "dec.to_flows"),
    "MLN": ("lip_fc", "direction_lipnonlip"),   # the mouth/pose bank is one matrix ...
    "PLN": ("pose_fc", "direction_lipnonlip"),  # ... shared by MLN and PLN, as released
    "trunk": ("fc",),
    "ELN": ("exp_fc", "direction_exp"),
    "EEM": ("dec.fineadainresblock",),
}


@dataclass
class Weights:
    """Navigation weights W_m (B,n_m), W_p (B,n_p), W_e (B,n_e); None where not computed."""
    mouth: torch.Tensor | None
    pose: torch.Tensor | None
    exp: torch.Tensor | None

    def cat(self) -> torch.Tensor:
        return torch.cat([w for w in (self.mouth, self.pose, self.exp) if w is not None], dim=1)


@dataclass
class Motion:
    """f^{r->m} + f^{r->p} + f^{r->e} (B,D) and the expression part f^{r->e} (B,D) or None."""
    offset: torch.Tensor
    exp: torch.Tensor | None


class EDTalk(nn.Module):
    def __init__(self, cfg: EDTalkConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.latent_dim
        self.enc = Encoder(cfg)
        self.dec = Generator(cfg)
        self.direction_lipnonlip = BasisBank(d, cfg.n_mouth + cfg.n_pose)
        self.direction_exp = BasisBank(d, cfg.n_exp) if cfg.with_expression else None
        self.fc = SharedTrunk(d, cfg.trunk_layers)
        self.lip_fc = NavigationHead(d, cfg.n_mouth, cfg.head_layers)
        self.pose_fc = NavigationHead(d, cfg.n_pose, cfg.head_layers)
        self.exp_fc = NavigationHead(d, cfg.n_exp, cfg.head_layers) if cfg.with_expression else None

    # --- components -------------------------------------------------------------------
    def encode(self, img: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """E: (B,3,H,W) in [-1,1] -> latent f^{.->r} (B,D), skips f^id coarse->fine."""
        return self.enc(img)

    def bases(self) -> torch.Tensor:
        """Orthonormal bases (D, n_m + n_p [+ n_e]): mouth, pose, expression columns."""
        banks = [self.direction_lipnonlip.weight]
        if self.direction_exp is not None:
            banks.append(self.direction_exp.weight)
        return orthonormal_bases(*banks)

    def bank_slices(self) -> dict[str, slice]:
        m, p, e = self.cfg.n_mouth, self.cfg.n_pose, self.cfg.n_exp
        out = {"mouth": slice(0, m), "pose": slice(m, m + p)}
        if self.cfg.with_expression:
            out["exp"] = slice(m + p, m + p + e)
        return out

    def weights(self, latent: torch.Tensor, *, mouth: bool = True, pose: bool = True,
                exp: bool = True) -> Weights:
        """Navigation weights (Eq. 1) of one latent through the shared trunk and the heads."""
        h = self.fc(latent)
        return Weights(
            mouth=self.lip_fc(h) if mouth else None,
            pose=self.pose_fc(h) if pose else None,
            exp=self.exp_fc(h) if (exp and self.exp_fc is not None) else None,
        )

    def motion(self, w_mouth: torch.Tensor, w_pose: torch.Tensor, w_exp: torch.Tensor | None = None,
               bases: torch.Tensor | None = None) -> Motion:
        """Eq. 1 for each bank: weighted sum of the bases; returns the total and f^{r->e}."""
        q = self.bases() if bases is None else bases
        sl = self.bank_slices()
        offset = navigate(w_mouth, q[:, sl["mouth"]]) + navigate(w_pose, q[:, sl["pose"]])
        exp = None
        if w_exp is not None:
            if "exp" not in sl:
                raise ValueError("expression weights given to a model without an expression bank")
            exp = navigate(w_exp, q[:, sl["exp"]])
            offset = offset + exp
        return Motion(offset, exp)

    def generate(self, id_latent: torch.Tensor, id_skips: list[torch.Tensor], motion: Motion | torch.Tensor,
                 exp_latent: torch.Tensor | None = None, eem_cache: list[torch.Tensor] | None = None,
                 use_eem: bool = True) -> torch.Tensor:
        """Eq. 2: G(f^{i->r} + motion, f^id), with EEM from f^{r->e} (Eq. 8) when available."""
        if isinstance(motion, Motion):
            offset, exp_latent = motion.offset, (motion.exp if exp_latent is None else exp_latent)
        else:
            offset = motion
        if not use_eem or self.dec.fineadainresblock is None:
            exp_latent = None
        return self.dec(id_latent + offset, id_skips, exp_latent, eem_cache)

    def forward(self, identity: torch.Tensor, mouth: torch.Tensor, pose: torch.Tensor | None = None,
                exp: torch.Tensor | None = None) -> torch.Tensor:
        """EDTalk-V for training: identity image, mouth/pose/expression driving images (B each).

        A missing pose or expression source is the mouth source. Differentiable.
        """
        pose = mouth if pose is None else pose
        exp = mouth if exp is None else exp
        id_latent, skips = self.encode(identity)
        lat_m = self.encode(mouth)[0]
        lat_p = lat_m if pose is mouth else self.encode(pose)[0]
        lat_e = lat_m if exp is mouth else (lat_p if exp is pose else self.encode(exp)[0])
        w_m = self.lip_fc(self.fc(lat_m))
        w_p = self.pose_fc(self.fc(lat_p))
        w_e = self.exp_fc(self.fc(lat_e)) if self.exp_fc is not None else None
        return self.generate(id_latent, skips, self.motion(w_m, w_p, w_e))

    # --- bookkeeping for the training stages ------------------------------------------
    def group_parameters(self, *groups: str) -> list[nn.Parameter]:
        """Parameters of the named groups (see GROUPS), without duplicates."""
        unknown = set(groups) - set(GROUPS)
        if unknown:
            raise KeyError(f"unknown parameter groups {sorted(unknown)}; known: {sorted(GROUPS)}")
        prefixes = tuple(p + "." for g in groups for p in GROUPS[g])
        return [p for n, p in self.named_parameters() if n.startswith(prefixes)]

    def set_trainable(self, *groups: str) -> None:
        """Freeze everything, then unfreeze the named groups."""
        keep = {id(p) for p in self.group_parameters(*groups)}
        for p in self.parameters():
            p.requires_grad_(id(p) in keep)

    def parameter_counts(self, depth: int = 1) -> dict[str, int]:
        """Parameters per submodule prefix of the given depth (1: enc, dec, fc, ...)."""
        counts: dict[str, int] = {}
        for name, p in self.named_parameters():
            key = ".".join(name.split(".")[:depth])
            if name.startswith("direction_"):
                key = name.split(".")[0]
            counts[key] = counts.get(key, 0) + p.numel()
        return counts
