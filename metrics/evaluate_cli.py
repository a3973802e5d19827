"""``python -m metrics evaluate``: score one or more sets of generated videos against ground truth.

Arguments are declared here without heavy imports (``--help`` stays instant); ``run``
does the work: match clips by file name, face-crop sets that are not crops, score each
set with :class:`metrics.suite.Suite` (one Table-1 row per set), and write the table as
md/csv/tex plus ``results.json`` with every backend named.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EVALUATE_HELP = """\
Score folders of generated videos against ground truth, clip by clip (matched by
file name without extension), and write Table 1 with one row per --pred set.

  python -m metrics evaluate --gt GT/ --pred ours/ --name Ours \\
      --pred 'baseline/**/*.mp4' --name Baseline --out results/ --sync-weights syncnet_v2.model

Outputs in --out: table1.md, table1.csv, table1.tex, results.json (one summary per set,
backends and notes included); per set, OUT/<name>/clips.parquet and summary.json (with a
single set and --method, directly in OUT).

Short clips: LSE-C/LSE-D need 6 frames (one 5-frame SyncNet window; the reference takes
length - 5 windows). From 21 frames (0.84 s at 25 fps) every one of the 31 offsets
searched (-15..15) meets real audio in at least one window; shorter clips are still
scored, flagged sync_short and counted in a note. syncnet_python drops clips under 4 s.
Long clips stream frame by frame: no clip is held whole (a 5-minute 256 px clip peaked at
1.4 GB RSS; only the audio's MFCC, computed over the whole track as the reference does,
grows with the length).
"""


def add_evaluate_args(e: argparse.ArgumentParser) -> None:
    """The options of ``python -m metrics evaluate``."""
    e.add_argument("--gt", required=True, help="folder of ground-truth videos")
    e.add_argument("--pred", required=True, action="append",
                   help="folder or quoted glob of generated videos; repeat for several methods")
    e.add_argument("--name", action="append", help="row name of each --pred (default: its folder name)")
    e.add_argument("--method", help="row name when there is one --pred (same as --name)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--audio", help="folder of driving audio <clip id>.wav (16 kHz), used before any "
                                   "audio track")
    e.add_argument("--labels", help="CSV with clip_id and emotion columns (else parsed from the id)")
    e.add_argument("--crop", choices=("auto", "none"), default="none",
                   help="auto: face-crop sets that are not face crops with the project's cropper")
    e.add_argument("--crop-size", type=int, default=256, help="side of the crops (--crop auto)")
    e.add_argument("--allow-unmatched", action="store_true",
                   help="score the clips both sides have instead of stopping on unmatched names")
    e.add_argument("--sync-weights", help="SyncNet weights (syncnet_v2.model or a trained-here file)")
    e.add_argument("--emotion-weights")
    e.add_argument("--landmark-weights", help="a trained-here landmark regressor (instead of dlib)")
    e.add_argument("--weights-cache")
    e.add_argument("--dataset", default="test")
    e.add_argument("--device", help="cpu or cuda (default: cuda when present)")
    e.add_argument("--no-landmarks", action="store_true")
    e.add_argument("--no-extras", action="store_true",
                   help="skip CSIM, LPIPS, CPBD, head-motion diversity and beat alignment")
    e.add_argument("--digits", type=int, default=3)
    e.add_argument("--quiet", action="store_true")


def read_labels(path: str | Path) -> dict[str, str]:
    """clip id -> emotion from a CSV with ``clip_id`` (or ``id``) and ``emotion`` (or ``label``)."""
    import pandas as pd

    df = pd.read_csv(path, dtype=str)
    cid = next((c for c in ("clip_id", "id") if c in df), None)
    emo = next((c for c in ("emotion", "label") if c in df), None)
    if cid is None or emo is None:
        raise ValueError(f"{path}: needs a clip_id and an emotion column, has {list(df.columns)}")
    return dict(zip(df[cid].str.strip(), df[emo].str.strip().str.lower()))


def set_names(a: argparse.Namespace) -> list[str]:
    """One row name per --pred: --name, else --method (one set), else the folder's name."""
    names = list(a.name or [])
    if a.method:
        if len(a.pred) != 1 or names:
            raise ValueError("--method names a single --pred; use --name once per --pred")
        names = [a.method]
    if names and len(names) != len(a.pred):
        raise ValueError(f"{len(a.pred)} --pred but {len(names)} --name")
    if not names:
        names = [Path(p.split("*")[0].rstrip("/") or ".").resolve().name for p in a.pred]
    if len(set(names)) != len(names):
        raise ValueError(f"row names must differ, got {names}; give --name per --pred")
    return names


