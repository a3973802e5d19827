"""The three training stages: which groups train, which losses apply (paper §3.2).

A stage is data, not a loop: the groups it trains (names from ``edtalk.model.GROUPS``),
the batch it draws, and ``losses(ctx, batch)`` returning the weighted loss terms, the
fakes shown to D and their real counterparts. ``loop.train`` runs any of them, and
``check_frozen`` asserts that every parameter outside the trained groups is bit-identical
before and after.

Which groups:

* ``autoencoder``: E, G, the shared trunk ``fc`` and the mouth/pose navigation (``lip_fc``,
  ``pose_fc``, ``direction_lipnonlip``). E and G can only learn to reconstruct a driving
  frame if something carries its motion, and LIA's base (what the paper starts from)
  has one motion bank: the 26 mouth+pose bases together play that role here. ELN and
  EEM stay untouched (expression is added in the last stage); the generator runs
  without EEM. Under QR the mouth/pose bases never depend on the expression bank.
* ``mouth_pose``: "only MLN and PLN" = ``trunk`` + ``MLN`` + ``PLN`` groups, i.e.
  MLP^m = lip_fc o fc, MLP^p = pose_fc o fc (the trunk is the first half of both MLPs of
  Eq. 1; the release has no other place for it) and their bank ``direction_lipnonlip``.
  E and G are frozen (the release trains G too; the paper does not, and we follow the
  paper).
* ``expression``: ``ELN`` (``exp_fc``, ``direction_exp``) + ``EEM``. The trunk is frozen, so
  MLN/PLN's outputs cannot move; ELN sees the frozen trunk's features.

The discriminator D is an auxiliary of every stage (not part of EDTalk) and trains in
each of them; its weights pass from stage to stage in the checkpoints.
"""

from __future__ import annotations

import math

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from edtalk.model import EDTalk

from . import losses as L
from .config import StageConfig
from .data import FrameTable, autoencoder_batch, expression_batch, mouth_pose_batch

Batch = dict[str, torch.Tensor]
Terms = dict[str, torch.Tensor]


@dataclass
class Context:
    """What a stage's losses need besides the batch."""
    model: EDTalk
    discriminator: torch.nn.Module | None
    perceptual: L.Perceptual
    cfg: StageConfig
    motion_nets: list[Callable[[torch.Tensor], torch.Tensor]] = field(default_factory=list)


@dataclass
class StageOutput:
    terms: Terms                 # weighted loss terms; their sum is minimised
    fake: torch.Tensor           # shown to D (cross/expression reconstructions)
    real: torch.Tensor           # the matching ground truth
    stats: dict[str, float] = field(default_factory=dict)  # unweighted, for the logs


@dataclass(frozen=True)
class Stage:
    name: str
    groups: tuple[str, ...]
    loss_names: tuple[str, ...]
    make_batch: Callable[[FrameTable, StageConfig, int, int, int], Batch]
    losses: Callable[[Context, Batch], StageOutput]


def _image_terms(ctx: Context, fake: torch.Tensor, real: torch.Tensor) -> Terms:
    """L_rec + L_per + L_adv (Eqs. 5-6), weighted."""
    w = ctx.cfg.weights
    terms = {"rec": w.rec * L.rec(fake, real), "per": w.per * ctx.perceptual(fake, real)}
    if ctx.discriminator is not None and w.adv:
        terms["adv"] = w.adv * L.adv_generator(ctx.discriminator(fake))
    return terms


# --- train_autoencoder --------------------------------------------------------------------

def autoencoder_losses(ctx: Context, batch: Batch) -> StageOutput:
    m = ctx.model
    id_lat, skips = m.encode(batch["identity"])
    w = m.weights(m.encode(batch["driving"])[0], exp=False)
    fake = m.generate(id_lat, skips, m.motion(w.mouth, w.pose), use_eem=False)   # Eq. 2, no EEM
    terms = _image_terms(ctx, fake, batch["driving"])
    if ctx.cfg.weights.mouth:                   # not in the paper (train.*.weights.mouth)
        terms["mouth"] = ctx.cfg.weights.mouth * L.masked_rec(fake, batch["driving"], batch["mouth"])
    if ctx.cfg.weights.face:                    # not in the paper (train.autoencoder.weights.face)
        terms["face"] = ctx.cfg.weights.face * L.masked_rec(fake, batch["driving"], batch["face"])
    return StageOutput(terms, fake, batch["driving"])


# --- train_mouth_pose (Eqs. 3-7) -----------------------------------------------------------

