"""What a shipped pretrained file records of the corpus it was trained on, and the check
that refuses it for another corpus.

A pretrained file of ours (an evaluator or a training stage run longer than the pipeline
can afford, ``pretrained/``) is only valid for the corpus whose train split it saw: a
file trained with identities that are held out here would leak the test set into the
scores, and a file trained on another corpus (other clips, or the same clip names with
other pictures, e.g. after a change to the synthetic renderer) measures something else.
The record holds the train identities, the train clip ids and per clip its mean colour
and mean landmark positions (crop pixels): cheap to compute, blind to float noise, and
moved by any change of who is in the clip, how it is coloured or how its face is shaped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edtalk.data.pixel_cache import PixelCache

RECORD_VERSION = 1
COLOUR_TOLERANCE = 1.0      # mean 0-255 level per channel
LANDMARK_TOLERANCE = 0.25   # mean landmark position, crop pixels


class WrongCorpus(ValueError):
    """A pretrained file does not belong to this corpus (message says why and what to set)."""


def train_corpus_record(features_dir: str | Path) -> dict[str, Any]:
    """The record of the train split of a features stage output folder."""
    features_dir = Path(features_dir)
    df = pd.read_parquet(features_dir / "frames.parquet",
                         columns=["clip_id", "split", "identity", "landmarks", "pixel_index"],
                         filters=[("split", "==", "train")])
    if df.empty:
        raise ValueError(f"no train-split frames in {features_dir / 'frames.parquet'}")
    cache = PixelCache(features_dir / "pixels.npy")
    colour, shape = {}, {}
    for clip_id, part in df.groupby("clip_id", sort=True):
        pixels = cache[part["pixel_index"].to_numpy()]
        colour[str(clip_id)] = [round(float(v), 3) for v in pixels.reshape(-1, 3).mean(0)]
        points = np.stack(part["landmarks"].to_numpy()).astype(np.float64).reshape(len(part), -1)
        shape[str(clip_id)] = [round(float(v), 3) for v in np.nanmean(points, 0)]
    return {"version": RECORD_VERSION,
            "train_identities": sorted(df["identity"].astype(str).unique()),
            "train_clips": sorted(colour), "clip_colour": colour, "clip_landmarks": shape}


def held_out_identities(features_dir: str | Path) -> set[str]:
    """Identities of the val and test splits (a pretrained file must not have seen them)."""
    splits = pd.read_parquet(Path(features_dir) / "frames.parquet", columns=["split", "identity"])
    return set(splits.loc[splits["split"].isin(["val", "test"]), "identity"].astype(str))


def check_corpus_record(record: dict[str, Any] | None, features_dir: str | Path, source: str | Path,
                        setting: str) -> None:
    """Raise :class:`WrongCorpus` unless ``record`` (from :func:`train_corpus_record` at
    training time) describes this folder's train split; ``setting`` is the params key to
    set to null to train here instead."""
    hint = f"set {setting} to null to train it here"
    if not record or record.get("version") != RECORD_VERSION:
        raise WrongCorpus(f"{source} carries no corpus record of this project; {hint}")
    leaked = sorted(set(record["train_identities"]) & held_out_identities(features_dir))
    if leaked:
        raise WrongCorpus(f"{source} was trained on identities held out here ({leaked[:5]}); {hint}")
    here = train_corpus_record(features_dir)
    if here["train_clips"] != record["train_clips"]:
        missing = sorted(set(record["train_clips"]) ^ set(here["train_clips"]))
        raise WrongCorpus(f"{source} was trained on another corpus ({len(missing)} train clips differ, "
                          f"e.g. {missing[:3]}); {hint}")
    for key, tolerance, what in (("clip_colour", COLOUR_TOLERANCE, "colours"),
                                 ("clip_landmarks", LANDMARK_TOLERANCE, "face shapes")):
        worst = max(np.nanmax(np.abs(np.subtract(record[key][c], here[key][c]))) for c in here["train_clips"])
        if worst > tolerance:
            raise WrongCorpus(f"{source} was trained on the same clip names with other {what} "
                              f"(off by up to {worst:.2f}, tolerance {tolerance}); {hint}")