def _cropped(videos: dict[str, Path], label: str, a: argparse.Namespace, notes: list[str],
             reference: dict | None = None, default: bool = False) -> tuple[dict[str, Path], dict[str, str], dict]:
    """The set's videos, face-cropped when --crop auto judges so: the ground truth
    (``reference`` None) into OUT/_crops/_ground_truth, a set into OUT/_crops/<label>, at
    the ground truth's boxes where its frames match (``crop_auto.crop_set``)."""
    if a.crop == "none":
        return videos, {}, {}
    from metrics import crop_auto

    crop, why = crop_auto.set_needs_crop(videos)
    if crop is None:
        crop, why = default, why + (": cropped like the ground truth" if default else ": scored as they are")
    first = next(iter(videos.values()))
    notes.append(f"{label}: {why} ({crop_auto.crop_info(first)})")
    if not crop:
        return videos, {}, {}
    # the ground truth's crops live apart from every set's, whatever the sets are called
    sub = "_ground_truth" if reference is None else label
    folder, rejected, boxes = crop_auto.crop_set(videos, Path(a.out) / "_crops" / sub, a.crop_size,
                                                 progress=not a.quiet, reference=reference)
    notes.append(f"{label}: face-cropped to {a.crop_size} px at 25 fps by edtalk.data.crop "
                 f"(dlib, FOMM box) into {folder}")
    return {c: folder / f"{c}.mp4" for c in videos if c not in rejected}, rejected, boxes


def run(a: argparse.Namespace) -> int:
    """Score every --pred set; write the tables; print a JSON digest to stdout."""
    import torch

    from edtalk.data import atomic
    from metrics import table
    from metrics.suite import Suite, SuiteConfig, index_videos, match_clips

    names = set_names(a)
    out = Path(a.out)
    landmarker = None if a.no_landmarks else "dlib68"
    if a.landmark_weights and not a.no_landmarks:
        from edtalk.experts import landmark_net
        landmarker = landmark_net.load(a.landmark_weights)
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cfg = SuiteConfig(sync_weights=a.sync_weights, emotion_weights=a.emotion_weights,
                      landmarker=landmarker, dataset=a.dataset, device=device,
                      weights_cache=a.weights_cache, audio_dir=a.audio, extras=not a.no_extras,
                      labels=read_labels(a.labels) if a.labels else None)
    # Match every set before any scoring: a name mismatch should cost seconds, not hours.
    matched = [match_clips(a.gt, pred, strict=not a.allow_unmatched) for pred in a.pred]
    suite = Suite(cfg)
    notes: list[str] = [f"device: {device}"]
    gt_all = {c: g for pairs in matched for c, g, _ in pairs}
    gt_videos, gt_rejected, gt_boxes = _cropped(dict(sorted(gt_all.items())), "ground truth", a, notes)
    records = []
    single = len(a.pred) == 1 and a.method is not None
    for name, pairs in zip(names, matched):
        preds, rejected, _ = _cropped({c: p for c, _, p in pairs}, name, a, notes, gt_boxes or {},
                                      default=bool(gt_boxes))
        failed = [{"clip_id": c, "reason": f"ground truth rejected by the cropper: {r}"}
                  for c, r in gt_rejected.items() if c in preds or c in rejected]
        failed += [{"clip_id": c, "reason": f"rejected by the cropper: {r}"} for c, r in rejected.items()]
        todo = [(c, gt_videos[c], preds[c]) for c, _, _ in pairs if c in preds and c in gt_videos]
        unmatched = sorted(set(index_videos(a.gt)) - {c for c, _, _ in pairs})
        summary = suite.run_pairs(todo, name, out if single else out / name, not a.quiet, failed)
        if unmatched:
            summary["notes"] = summary["notes"] + [f"{len(unmatched)} ground-truth clip(s) without a "
                                                   f"generated video were skipped"]
        summary["inputs"] = {"gt": str(a.gt), "pred": str(a.pred[names.index(name)]),
                             "crop": a.crop, "audio": a.audio, "labels": a.labels}
        records.append(summary)
    for r, name in zip(records, names):
        r["notes"] = notes + r["notes"]
        atomic.write_json((out if single else out / name) / "summary.json", r)
    cols = table.COLUMNS + table.EXTRA_COLUMNS
    atomic.write_text(out / "table1.md", table.render(records, "md", a.digits, cols))
    atomic.write_text(out / "table1.csv", table.render(records, "csv", a.digits, cols, csv_backends=True))
    atomic.write_text(out / "table1.tex", table.render(records, "tex", a.digits, cols))
    atomic.write_json(out / "results.json", records)
    digest = [{"method": r["method"], "metrics": r["metrics"], "backends": r["backends"],
               "clips": r["clips"], "failed": len(r["failed"])} for r in records]
    print(json.dumps(digest[0] if len(digest) == 1 else digest, indent=2))
    for note in dict.fromkeys(n for r in records for n in r["notes"]):
        print(f"note: {note}", file=sys.stderr)
    return 0
