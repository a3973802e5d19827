"""Typed configuration of the EDTalk generator and discriminator.

Two profiles share one code path:

* ``paper``: 256 px, 512-d latent, 20/6/10 bases, StyleGAN2 channel table with
  ``channel_multiplier`` 1 -- exactly the shapes of the released ``EDTalk.pt``.
* ``tiny``: the CPU default, 64 px, 128-d latent, 16..64 channels, same banks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class EDTalkConfig:
    size: int = 256                 # image side (power of two, >= 8)
    latent_dim: int = 512           # dimension of f^{.->r} and of every basis
    n_mouth: int = 20               # MLN bank size
    n_pose: int = 6                 # PLN bank size
    n_exp: int = 10                 # ELN bank size
    channel_base: int = 64          # channels at full resolution ...
    channel_max: int = 512          # ... doubling per halving, capped here
    eem_hidden: int = 128           # hidden width of the EEM's AdaIN MLPs
    trunk_layers: int = 4           # shared navigation trunk `fc`
    head_layers: int = 3            # each of lip_fc / pose_fc / exp_fc
    with_expression: bool = True    # False = the `EDTalk_lip_pose` layout (no ELN, no EEM)
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)

    def __post_init__(self) -> None:
        log = math.log2(self.size)
        if self.size < 8 or log != int(log):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.n_bases > self.latent_dim:
            raise ValueError(f"{self.n_bases} bases cannot be orthonormal in {self.latent_dim} dimensions")

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_bases(self) -> int:
        return self.n_mouth + self.n_pose + (self.n_exp if self.with_expression else 0)

    def channels(self, resolution: int) -> int:
        """Channels at a feature resolution (official: min(512, 64 * 256 / res))."""
        return min(self.channel_max, self.channel_base * self.size // resolution)

    @property
    def levels(self) -> list[int]:
        """Generator / skip resolutions, coarse to fine: 8, 16, ..., size."""
        return [2 ** i for i in range(3, self.log_size + 1)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["blur_kernel"] = list(self.blur_kernel)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EDTalkConfig":
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        if "blur_kernel" in kw:
            kw["blur_kernel"] = tuple(kw["blur_kernel"])
        return cls(**kw)


PROFILES: dict[str, EDTalkConfig] = {
    "paper": EDTalkConfig(),
    "tiny": EDTalkConfig(size=64, latent_dim=128, channel_base=16, channel_max=64, eem_hidden=64),
}


def profile(name: str, **overrides: Any) -> EDTalkConfig:
    """The named profile, with optional field overrides (e.g. ``with_expression=False``)."""
    if name not in PROFILES:
        raise KeyError(f"unknown model profile {name!r}; choose from {sorted(PROFILES)}")
    return EDTalkConfig.from_dict({**PROFILES[name].to_dict(), **overrides})