def mouth_pose_losses(ctx: Context, batch: Batch) -> StageOutput:
    m, wts = ctx.model, ctx.cfg.weights
    n = batch["a"].shape[0]
    with torch.no_grad():                       # E is frozen: latents carry no gradient
        lat = m.encode(torch.cat([batch["ma_pb"], batch["mb_pa"], batch["a"], batch["b"]]))[0]
        id_lat, skips = m.encode(batch["identity"])
    w = m.weights(lat, exp=False)
    q = m.bases()
    sl = m.bank_slices()
    f_m = w.mouth @ q[:, sl["mouth"]].t()       # f^{r->m} of the four images (Eq. 1)
    f_p = w.pose @ q[:, sl["pose"]].t()
    i_ab, i_ba, i_a, i_b = (slice(k * n, (k + 1) * n) for k in range(4))
    # Eqs. 3-4: f^{p_b}, f^{m_a} from I^{m_a}_{p_b}; f^{p_a}, f^{m_b} from I^{m_b}_{p_a}
    motion = torch.cat([f_m[i_ba] + f_p[i_ab],   # -> Î^b = G(f^{p_b}, f^{m_b})
                        f_m[i_ab] + f_p[i_ba],   # -> Î^a = G(f^{p_a}, f^{m_a})
                        f_m[i_a] + f_p[i_a],     # self-reconstruction of I^a
                        f_m[i_b] + f_p[i_b]])    # ... and of I^b
    out = m.generate(id_lat.repeat(4, 1), [s.repeat(4, 1, 1, 1) for s in skips], motion, use_eem=False)
    cross, self_rec = out[: 2 * n], out[2 * n:]
    real = torch.cat([batch["b"], batch["a"]])
    terms = _image_terms(ctx, cross, real)      # Eqs. 5-6 on the cross reconstructions
    real_self = torch.cat([batch["a"], batch["b"]])
    terms["self"] = wts.self * (L.rec(self_rec, real_self) + ctx.perceptual(self_rec, real_self))
    if wts.mouth:                               # not in the paper (train.*.weights.mouth)
        masks = torch.cat([batch["mouth_b"], batch["mouth_a"], batch["mouth_a"], batch["mouth_b"]])
        terms["mouth"] = wts.mouth * L.masked_rec(out, torch.cat([real, real_self]), masks)
    # Eq. 7: features of the swapped images vs those of the originals
    terms["fea"] = wts.fea * L.fea([(f_p[i_ab], f_p[i_b]), (f_m[i_ab], f_m[i_a]),
                                    (f_p[i_ba], f_p[i_a]), (f_m[i_ba], f_m[i_b])])
    return StageOutput(terms, cross, real)


# --- train_expression (Eqs. 8-10) ----------------------------------------------------------

def expression_losses(ctx: Context, batch: Batch) -> StageOutput:
    m, wts = ctx.model, ctx.cfg.weights
    b, k = batch["window"].shape[:2]
    with torch.no_grad():                       # E, trunk, MLN, PLN frozen
        id_lat, skips = m.encode(batch["identity"])
        lat_d = m.encode(batch["driving"])[0]
        w_d = m.weights(lat_d, exp=False)
        h_win = m.fc(m.encode(batch["window"].flatten(0, 1))[0])
    # f^{r->e} averaged over the K-frame window (linear, so averaging W^e is the same)
    w_e = m.exp_fc(h_win).view(b, k, -1).mean(1)
    fake = m.generate(id_lat, skips, m.motion(w_d.mouth, w_d.pose, w_e))   # Eq. 2 with EEM (Eq. 8)
    real = batch["driving"]
    terms = _image_terms(ctx, fake, real)
    if ctx.motion_nets and wts.mot:
        terms["mot"] = wts.mot * L.mot(fake, real, ctx.motion_nets)       # Eq. 9
    if wts.mc:
        mln_fake = m.lip_fc(m.fc(m.encode(fake)[0]))                       # Eq. 10
        terms["mc"] = wts.mc * L.mouth_consistency(mln_fake, w_d.mouth)
    return StageOutput(terms, fake, real)


STAGES: dict[str, Stage] = {
    "autoencoder": Stage(
        "autoencoder", ("E", "G", "trunk", "MLN", "PLN"), ("rec", "per", "adv", "mouth", "face"),
        lambda t, c, step, r, w: autoencoder_batch(t, c.seed, step, c.batch, r, w, c.pairs,
                                                   c.source_affine, c.mouth_margin),
        autoencoder_losses),
    "mouth_pose": Stage(
        "mouth_pose", ("trunk", "MLN", "PLN"), ("rec", "per", "adv", "self", "fea", "mouth"),
        lambda t, c, step, r, w: mouth_pose_batch(t, c.seed, step, c.batch, r, w,
                                                  c.mouth_margin, c.mouth_feather, c.pairs,
                                                  c.mouth_region),
        mouth_pose_losses),
    "expression": Stage(
        "expression", ("ELN", "EEM"), ("rec", "per", "adv", "mot", "mc"),
        lambda t, c, step, r, w: expression_batch(t, c.seed, step, c.batch, c.window, r, w),
        expression_losses),
}


