"""The disentanglement report: swap one driving source, measure every factor.

A trained model against an untrained (random-weight) model of the same configuration, on
pairs of synthetic clips of different identities. The measures are in
:mod:`edtalk.evaluation.disentangle`: factors read back from the output's landmarks, the
emotion evaluator's reading of each output, and the pixel error against the corpus'
rendering of the ideal swap. :func:`measure` runs them all and words the markdown;
:func:`write` stores ``<out>.md`` and the per-pair ``<out>.csv``, ``<out>_pixels.csv``,
``<out>_emotion.csv``, ``<out>_carriers.csv``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from edtalk import generate as gen
from edtalk.data import atomic
from edtalk.evaluation import disentangle as dis
from edtalk.experts import emotion_net, landmark_net
from edtalk.model import EDTalk


@dataclass(frozen=True)
class SwapSetup:
    """Which pairs are swapped (params section ``disentangle``)."""

    split: str
    pairs: int
    max_frames: int
    untrained_seed: int


@dataclass(frozen=True)
class RenderSetup:
    """How the corpus renders and crops the ideal swaps (as the ingest and crop stages do)."""

    render_size: int
    increase: float
    smooth_window: int


@dataclass
class Report:
    """The report's tables and its markdown."""

    results: pd.DataFrame       # landmark-read factor errors and gains, one row per measured factor
    emotions: pd.DataFrame      # the emotion evaluator's reading of each output
    pixels: pd.DataFrame        # pixel error against the rendered ideal swap
    carriers: pd.DataFrame      # which swap carries the source's expression, per face region
    text: str


def load_landmarker(path: str | Path) -> dis.Landmarker:
    """A landmark regressor file, or an emotion evaluator with a heatmap landmark head."""
    config = dict(torch.load(path, map_location="cpu", weights_only=True).get("config") or {})
    if "backbone" not in config:
        return landmark_net.load(path)
    return emotion_net.load_heatmap_landmarker(path)


