"""Disentanglement proof on the synthetic corpus: swap one driving source, only its factor moves.

For a pair (identity clip I, source clip S of another identity) and one factor f in
{pose, mouth, exp}, the model is driven by S's frames for f only (the other two keep I's
own); the output's landmarks are read back with a landmarker (the regressor trained in
the pipeline) and turned into factor values by :class:`FactorReader`, a ridge map from
68 normalised landmarks to the corpus' ground-truth factors, fitted on the train
split's ground-truth landmarks (points centred, in inter-ocular units; see ``READ_FROM``):

* pose: yaw, pitch, roll (degrees)              -- error: mean absolute difference
* mouth: mouth_open, mouth_width (corpus units) -- error: mean absolute difference
* exp: intensity-weighted one-hot of the 7 non-neutral emotions (neutral = 0)
  -- error: mean Euclidean distance

Each factor's estimate is compared with the swapped source's ground truth (per frame) and
with the identity frame's ground truth. A disentangled model gives, for the swapped factor,
a small error against the source and a larger one against the identity, and for the other
two factors a small error against the identity. Across identities a fixed offset (another
face's lip width, say) weighs on these absolute errors, so :func:`factor_gain` also asks
whether the output *follows* the source over time: the slope of the output's pose / mouth
on the source's (1 = all of its motion, 0 = none). ``floor`` rows read the real source
frames the same way, and the ``ideal`` rows the corpus' rendering of the perfect swap
(:func:`swap_target`): what a perfectly disentangled model scores through this landmarker
and reader.

Two sharper checks need no landmarks: :func:`pixel_run` scores each output against its
rendered ideal, next to what the still identity frame scores against the same target; and
:func:`emotion_run` asks the emotion evaluator whether each output shows the source's
emotion or the identity's (landmarks read an open mouth or a turned head partly as an
emotion; the classifier sees the whole face). :func:`expression_carriers` asks which swap
moves the brows, eyelids and mouth corners the way the source's expression would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from edtalk import generate as gen
from edtalk.data.pixel_cache import PixelCache
from edtalk.data.schema import EMOTIONS

FACTORS: tuple[str, ...] = ("pose", "mouth", "exp")
POSE = ("yaw", "pitch", "roll")
MOUTH = ("mouth_open", "mouth_width")
EXPRESSIVE = tuple(e for e in EMOTIONS if e != "neutral")
Landmarker = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]   # frames -> (T,68,2), valid


# Landmarks each factor is read from, and its ridge strength (chosen on held-out ground truth:
# R^2 on the val / test splits' true landmarks: pose 0.99, mouth 0.78 / 0.64, expression 0.92).
READ_FROM: dict[str, tuple[np.ndarray, float]] = {
    "pose": (np.arange(68), 1e-5),
    "mouth": (np.arange(48, 68), 1e-5),
    "exp": (np.arange(68), 1e-5),
}


def features(landmarks: np.ndarray, points: np.ndarray | slice = slice(None)) -> np.ndarray:
    """(T,68,2) -> (T,2k): the chosen points centred on their mean, in inter-ocular units."""
    lm = np.asarray(landmarks, np.float64).reshape(len(landmarks), 68, 2)
    io = np.linalg.norm(lm[:, 45] - lm[:, 36], axis=-1)
    sel = lm[:, points]
    c = sel - sel.mean(axis=1, keepdims=True)
    return (c / np.maximum(io, 1e-6)[:, None, None]).reshape(len(lm), -1)


def expression_code(emotion: Iterable[str], intensity: Iterable[float]) -> np.ndarray:
    """(T,7): intensity/3 at the emotion's slot, zeros for neutral."""
    emotion, intensity = list(emotion), np.asarray(list(intensity), np.float64)
    out = np.zeros((len(emotion), len(EXPRESSIVE)))
    for i, (e, k) in enumerate(zip(emotion, intensity)):
        if e in EXPRESSIVE:
            out[i, EXPRESSIVE.index(e)] = k / 3.0
    return out


def factor_targets(gt: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"pose": gt[list(POSE)].to_numpy(np.float64), "mouth": gt[list(MOUTH)].to_numpy(np.float64),
            "exp": expression_code(gt["emotion"], gt["intensity"])}


def factor_error(name: str, estimate: np.ndarray, target: np.ndarray) -> float:
    """Pose, mouth: mean absolute difference; exp: mean Euclidean distance (target broadcasts)."""
    d = np.asarray(estimate) - np.asarray(target)
    return float(np.linalg.norm(d, axis=-1).mean() if name == "exp" else np.abs(d).mean())


