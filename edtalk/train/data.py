"""Training samples over the pixel cache: frames of one clip, mouth-swapped pairs, windows.

Every batch is a pure function of ``(seed, step)``: a resumed run draws exactly the
batches an uninterrupted run would, with no sampler state to save. Under DDP every rank
draws the same combined batch and keeps rows ``rank::world`` (interleaved, see
``loop.py`` for why interleaving keeps the discriminator's minibatch statistics equal).

Images go to the networks as float (B,3,S,S) in [-1, 1].
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from edtalk.data.pixel_cache import PixelCache
from edtalk.data.schema import MOUTH

# The region a mouth swap moves (``train.mouth_pose.mouth_region``): the lips (the release's
# box), or the lips and the chin below them (jaw points 6-10), which drop with the lower lip
# when the mouth opens. Left outside the box, the chin's drop is a difference the swap
# does not carry, so the cross-reconstruction teaches PLN to carry it.
MOUTH_REGIONS = {"lips": np.r_[MOUTH], "lips_chin": np.r_[6:11, MOUTH]}


@dataclass
class FrameTable:
    """The frames of one split, with what the samplers need as flat arrays."""
    pixel_index: np.ndarray   # (N,) rows of the pixel cache
    clip: np.ndarray          # (N,) clip code
    identity: np.ndarray      # (N,) identity code
    emotion: np.ndarray       # (N,) emotion code (index into EMOTIONS when known)
    landmarks: np.ndarray     # (N,68,2) crop pixels
    clip_rows: list[np.ndarray]       # rows of each clip, in frame order
    identity_rows: list[np.ndarray]   # rows of each identity
    pixels: PixelCache
    identity_names: list[str] = field(default_factory=list)   # identity code -> name

    @classmethod
    def load(cls, features_dir: str | Path, split: str = "train",
             emotions: Sequence[str] | None = None) -> "FrameTable":
        """The valid frames of ``split``; with ``emotions``, only clips labelled with one of them."""
        from edtalk.data.schema import EMOTIONS

        root = Path(features_dir)
        df = pd.read_parquet(root / "frames.parquet")
        df = df[(df["split"] == split) & df["landmarks_valid"]]
        if emotions is not None:
            df = df[df["emotion"].isin(list(emotions))]
        df = df.sort_values(["clip_id", "frame"]).reset_index(drop=True)
        if df.empty:
            which = f" with emotions {list(emotions)}" if emotions is not None else ""
            raise ValueError(f"no valid {split!r} frames{which} in {root / 'frames.parquet'}")
        clip = pd.factorize(df["clip_id"], sort=True)[0]
        ident, names = pd.factorize(df["identity"], sort=True)
        emo_names = list(EMOTIONS)
        emotion = np.array([emo_names.index(e) if e in emo_names else -1 for e in df["emotion"]])
        lms = np.stack(df["landmarks"].to_numpy()).reshape(len(df), 68, 2).astype(np.float32)
        return cls(df["pixel_index"].to_numpy(np.int64), clip, ident, emotion, lms,
                   [np.flatnonzero(clip == c) for c in range(clip.max() + 1)],
                   [np.flatnonzero(ident == i) for i in range(ident.max() + 1)],
                   PixelCache(root / "pixels.npy"), [str(n) for n in names])

    def __len__(self) -> int:
        return len(self.pixel_index)

    def images(self, rows: np.ndarray) -> torch.Tensor:
        """Rows of this table -> float (B,3,S,S) in [-1, 1]."""
        return to_tensor(self.pixels[self.pixel_index[np.asarray(rows)]])


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (B,S,S,3) -> float (B,3,S,S) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def step_rng(seed: int, step: int, salt: int = 0) -> np.random.Generator:
    """The numpy randomness of one training step: a pure function of (seed, step, salt)."""
    return np.random.default_rng([seed, step, salt])


def step_generator(seed: int, step: int, salt: int = 0) -> torch.Generator:
    """A torch generator seeded from ``step_rng`` (for sampling inside a step's forward pass)."""
    return torch.Generator().manual_seed(int(step_rng(seed, step, salt).integers(2**62)))


def pick_clip_frames(table: FrameTable, rng: np.random.Generator, batch: int, per_clip: int
                     ) -> np.ndarray:
    """(batch, per_clip) distinct rows, each row of frames from one random clip."""
    clips = [c for c, rows in enumerate(table.clip_rows) if len(rows) >= per_clip]
    chosen = rng.choice(clips, size=batch, replace=len(clips) < batch)
    return np.stack([rng.choice(table.clip_rows[c], size=per_clip, replace=False) for c in chosen])


def pick_identity_frames(table: FrameTable, rng: np.random.Generator, batch: int, per_identity: int
                         ) -> np.ndarray:
    """(batch, per_identity) distinct rows, each row of frames of one random identity (any clips)."""
    idents = [i for i, rows in enumerate(table.identity_rows) if len(rows) >= per_identity]
    chosen = rng.choice(idents, size=batch, replace=len(idents) < batch)
    return np.stack([rng.choice(table.identity_rows[i], size=per_identity, replace=False) for i in chosen])


def pick_other_clip_identities(table: FrameTable, rng: np.random.Generator, driving: np.ndarray
                                ) -> np.ndarray:
    """For each driving row, a random frame of the same identity from another of its clips
    (its own clip when the identity has only one): another emotion, pose and mouth."""
    out = np.empty(len(driving), np.int64)
    for k, d in enumerate(driving):
        rows = table.identity_rows[table.identity[d]]
        others = rows[table.clip[rows] != table.clip[d]]
        out[k] = rng.choice(others if len(others) else table.clip_rows[table.clip[d]])
    return out


def random_similarity(images: torch.Tensor, rng: np.random.Generator, amount: float) -> torch.Tensor:
    """Each image warped by its own random similarity transform: rotation up to ``amount``
    radians, translation up to ``amount`` half-widths, scale within 1 +- amount/2 (border
    pixels repeat). The autoencoder's identity frames get it so that copying the identity
    costs more than following the driving frame's motion (the corpus' own head motion is small)."""
    n = images.shape[0]
    ang = torch.from_numpy(rng.uniform(-amount, amount, n)).float()
    scale = torch.from_numpy(rng.uniform(1 - amount / 2, 1 + amount / 2, n)).float()
    shift = torch.from_numpy(rng.uniform(-amount, amount, (n, 2))).float()
    cos, sin = scale * torch.cos(ang), scale * torch.sin(ang)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def shard(x: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Rows rank, rank + world, ... of a combined batch (interleaved DDP split)."""
    if len(x) % world:
        raise ValueError(f"combined batch {len(x)} is not divisible by {world} ranks")
    return x[rank::world]


# --- mouth swap (paper §3.2: I^{m_a}_{p_b}) ---------------------------------------------

def mouth_box(landmarks: np.ndarray, margin: int, region: str = "lips") -> tuple[np.ndarray, np.ndarray]:
    """Centre (2,) x,y and half-extent (2,) of the region's landmarks (``MOUTH_REGIONS``: the
    lips 48-67, or with the chin) plus ``margin`` pixels."""
    if region not in MOUTH_REGIONS:
        raise ValueError(f"mouth region must be one of {sorted(MOUTH_REGIONS)}, got {region!r}")
    pts = landmarks[MOUTH_REGIONS[region]]
    lo, hi = pts.min(0), pts.max(0)
    return (lo + hi) / 2, (hi - lo) / 2 + margin


def feather_mask(half: np.ndarray, feather: int) -> np.ndarray:
    """(2hy+1, 2hx+1) mask: 1 inside, linear ramp to 0 over ``feather`` pixels at the edge."""
    hx, hy = int(half[0]), int(half[1])
    def ramp(h: int) -> np.ndarray:
        d = h - np.abs(np.arange(-h, h + 1))          # distance to the border, 0 at the edge
        return np.clip((d + 1) / (feather + 1), 0, 1) if feather > 0 else np.ones(2 * h + 1)
    return np.outer(ramp(hy), ramp(hx)).astype(np.float32)


def paste_mouth(src: np.ndarray, dst: np.ndarray, lm_src: np.ndarray, lm_dst: np.ndarray,
                margin: int = 3, feather: int = 2, region: str = "lips") -> np.ndarray:
    """Superimpose the mouth of ``src`` onto ``dst`` (uint8 S,S,3): a box around the union of
    both mouths' extents, taken around src's mouth centre and pasted on dst's mouth centre
    (translation alignment), blended with a feathered mask. Pixels outside the box are dst's."""
    c_src, h_src = mouth_box(lm_src, margin, region)
    c_dst, h_dst = mouth_box(lm_dst, margin, region)
    half = np.ceil(np.maximum(h_src, h_dst)).astype(int)
    s = dst.shape[0]
    shift = np.round(c_src - c_dst).astype(int)                  # src = dst + shift
    cx, cy = np.round(c_dst).astype(int)
    mask = feather_mask(half, feather)
    out = dst.astype(np.float32)
    for dy in range(-half[1], half[1] + 1):                       # rows of the box (small)
        y, ys = cy + dy, cy + dy + shift[1]
        if not (0 <= y < s and 0 <= ys < s):
            continue
        x0, x1 = max(cx - half[0], 0, -shift[0]), min(cx + half[0] + 1, s, s - shift[0])
        if x0 >= x1:
            continue
        m = mask[dy + half[1], x0 - (cx - half[0]): x1 - (cx - half[0])][:, None]
        out[y, x0:x1] = m * src[ys, x0 + shift[0]: x1 + shift[0]] + (1 - m) * out[y, x0:x1]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# --- the three stages' batches ------------------------------------------------------------

def autoencoder_batch(table: FrameTable, seed: int, step: int, batch: int, rank: int = 0,
                      world: int = 1, pairs: str = "clip", source_affine: float = 0.0,
                      mouth_margin: int = 3) -> dict[str, torch.Tensor]:
    """Identity frame I^i and driving frame I^d of the same clip (``pairs="clip"``, LIA's
    sampling) or of the same identity (``"identity"``: any two clips, as EDTalk-V is tested);
    with ``source_affine`` > 0 the identity frame is randomly warped (``random_similarity``).
    ``mouth`` masks the driving frame's mouth box (``mouth_masks``), ``face`` that box and the
    brows' and eyes' (``face_masks``)."""
    rng = step_rng(seed, step)
    if pairs not in ("clip", "identity"):
        raise ValueError(f"autoencoder pairs must be 'clip' or 'identity', got {pairs!r}")
    pick = pick_clip_frames if pairs == "clip" else pick_identity_frames
    rows = pick(table, rng, batch, 2)
    identity = table.images(shard(rows, rank, world)[:, 0])
    if source_affine > 0:       # drawn for the combined batch, so every rank keeps its own rows
        warp_rng = step_rng(seed, step, salt=3)
        idx = np.arange(batch)[rank::world]
        full = torch.zeros((batch, *identity.shape[1:]))
        full[idx] = identity
        identity = random_similarity(full, warp_rng, source_affine)[idx]
    driving = shard(rows, rank, world)[:, 1]
    return {"identity": identity, "driving": table.images(driving),
            "mouth": mouth_masks(table.landmarks[driving], identity.shape[-1], mouth_margin),
            "face": face_masks(table.landmarks[driving], identity.shape[-1], mouth_margin)}


def mouth_pose_batch(table: FrameTable, seed: int, step: int, batch: int, rank: int = 0,
                     world: int = 1, margin: int = 3, feather: int = 2, pairs: str = "identity",
                     region: str = "lips") -> dict[str, torch.Tensor]:
    """I^a, I^b (two frames of one clip), the swaps I^{m_a}_{p_b}, I^{m_b}_{p_a}, and an
    identity frame of the same identity, different from a and b (Eqs. 3-4): from any of
    its clips (``pairs="identity"``) or from the clip of a and b (``"clip"``)."""
    if pairs not in ("clip", "identity"):
        raise ValueError(f"mouth_pose pairs must be 'clip' or 'identity', got {pairs!r}")
    rng = step_rng(seed, step)
    rows = pick_clip_frames(table, rng, batch, 2)
    ident = []
    for a, b in rows:
        pool = (table.clip_rows[table.clip[a]] if pairs == "clip" else table.identity_rows[table.identity[a]])
        pool = pool[(pool != a) & (pool != b)]
        ident.append(rng.choice(pool))
    rows = shard(np.concatenate([rows, np.array(ident)[:, None]], 1), rank, world)
    px = table.pixels[table.pixel_index[rows.reshape(-1)]].reshape(len(rows), 3, *table.pixels.frame_shape)
    lm = table.landmarks[rows[:, :2]]
    ab = np.stack([paste_mouth(px[i, 0], px[i, 1], lm[i, 0], lm[i, 1], margin, feather, region)
                   for i in range(len(rows))])
    ba = np.stack([paste_mouth(px[i, 1], px[i, 0], lm[i, 1], lm[i, 0], margin, feather, region)
                   for i in range(len(rows))])
    size = px.shape[2]
    return {"a": to_tensor(px[:, 0]), "b": to_tensor(px[:, 1]), "identity": to_tensor(px[:, 2]),
            "ma_pb": to_tensor(ab), "mb_pa": to_tensor(ba),
            "mouth_a": mouth_masks(lm[:, 0], size, margin, region),
            "mouth_b": mouth_masks(lm[:, 1], size, margin, region)}


UPPER_FACE = slice(17, 48)   # brows, nose, eyes


def fill_box(mask: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> None:
    """Set to 1 the pixels of (S,S) ``mask`` from corner ``lo`` (x,y) to ``hi``, widened to whole
    pixels and clipped to the image."""
    size = mask.shape[-1]
    x0, y0 = np.clip(np.floor(lo).astype(int), 0, size)
    x1, y1 = np.clip(np.ceil(hi).astype(int), 0, size)
    mask[y0:y1, x0:x1] = 1.0


def face_masks(landmarks: np.ndarray, size: int, margin: int) -> torch.Tensor:
    """(B,1,S,S) masks: the box of brows + eyes (landmarks 17-47) and the mouth box."""
    out = mouth_masks(landmarks, size, margin).numpy()
    for i, lm in enumerate(landmarks):
        pts = lm[UPPER_FACE]
        fill_box(out[i, 0], pts.min(0) - margin, pts.max(0) + margin)
    return torch.from_numpy(out)


def mouth_masks(landmarks: np.ndarray, size: int, margin: int, region: str = "lips") -> torch.Tensor:
    """(B,1,S,S) float masks of the box around each frame's mouth (``mouth_box``)."""
    out = np.zeros((len(landmarks), 1, size, size), np.float32)
    for i, lm in enumerate(landmarks):
        c, h = mouth_box(lm, margin, region)
        fill_box(out[i, 0], c - h, c + h)
    return torch.from_numpy(out)


def window_rows(table: FrameTable, row: int, k: int) -> np.ndarray:
    """K rows of the clip around ``row`` (clamped at the clip's ends, so always K rows)."""
    rows = table.clip_rows[table.clip[row]]
    pos = int(np.searchsorted(rows, row))
    start = min(max(pos - k // 2, 0), max(len(rows) - k, 0))
    idx = np.clip(np.arange(start, start + k), 0, len(rows) - 1)
    return rows[idx]


def expression_batch(table: FrameTable, seed: int, step: int, batch: int, window: int,
                     rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
    """Driving frame I^d, K frames around it, and an identity frame I^i of the same person
    from another clip: "sharing the same identity as I^i but differing in mouth shapes, head
    poses and emotional expressions" (§3.2), so that ELN must carry the expression."""
    rng = step_rng(seed, step)
    driving = pick_clip_frames(table, rng, batch, 1)[:, 0]
    rows = shard(np.stack([pick_other_clip_identities(table, rng, driving), driving], 1), rank, world)
    win = np.stack([window_rows(table, d, window) for d in rows[:, 1]])
    imgs = table.images(win.reshape(-1))
    return {"identity": table.images(rows[:, 0]), "driving": table.images(rows[:, 1]),
            "window": imgs.view(len(rows), window, *imgs.shape[1:])}