def identity_copy_start(model: EDTalk, mask_logit: float = 5.0) -> None:
    """Start a fresh E and G at the still-identity baseline: the output is the identity frame
    (up to the release's grid quirk, linspace(-1, 1) sampled with align_corners=False: a
    63/64 zoom with bilinear resampling), so training only has to learn the motion.

    Three initial values, the shapes and forward pass stay the release's:
    * E's first 1x1 conv carries the image in six channels, +x and -x, whose difference
      survives the leaky ReLU as 1.2 sqrt(2) x;
    * every ToFlow and every coarse ToRGB starts at zero weights (identity warp, no colour),
      the finest ToFlow's mask at sigmoid(``mask_logit``);
    * the finest ToRGB reads x back from that difference, with biases that keep its leaky
      ReLU in the linear part for x in [-sqrt 2, sqrt 2].
    Randomly initialised heads first produce large random warps, and a generator that must
    learn to copy before it can learn motion spends most of a CPU budget on blur."""
    fine = model.cfg.channels(model.cfg.size)
    if fine < 6:
        raise ValueError(f"identity-copy start needs >= 6 full-resolution channels, got {fine}")
    with torch.no_grad():
        for head in model.dec.to_flows:
            head.conv.weight.zero_()
        for head in model.dec.to_rgbs:
            head.conv[0].weight.zero_()
        rgb_conv, act = model.enc.net_app.convs[0][0], model.enc.net_app.convs[0][1]
        rgb_conv.weight[:6].zero_()
        act.bias[:, :6] = 0.0
        model.dec.to_flows[-1].bias[:, 2] = mask_logit
        mask = torch.sigmoid(torch.tensor(mask_logit)).item()
        to_rgb = model.dec.to_rgbs[-1]
        back = 1.0 / (2.4 * mask * to_rgb.conv[0].scale)     # x = (f_c - f_{c+3}) / (1.2 sqrt 2)
        for c in range(3):
            rgb_conv.weight[c, c] = 1.0 / rgb_conv.scale
            rgb_conv.weight[c + 3, c] = -1.0 / rgb_conv.scale
            to_rgb.conv[0].weight[c, c] = back
            to_rgb.conv[0].weight[c, c + 3] = -back
        to_rgb.conv[1].bias.fill_(1.0)                      # pre-activation x / sqrt 2 + 1 >= 0
        to_rgb.bias.fill_(-math.sqrt(2.0))                  # sqrt 2 (x / sqrt 2 + 1) - sqrt 2 = x


def restart_navigation(model: EDTalk, seed: int = 0) -> None:
    """Fresh MLN, PLN and trunk on the loaded E and G, for the mouth-pose stage: the paper
    trains new MLN/PLN on a pretrained encoder and generator (LIA's, whose own motion path
    carried every facial motion, expression included). The trunk and the mouth/pose bank
    get a seeded fresh model's initial values; the last layer of each head starts at zero,
    so the stage starts at zero mouth and pose motion."""
    torch.manual_seed(seed)
    fresh = EDTalk(model.cfg)
    with torch.no_grad():
        for name in ("fc", "lip_fc", "pose_fc", "direction_lipnonlip"):
            getattr(model, name).load_state_dict(getattr(fresh, name).state_dict())
        for head in (model.lip_fc, model.pose_fc):
            for p in head[-1].parameters():
                p.zero_()


def neutral_start(model: EDTalk) -> None:
    """Start the expression stage exactly at the mouth-pose model's output: ELN's last layer
    predicts W^e = 0 (no expression motion) and each EEM block is the identity map
    (gamma = -1, beta = 0 cancel IN(conv2(f^id)) in Eq. 8). Both receive gradients from the
    first step (ReZero-style); randomly initialised, they would first have to undo a large
    perturbation of an already trained generator."""
    with torch.no_grad():
        last = model.exp_fc[-1]
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()
        for block in model.dec.fineadainresblock or []:
            block.norm2.mlp_gamma.weight.zero_()
            block.norm2.mlp_gamma.bias.fill_(-1.0)
            block.norm2.mlp_beta.weight.zero_()
            block.norm2.mlp_beta.bias.zero_()


# --- freezing ---------------------------------------------------------------------------

def frozen_snapshot(model: EDTalk, groups: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Copies of every parameter and buffer outside the trained groups."""
    trained = {id(p) for p in model.group_parameters(*groups)}
    snap = {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in trained}
    snap.update({f"buffer:{n}": b.detach().clone() for n, b in model.named_buffers()})
    return snap


def check_frozen(model: EDTalk, before: dict[str, torch.Tensor]) -> None:
    """Raise AssertionError naming the parameters that moved (bit-level comparison)."""
    now = dict(model.named_parameters())
    now.update({f"buffer:{n}": b for n, b in model.named_buffers()})
    moved = [n for n, t in before.items() if not torch.equal(now[n].detach(), t)]
    if moved:
        raise AssertionError(f"{len(moved)} frozen tensors changed during the stage, e.g. {moved[:5]}")


def describe(stage: Stage, model: EDTalk) -> dict[str, Any]:
    n_train = sum(p.numel() for p in model.group_parameters(*stage.groups))
    return {"stage": stage.name, "groups": list(stage.groups), "losses": list(stage.loss_names),
            "trainable_params": n_train, "total_params": sum(p.numel() for p in model.parameters())}
