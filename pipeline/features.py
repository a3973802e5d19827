"""DVC stage `features`: per-frame landmarks, MFCC, mel and labels + the pixel cache.

Outputs (``data/features``): ``frames.parquet`` (FRAMES schema, one row per 25 fps video
frame), ``pixels.npy`` + ``pixels_index.parquet`` (memory-mapped uint8 crops; a frame's
pixels are ``pixels[pixel_index]``), ``clips.parquet`` (manifest of the clips with
features), ``shards/`` (per-clip parts, kept so a crashed run resumes) and
``quarantine.parquet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import edtalk.data
from edtalk.data import atomic, features as feats, pixel_cache, quarantine
from edtalk.data.detect import resolve_backend
from edtalk.data.quarantine import ClipRejected
from edtalk.data.resume import StampDir, code_digest, fingerprint, prune_clip_files
from edtalk.data.schema import BOXES, GROUNDTRUTH, MANIFEST, conform
from edtalk.params import section
from pipeline.artifacts import publish_quarantine
from pipeline.common import fan_out, log_summary, main_with_params

STAGE = "features"
_DATA = Path(edtalk.data.__file__).parent
FEATURE_CODE = (_DATA / "features.py", _DATA / "audio_features.py", _DATA / "pixel_cache.py",
                _DATA / "detect.py", _DATA / "schema.py")


@task(name="features-clip", task_run_name="features {row[clip_id]}", cache_policy=NO_CACHE)
def features_one(row: dict[str, Any], key: str, crop_dir: str, out_dir: str, backend: str,
                 gt: pd.DataFrame | None, boxes: pd.DataFrame | None, size: int
                 ) -> dict[str, Any]:
    """Features of one cropped clip (or resume them); bad input becomes a quarantine record."""
    clip_id, shards = row["clip_id"], Path(out_dir) / "shards"
    outputs = [feats.table_path(shards, clip_id), pixel_cache.shard_path(shards, clip_id)]
    stamps = StampDir(out_dir)
    if stamps.is_done(clip_id, key):
        payload = stamps.load(clip_id)
        if "quarantine" in payload or all(p.exists() for p in outputs):
            return {"resumed": True, **payload}
    src = Path(crop_dir)
    try:
        kwargs: dict[str, Any] = {"landmarks": backend}
        if backend == "groundtruth":
            kwargs["crop_landmarks"] = feats.groundtruth_crop_landmarks(gt, boxes, size)
        else:
            kwargs["detector"] = feats.crop_detector(backend)
        labels = {k: row[k] for k in feats.LABELS}
        feats.process_clip(shards, clip_id, src / row["video_path"], src / row["audio_path"],
                           labels, **kwargs)
        payload = {"row": row}
    except ClipRejected as error:
        payload = {"quarantine": quarantine.record(clip_id, STAGE, error)}
    stamps.mark(clip_id, key, payload)
    return {"resumed": False, **payload}


@flow(name="features")
def features(params: dict[str, Any], crop_dir: str = "data/crop", ingest_dir: str = "data/ingest",
             out_dir: str = "data/features") -> pd.DataFrame:
    """Extract every cropped clip's features in parallel, then assemble the tables and cache."""
    src, out = Path(crop_dir), Path(out_dir)
    atomic.remove_partials(out / "shards")
    manifest = pq.read_table(src / "manifest.parquet", schema=MANIFEST).to_pandas()
    boxes = pq.read_table(src / "boxes.parquet", schema=BOXES).to_pandas()
    source = section(params, "data")["source"]
    cfg, crop_cfg = section(params, "features"), section(params, "crop")
    backend = cfg["landmarks"]
    backend = resolve_backend(crop_cfg["detector"] if backend == "auto" else backend, source)
    gt = (pq.read_table(Path(ingest_dir) / "groundtruth.parquet", schema=GROUNDTRUTH).to_pandas()
          if backend == "groundtruth" else None)
    size = int(crop_cfg["size"])
    code = code_digest(*FEATURE_CODE)
    boxes_of = dict(tuple(boxes.groupby("clip_id", sort=False)))
    gt_of = dict(tuple(gt.groupby("clip_id", sort=False))) if gt is not None else {}
    items = [{"row": row, "gt": gt_of.get(row["clip_id"]), "boxes": boxes_of.get(row["clip_id"]),
              "key": fingerprint(STAGE, code, row["checksum"], cfg, backend, size,
                                 row["split"], row["emotion"], row["intensity"], row["identity"])}
             for row in manifest.to_dict("records")]
    results = fan_out(features_one, items, desc=STAGE, crop_dir=str(src), out_dir=str(out),
                      backend=backend, size=size)
    kept = pd.DataFrame([r["row"] for r in results if "row" in r], columns=MANIFEST.names)
    kept = kept.sort_values("clip_id").reset_index(drop=True)
    rejected = [r["quarantine"] for r in results if "quarantine" in r]
    table = feats.assemble(out / "shards", list(kept["clip_id"]), out / "frames.parquet",
                           out / "pixels.npy", frame_shape=(size, size, 3))
    with atomic.atomic_path(out / "clips.parquet") as tmp:
        pq.write_table(conform(kept, MANIFEST), tmp)
    quarantine.write(out / "quarantine.parquet", rejected)
    prune_clip_files(out / "shards", set(kept["clip_id"]))
    StampDir(out).prune(set(manifest["clip_id"]))
    log_summary(STAGE, sum(not r["resumed"] for r in results), sum(r["resumed"] for r in results),
                len(rejected))
    publish_quarantine(STAGE, results)
    print(f"features: {len(table)} frames of {len(kept)} clips in the pixel cache")
    return table


def main() -> None:
    main_with_params(features, __doc__, task_runner=True)


if __name__ == "__main__":
    main()