def factor_gain(estimate: np.ndarray, target: np.ndarray) -> float:
    """How much of the target's motion over frames the estimate follows: the least-squares
    slope of estimate on target, pooled over channels (sum of covariances / sum of
    variances). 1 = follows fully, 0 = ignores it; NaN when the target does not move
    (expression is constant within a clip). Offsets between identities do not count."""
    est, tgt = np.asarray(estimate, np.float64), np.asarray(target, np.float64)
    tgt = tgt - tgt.mean(0)
    var = float((tgt ** 2).sum())
    if var <= 1e-9 * len(tgt):
        return float("nan")
    return float(((est - est.mean(0)) * tgt).sum() / var)


@dataclass
class FactorReader:
    """Per-factor ridge regressions from normalised landmarks to the ground-truth factors."""

    mean: dict[str, np.ndarray]
    coef: dict[str, np.ndarray]
    offset: dict[str, np.ndarray]

    @classmethod
    def fit(cls, landmarks: np.ndarray, targets: dict[str, np.ndarray]) -> "FactorReader":
        mean, coef, offset = {}, {}, {}
        for k, y in targets.items():
            points, ridge = READ_FROM[k]
            x = features(landmarks, points)
            mean[k], offset[k] = x.mean(0), y.mean(0)
            xc = x - mean[k]
            gram = xc.T @ xc + ridge * len(x) * np.eye(x.shape[1])
            coef[k] = np.linalg.solve(gram, xc.T @ (y - offset[k]))
        return cls(mean, coef, offset)

    def __call__(self, landmarks: np.ndarray) -> dict[str, np.ndarray]:
        return {k: (features(landmarks, READ_FROM[k][0]) - self.mean[k]) @ c + self.offset[k]
                for k, c in self.coef.items()}

    def r2(self, landmarks: np.ndarray, targets: dict[str, np.ndarray]) -> dict[str, float]:
        pred = self(landmarks)
        return {k: float(1 - ((pred[k] - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())
                for k, y in targets.items()}


class Corpus:
    """Crop frames (pixel cache), ground-truth crop landmarks and factors, per clip."""

    def __init__(self, features_dir: str | Path = "data/features",
                 groundtruth: str | Path = "data/ingest/groundtruth.parquet") -> None:
        features_dir = Path(features_dir)
        self.clips = pd.read_parquet(features_dir / "clips.parquet")
        frames = pd.read_parquet(features_dir / "frames.parquet", columns=["clip_id", "frame", "landmarks"])
        gt = pd.read_parquet(groundtruth, columns=["clip_id", "frame", *POSE, "tx", "ty", *MOUTH, "emotion", "intensity"])
        self.table = frames.merge(gt, on=["clip_id", "frame"], how="inner").sort_values(["clip_id", "frame"])
        self.pixels = PixelCache(features_dir / "pixels.npy")

    def split(self, name: str) -> list[str]:
        return sorted(self.clips.loc[self.clips["split"] == name, "clip_id"])

    def rows(self, clip_ids: Iterable[str]) -> pd.DataFrame:
        return self.table[self.table["clip_id"].isin(set(clip_ids))]

    def frames(self, clip_id: str, n: int | None = None) -> np.ndarray:
        return self.pixels[self.pixels.clip_rows(clip_id)[:n]]

    def landmarks(self, rows: pd.DataFrame) -> np.ndarray:
        return np.stack(rows["landmarks"].to_numpy()).reshape(len(rows), 68, 2)

    def info(self, clip_id: str) -> pd.Series:
        return self.clips.set_index("clip_id").loc[clip_id]


def make_pairs(corpus: Corpus, split: str, n: int) -> list[tuple[str, str]]:
    """Up to ``n`` (identity clip, source clip) pairs of different identities and emotions,
    spread evenly over all such ordered pairs of the split (deterministic)."""
    info = corpus.clips.set_index("clip_id")
    ids = corpus.split(split)
    every = [(a, b) for a in ids for b in ids
             if info.at[a, "identity"] != info.at[b, "identity"] and info.at[a, "emotion"] != info.at[b, "emotion"]]
    if not every:
        raise ValueError(f"split {split!r} has no two clips of different identities and emotions")
    pick = np.unique(np.linspace(0, len(every) - 1, min(n, len(every))).round().astype(int))
    return [every[i] for i in pick]


Outputs = dict[tuple[str, str, str], np.ndarray]    # (identity clip, source clip, swapped) -> frames


def swap_outputs(model: object, corpus: Corpus, pairs: list[tuple[str, str]], max_frames: int = 32,
                 batch_size: int = 8) -> Outputs:
    """The model driven by each pair's source clip for one factor at a time (the other two
    keep the identity frame's own): up to ``max_frames`` frames per swap; under "still",
    no source at all (the identity's own weights: what the model makes of the identity)."""
    out: Outputs = {}
    for id_clip, src_clip in pairs:
        video = corpus.frames(src_clip, len(corpus.rows([src_clip]).iloc[:max_frames]))
        identity = corpus.frames(id_clip, 1)[0]
        for swapped in FACTORS:
            out[id_clip, src_clip, swapped] = gen.generate(model, identity, **{swapped: video},  # type: ignore[arg-type]
                                                           batch_size=batch_size).frames
        out[id_clip, src_clip, "still"] = gen.generate(model, identity, n_frames=len(video),
                                                       batch_size=batch_size).frames
    return out


def swap_targets(corpus: Corpus, pairs: list[tuple[str, str]], max_frames: int = 32,
                 **render: int | float) -> Outputs:
    """The corpus' rendering of every swap's ideal output (:func:`swap_target`), and of the
    still identity under the key (identity clip, source clip, "still")."""
    out: Outputs = {}
    for id_clip, src_clip in pairs:
        n = len(corpus.rows([src_clip]).iloc[:max_frames])
        for swapped in (*FACTORS, None):
            out[id_clip, src_clip, swapped or "still"] = swap_target(corpus, id_clip, src_clip, swapped, n, **render)
    return out


def run(outputs: Outputs, landmarker: Landmarker, reader: FactorReader, corpus: Corpus,
        label: str = "model", floor: bool = True) -> pd.DataFrame:
    """One row per (pair, swapped factor, measured factor): errors against source and
    identity, and the gain on the source; with ``floor``, also the real source frames read
    the same way (one row per factor)."""
    rows = []
    pairs = list(dict.fromkeys((i, s) for i, s, f in outputs if f in FACTORS))
    for id_clip, src_clip in pairs:
        n = len(outputs[id_clip, src_clip, FACTORS[0]])          # every swap of a pair has n frames
        id_gt = factor_targets(corpus.rows([id_clip]).iloc[:1])
        src_gt = factor_targets(corpus.rows([src_clip]).iloc[:n])
        for swapped in FACTORS:
            est = reader(landmarker(outputs[id_clip, src_clip, swapped])[0])
            rows += _factor_rows(label, id_clip, src_clip, swapped, est, src_gt, id_gt, FACTORS)
        if floor:
            est = reader(landmarker(corpus.frames(src_clip, n))[0])
            for f in FACTORS:
                rows += _factor_rows("floor (real source frames)", id_clip, src_clip, f, est, src_gt, id_gt, (f,))
    return pd.DataFrame(rows)


def emotion_run(outputs: Outputs, classify: Callable[[np.ndarray], np.ndarray], corpus: Corpus,
                label: str = "model", floor: bool = True) -> pd.DataFrame:
    """The emotion evaluator's reading of each swap: log P(source's emotion) - log P(identity's
    emotion) of the video (``classify``: frames -> log-probabilities over ``EMOTIONS``). A
    transferred expression is positive; an expression kept from the identity is negative.
    "still" outputs (no source) give the model's own reading of the identity; ``floor`` adds
    the real source frames (what a full transfer reads as)."""
    rows = []
    for (id_clip, src_clip, swapped), frames in outputs.items():
        i, k = (EMOTIONS.index(str(corpus.info(c)["emotion"])) for c in (id_clip, src_clip))
        todo = [(label, swapped, frames)]
        if floor and swapped == "exp":
            todo.append(("floor (real source frames)", "exp", corpus.frames(src_clip, len(frames))))
        for name, sw, video in todo:
            logp = np.asarray(classify(video), np.float64).reshape(-1)
            rows.append(dict(model=name, identity_clip=id_clip, source_clip=src_clip, swapped=sw,
                             emotion_shift=float(logp[k] - logp[i]),
                             reads_source=bool(logp.argmax() == k), reads_identity=bool(logp.argmax() == i)))
    return pd.DataFrame(rows)


def _factor_rows(label: str, id_clip: str, src_clip: str, swapped: str, est: dict[str, np.ndarray],
                 src_gt: dict[str, np.ndarray], id_gt: dict[str, np.ndarray], measured: Iterable[str]) -> list[dict]:
    return [dict(model=label, identity_clip=id_clip, source_clip=src_clip, swapped=swapped, factor=f,
                 err_source=factor_error(f, est[f], src_gt[f]), err_identity=factor_error(f, est[f], id_gt[f]),
                 gain=factor_gain(est[f], src_gt[f])) for f in measured]


def gain_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean gain of each moving factor (pose, mouth) on the source's, per (model, swapped source)."""
    r = results[results["factor"].isin(["pose", "mouth"])]
    t = r.groupby(["model", "swapped", "factor"], sort=False)["gain"].mean().unstack("factor")
    t = t[[c for c in ("pose", "mouth") if c in t.columns]]
    t.columns = [f"{c} gain" for c in t.columns]
    return _by_source(t)


def table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean errors: rows (model, swapped source), columns (measured factor, vs source / vs identity)."""
    t = results.groupby(["model", "swapped", "factor"], sort=False)[["err_source", "err_identity"]].mean()
    t = t.unstack("factor")
    t.columns = [f"{f} vs {'source' if c == 'err_source' else 'identity'}" for c, f in t.columns]
    order = [f"{f} vs {w}" for f in FACTORS for w in ("source", "identity")]
    return _by_source(t[[c for c in order if c in t.columns]])


def _by_source(t: pd.DataFrame) -> pd.DataFrame:
    """Rows indexed (model, swapped) -> "<model>: <swapped> source", reference rows last."""
    t.index = [f"{m}: {s} source" for m, s in t.index]
    return t.sort_index(key=_reference_last, kind="stable")


def _reference_last(index: pd.Index) -> pd.Index:
    """Sort key: model rows first, then the reference rows (ideal swaps, real source frames)."""
    return index.str.startswith("ideal") + 2 * index.str.startswith("floor")


def verdict(results: pd.DataFrame) -> pd.DataFrame:
    """Per model and swapped factor: does the swapped factor follow the source (err_source <
    err_identity) and do the others stay the identity's (err_identity < err_source)?"""
    r = results.groupby(["model", "swapped", "factor"], sort=False)[["err_source", "err_identity"]].mean()
    r = r.reset_index()
    r["holds"] = np.where(r["swapped"] == r["factor"], r["err_source"] < r["err_identity"],
                          r["err_identity"] < r["err_source"])
    return r


# --- pixel-level proof: the corpus renders the ideal swapped video --------------------------

def swap_target(corpus: Corpus, id_clip: str, src_clip: str, swapped: str | None, n: int,
                render_size: int = 96, crop_size: int = 64, increase: float = 0.1,
                smooth_window: int = 9) -> np.ndarray:
    """The ground-truth output of a swap, rendered by the synthetic corpus and cropped like the
    crop stage: identity ``id_clip`` (its first frame's pose, mouth and emotion) with the
    ``swapped`` factor taken from ``src_clip``'s first ``n`` frames (None: nothing swapped,
    the identity held still). Blinks are left out (not in the stored ground truth)."""
    from edtalk.data.crop import crop_frame, integer_boxes, smooth_boxes, square_boxes
    from edtalk.data.detect import box_from_landmarks
    from edtalk.data.synthetic.corpus import render_clip
    from edtalk.data.synthetic.identity import sample_identity
    from edtalk.data.synthetic.pose import PoseTrack
    from edtalk.data.synthetic.visemes import MouthTrack

    own = corpus.rows([id_clip]).iloc[:1]
    src = corpus.rows([src_clip]).iloc[:n]
    n = len(src)
    col = lambda rows, c: np.resize(rows[c].to_numpy(np.float32), n)  # noqa: E731  (repeats frame 0)
    p = src if swapped == "pose" else own
    pose = PoseTrack(col(p, "yaw"), col(p, "pitch"), col(p, "roll"), col(p, "tx"), col(p, "ty"),
                     np.zeros(n, np.float32))
    m = src if swapped == "mouth" else own
    mouth = MouthTrack(col(m, "mouth_open"), col(m, "mouth_width"), tuple(["sil"] * n))
    e = src if swapped == "exp" else own
    seed = int(id_clip.split("_")[1].lstrip("s"))
    ident = sample_identity(seed, int(corpus.info(id_clip)["identity"].lstrip("syn")))
    clip = render_clip(ident, pose, mouth, str(e["emotion"].iloc[0]), int(e["intensity"].iloc[0]), render_size)
    lm = np.stack(clip.groundtruth["landmarks"].to_numpy()).reshape(n, 68, 2)
    boxes = integer_boxes(smooth_boxes(square_boxes(box_from_landmarks(lm), increase), smooth_window))
    return np.stack([crop_frame(f, b, crop_size) for f, b in zip(clip.frames, boxes)])


# Landmarks the corpus' emotions move (edtalk/data/synthetic/face.py), by face region.
REGIONS: dict[str, np.ndarray] = {
    "brows": np.arange(17, 27),
    "eyelids": np.array([37, 38, 40, 41, 43, 44, 46, 47]),
    "mouth corners": np.array([48, 54]),
}


def _mean_shape(frames: np.ndarray, landmarker: Landmarker) -> np.ndarray:
    """(68,2): mean over frames of the landmarks, centred, in inter-ocular units."""
    return features(landmarker(frames)[0]).reshape(len(frames), 68, 2).mean(0)


def expression_carriers(outputs: Outputs, targets: Outputs, landmarker: Landmarker,
                        label: str = "model") -> pd.DataFrame:
    """Which swap carries the source's expression, region by region: the change of each swap's
    mean landmarks from the "still" output, projected on the change the corpus renders for the
    ideal expression swap (``targets[..., "exp"]`` minus ``targets[..., "still"]``). One row
    per (pair, swapped factor, region) with ``dot`` and ``norm2``; :func:`carrier_table` pools
    them (share = sum dot / sum norm2: 1 = the source's whole expression change, 0 = none).
    Pose and mouth sources move these points a little by themselves (a turned head, an open
    mouth): the ideal swaps read the same way give that floor."""
    rows = []
    pairs = list(dict.fromkeys((i, s) for i, s, f in outputs if f in FACTORS))
    for id_clip, src_clip in pairs:
        want = _mean_shape(targets[id_clip, src_clip, "exp"], landmarker) - \
            _mean_shape(targets[id_clip, src_clip, "still"], landmarker)
        still = _mean_shape(outputs[id_clip, src_clip, "still"], landmarker)
        for swapped in FACTORS:
            got = _mean_shape(outputs[id_clip, src_clip, swapped], landmarker) - still
            for region, idx in REGIONS.items():
                w, g = want[idx].ravel(), got[idx].ravel()
                rows.append(dict(model=label, identity_clip=id_clip, source_clip=src_clip, swapped=swapped,
                                 region=region, dot=float(g @ w), norm2=float(w @ w)))
    return pd.DataFrame(rows)


def carrier_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, swapped source) and region: the pooled share of :func:`expression_carriers`."""
    sums = results.groupby(["model", "swapped", "region"], sort=False)[["dot", "norm2"]].sum()
    share = (sums["dot"] / sums["norm2"]).unstack("region")[list(REGIONS)]
    order = list(dict.fromkeys(zip(results["model"], results["swapped"])))
    return _by_source(share.reindex(pd.MultiIndex.from_tuples(order)))


def pixel_run(outputs: Outputs, targets: Outputs, label: str = "model") -> pd.DataFrame:
    """Mean absolute pixel error (0-255) of each swap's output against its rendered ground
    truth (``swap_targets``), next to the still identity's error against the same target
    (what doing nothing scores) -- one row per (pair, swapped factor)."""
    rows = []
    for (id_clip, src_clip, swapped), frames in outputs.items():
        if swapped not in FACTORS:
            continue
        out = frames.astype(np.float64)
        target = targets[id_clip, src_clip, swapped].astype(np.float64)
        still = targets[id_clip, src_clip, "still"].astype(np.float64)
        rows.append(dict(model=label, identity_clip=id_clip, source_clip=src_clip, swapped=swapped,
                         err_target=float(np.abs(out - target).mean()),
                         still_err_target=float(np.abs(still - target).mean()),
                         err_still=float(np.abs(out - still).mean())))
    return pd.DataFrame(rows)


def emotion_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, swapped source): mean emotion shift and the shares of videos read as the
    source's / the identity's emotion."""
    t = results.groupby(["model", "swapped"], sort=False)[["emotion_shift", "reads_source", "reads_identity"]].mean()
    t.columns = ["log P(source emotion) - log P(identity emotion)", "read as source's", "read as identity's"]
    return _by_source(t)


def pixel_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per (model, swapped source): mean pixel errors of :func:`pixel_run`."""
    t = results.groupby(["model", "swapped"], sort=False)[["err_target", "err_still", "still_err_target"]].mean()
    t.columns = ["output vs swapped ground truth", "output vs still identity", "still identity vs swapped ground truth"]
    return _by_source(t)
