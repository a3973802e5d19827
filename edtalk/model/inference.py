"""Fast EDTalk-V inference (paper §3.1 at test time): same output as the release, less work.

What the release recomputes per frame and this path does not:
* the identity image is encoded once per video (latent, skips, its own weights);
* a driving video that supplies several components is encoded once per frame, and
  distinct sources of one chunk share one batched encoder call;
* the shared trunk ``fc`` runs once per distinct source, the QR once per call;
* EEM: IN(conv2(f^id)) depends on the identity only and is cached; per frame only the
  AdaIN affine of f^{r->e} remains; the overwritten conv1 branch is never computed;
* frames go through E and G in batches under ``torch.inference_mode``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .edtalk import EDTalk


@dataclass
class Identity:
    latent: torch.Tensor                    # f^{i->r} (1, D)
    skips: list[torch.Tensor]               # f^id, coarse -> fine, batch 1
    eem_cache: list[torch.Tensor] | None    # IN(conv2(f^id)) per level
    own: dict[str, torch.Tensor]            # identity's own navigation weights per component


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.inference_mode()
def prepare_identity(model: EDTalk, image: torch.Tensor, channels_last: bool = True) -> Identity:
    """Encode the identity frame (1,3,H,W) once. ``channels_last`` (NHWC) is faster on CPU
    (oneDNN's depthwise blur and 1x1 / transposed convs) and carries through E and G."""
    if image.dim() == 3:
        image = image.unsqueeze(0)
    latent, skips = model.encode(_layout(image, channels_last))
    w = model.weights(latent)
    own = {"mouth": w.mouth, "pose": w.pose}
    if w.exp is not None:
        own["exp"] = w.exp
    cache = model.dec.eem_cache(skips) if model.dec.fineadainresblock is not None else None
    return Identity(latent, skips, cache, own)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


@torch.inference_mode()
def drive(model: EDTalk, identity: Identity, mouth: torch.Tensor | None = None,
          pose: torch.Tensor | None = None, exp: torch.Tensor | None = None,
          batch_size: int = 8, clamp: bool = True, channels_last: bool = True) -> torch.Tensor:
    """EDTalk-V: frames (T,3,H,W) driven by mouth / pose / expression sources, each (T,3,H,W) or None.

    A missing source keeps the identity's own component. Passing the same tensor for
    several components costs one encoder pass per frame. Returns (T,3,H,W), clamped to
    [-1, 1] like the release's demo when ``clamp``.
    """
    sources = {"mouth": mouth, "pose": pose}
    if model.exp_fc is not None:
        sources["exp"] = exp
    elif exp is not None:
        raise ValueError("this model has no expression bank (lip/pose layout); pass exp=None")
    given = [s for s in sources.values() if s is not None]
    if not given:
        raise ValueError("at least one driving source is needed")
    n = given[0].shape[0]
    if any(s.shape[0] != n for s in given):
        raise ValueError(f"driving sources differ in length: {[s.shape[0] for s in given]}")
    unique: list[torch.Tensor] = []
    for s in given:
        if not any(s is u for u in unique):
            unique.append(s)
    heads = {"mouth": model.lip_fc, "pose": model.pose_fc, "exp": model.exp_fc}
    q = model.bases()
    out = []
    for sl in _chunks(n, batch_size):
        b = sl.stop - sl.start
        lat = model.encode(_layout(torch.cat([u[sl] for u in unique]), channels_last))[0]  # one E pass
        trunk = model.fc(lat).split(b)                                   # shared trunk once per source
        w = {}
        for name, src in sources.items():
            if src is None:
                w[name] = identity.own[name].expand(b, -1)
            else:
                k = next(i for i, u in enumerate(unique) if u is src)
                w[name] = heads[name](trunk[k])
        motion = model.motion(w["mouth"], w["pose"], w.get("exp"), bases=q)  # Eq. 1
        img = model.generate(identity.latent, identity.skips, motion, eem_cache=identity.eem_cache)  # Eq. 2
        out.append(img.clamp(-1, 1) if clamp else img)
    return torch.cat(out).contiguous()


def edtalk_v(model: EDTalk, identity_image: torch.Tensor, mouth: torch.Tensor | None = None,
             pose: torch.Tensor | None = None, exp: torch.Tensor | None = None,
             batch_size: int = 8, clamp: bool = True, channels_last: bool = True) -> torch.Tensor:
    """Convenience: :func:`prepare_identity` then :func:`drive`."""
    ident = prepare_identity(model, identity_image, channels_last)
    return drive(model, ident, mouth, pose, exp, batch_size, clamp, channels_last)