class MemoLandmarker:
    """A landmarker that reads each frames array once: the swap table and the expression
    carriers both read every output and target video. Keyed by the array object, which the
    caller keeps alive and unchanged while it measures."""

    def __init__(self, landmarker: dis.Landmarker) -> None:
        self.landmarker, self.label = landmarker, getattr(landmarker, "label", "landmarks")
        self._seen: dict[int, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = {}

    def __call__(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hit = self._seen.get(id(frames))
        if hit is None or hit[0] is not frames:
            hit = (frames, self.landmarker(frames))
            self._seen[id(frames)] = hit
        return hit[1]


def measure(checkpoint: str, landmarks: str, emotion: str, features_dir: str, groundtruth: str,
            setup: SwapSetup, render: RenderSetup) -> Report:
    """Drive the trained and an untrained model with every pair's swaps and score the outputs.

    ``landmarks``: an emotion evaluator (its heatmap landmarks, ~0.8 px) or a landmark
    regressor file (~2 px); ``emotion``: the evaluator that reads each output's expression.
    """
    if not Path(landmarks).is_file():
        raise FileNotFoundError(f"landmarker {landmarks} not found: run `dvc repro train_emotion` "
                                "(or train_landmarks)")
    t0 = time.perf_counter()
    trained = gen.load_model(checkpoint)
    torch.manual_seed(setup.untrained_seed)
    untrained = EDTalk(trained.cfg).eval()
    landmarker = MemoLandmarker(load_landmarker(landmarks))
    corpus = dis.Corpus(features_dir, groundtruth)
    train_rows = corpus.rows(corpus.split("train"))
    reader = dis.FactorReader.fit(corpus.landmarks(train_rows), dis.factor_targets(train_rows))
    test_rows = corpus.rows(corpus.split(setup.split))
    r2 = reader.r2(corpus.landmarks(test_rows), dis.factor_targets(test_rows))
    pairs = dis.make_pairs(corpus, setup.split, setup.pairs)
    n = setup.max_frames
    outputs = {name: dis.swap_outputs(m, corpus, pairs, n)
               for name, m in (("trained", trained), ("untrained", untrained))}
    targets = dis.swap_targets(corpus, pairs, n, render_size=render.render_size, crop_size=trained.cfg.size,
                               increase=render.increase, smooth_window=render.smooth_window)
    results = pd.concat([dis.run(outputs["trained"], landmarker, reader, corpus, "trained"),
                         dis.run(outputs["untrained"], landmarker, reader, corpus, "untrained", floor=False),
                         dis.run(targets, landmarker, reader, corpus, "ideal (rendered swap)", floor=False)])
    net, net_label = emotion_net.load(emotion)
    classify = lambda frames: emotion_net.video_log_probs(frames, net)  # noqa: E731
    emotions = pd.concat([dis.emotion_run(outputs["trained"], classify, corpus, "trained"),
                          dis.emotion_run(outputs["untrained"], classify, corpus, "untrained", floor=False),
                          dis.emotion_run(targets, classify, corpus, "ideal (rendered swap)", floor=False)])
    pixels = pd.concat([dis.pixel_run(out, targets, label=name) for name, out in outputs.items()])
    carriers = pd.concat([dis.expression_carriers(out, targets, landmarker, name)
                          for name, out in (*outputs.items(), ("ideal (rendered swap)", targets))])
    header = (f"Checkpoint `{checkpoint}` vs an untrained model (seed {setup.untrained_seed}); "
              f"{len(pairs)} pairs from the `{setup.split}` split, up to {setup.max_frames} frames each; "
              f"landmarks by `{landmarker.label}`; factor reader R² on ground-truth {setup.split} landmarks: "
              + ", ".join(f"{k} {v:.2f}" for k, v in r2.items()) + ".")
    text = render_markdown(header, results, emotions, pixels, carriers, net_label, time.perf_counter() - t0)
    return Report(results, emotions, pixels, carriers, text)


def render_markdown(header: str, results: pd.DataFrame, emotions: pd.DataFrame, pixels: pd.DataFrame,
                    carriers: pd.DataFrame, emotion_label: str, seconds: float) -> str:
    """The report's markdown: the landmark table, the gains, the emotion and the pixel tables."""
    score = dis.verdict(results).groupby("model")["holds"].mean()
    lines = [
        "# Disentanglement on the synthetic corpus",
        "",
        header,
        "",
        "Rows: the factor driven by the source (the other two keep the identity's). Columns: each "
        "measured factor's error against the source and against the identity (pose: degrees, "
        "mouth: corpus units, exp: code distance). Disentangled = the swapped factor is near the "
        "source, the others near the identity.",
        "",
        dis.table(results).to_markdown(floatfmt=".3f"),
        "",
        "Share of (swapped, measured) cells where the expected side is closer: "
        + ", ".join(f"{m} {v:.0%}" for m, v in score.items() if not m.startswith(("floor", "ideal"))) + ". "
        "The `ideal` rows read the corpus' rendering of the perfect swap the same way: the errors "
        "this landmarker and reader give a perfectly disentangled model.",
        "",
        "## Following the source over time",
        "",
        "Gain = least-squares slope of the output's factor on the source's, over each pair's frames "
        "(1: the source's whole motion, 0: none; a fixed offset between the two faces does not count). "
        "Expression is constant within a clip, so it has no gain. Disentangled = the swapped factor's "
        "gain near the `ideal` row's, the other factor's near 0.",
        "",
        dis.gain_table(results).to_markdown(floatfmt=".2f"),
        "",
        "## Expression read by the emotion evaluator",
        "",
        f"`{emotion_label}` on each output video: log P(source's emotion) - log P(identity's emotion) "
        "(every pair's two clips differ in emotion), and the share of videos classified as either. "
        "Landmarks read expression poorly (an open mouth or a turned head shifts them like an emotion "
        "does, see the `ideal` rows above); the classifier sees the whole face. Disentangled = "
        "positive for the expression source, negative (like the `ideal` rows) for the others; "
        "`still` = no source (the identity's own weights).",
        "",
        dis.emotion_table(emotions).to_markdown(floatfmt=".2f"),
        "",
        "## Which source carries the expression",
        "",
        "Each swap's change of the mean landmarks from the `still` output, projected on the change "
        "the corpus renders for the ideal expression swap, per face region (the points the "
        "corpus' emotions move), pooled over pairs: 1 = the source's whole expression change, "
        "0 = none. Disentangled = the expression source near 1 and the others near their "
        "`ideal` rows (a turned head or an open mouth moves these points a little by itself). "
        "Where the mouth or pose source carries what the expression source does not, a "
        "predictor of W^e alone (EDTalk-A) cannot show the emotion.",
        "",
        dis.carrier_table(carriers).to_markdown(floatfmt=".2f"),
        "",
        "## Against the rendered ground truth of each swap",
        "",
        "The corpus renders the ideal output of every swap (the identity with the source's pose, "
        "mouth or emotion), cropped like the crop stage. Mean absolute pixel error (0-255); a "
        "model that moves only the swapped factor beats the still identity in the first column.",
        "",
        dis.pixel_table(pixels).to_markdown(floatfmt=".2f"),
        "",
        f"({seconds:.0f} s)",
    ]
    return "\n".join(lines) + "\n"


def write(report: Report, out: str | Path) -> None:
    """``<out>.md``, ``<out>.csv`` (landmark factors), ``<out>_pixels.csv``, ``<out>_emotion.csv``,
    ``<out>_carriers.csv``."""
    atomic.write_text(Path(f"{out}.md"), report.text)
    for suffix, table in (("", report.results), ("_pixels", report.pixels), ("_emotion", report.emotions),
                          ("_carriers", report.carriers)):
        with atomic.atomic_path(Path(f"{out}{suffix}.csv")) as tmp:
            table.to_csv(tmp, index=False)
