"""DVC stage `crop`: FOMM-style square face crops at 25 fps + 16 kHz, with boxes.

Outputs (``data/crop``): ``clips/<clip_id>.mp4`` + ``.wav``, ``boxes/<clip_id>.parquet``
joined into ``boxes.parquet``, ``manifest.parquet`` (the surviving clips, paths and frame
counts of the crops) and ``quarantine.parquet`` (no face, several faces, ...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import edtalk.data
from edtalk.data import atomic, quarantine
from edtalk.data.crop import crop_clip
from edtalk.data.detect import groundtruth_array, make_detector, resolve_backend
from edtalk.data.quarantine import ClipRejected
from edtalk.data.resume import (StampDir, array_digest, code_digest, file_sha256, fingerprint,
                                prune_clip_files)
from edtalk.data.schema import BOXES, FPS, GROUNDTRUTH, MANIFEST, conform
from edtalk.params import section
from pipeline.artifacts import publish_quarantine
from pipeline.common import fan_out, log_summary, main_with_params

STAGE = "crop"
_DATA = Path(edtalk.data.__file__).parent
CROP_CODE = (_DATA / "crop.py", _DATA / "detect.py", _DATA / "media.py")


@task(name="crop-clip", task_run_name="crop {row[clip_id]}", cache_policy=NO_CACHE)
def crop_one(row: dict[str, Any], key: str, in_dir: str, out_dir: str, backend: str,
             groundtruth: np.ndarray | None, crop: dict[str, Any], require_audio: bool
             ) -> dict[str, Any]:
    """Crop one clip (or resume it); bad input comes back as a quarantine record."""
    clip_id, out = row["clip_id"], Path(out_dir)
    video, wav, boxes = (out / "clips" / f"{clip_id}.mp4", out / "clips" / f"{clip_id}.wav",
                         out / "boxes" / f"{clip_id}.parquet")
    stamps = StampDir(out)
    if stamps.is_done(clip_id, key):
        payload = stamps.load(clip_id)
        if "quarantine" in payload or all(p.exists() for p in (video, wav, boxes)):
            return {"resumed": True, **payload}
    src = Path(in_dir)
    try:
        result = crop_clip(
            src / row["video_path"], src / row["audio_path"] if row["audio_path"] else None,
            video, wav, size=int(crop["size"]),
            detector=make_detector(backend, groundtruth=groundtruth),
            increase=float(crop["increase"]), iou_threshold=float(crop["iou_threshold"]),
            smooth_window=int(crop["smooth_window"]), clip_id=clip_id,
            detect_every=int(crop["detect_every"]), min_face_share=float(crop["min_face_share"]),
            max_other_share=float(crop["max_other_share"]), require_audio=require_audio)
        with atomic.atomic_path(boxes) as tmp:
            pq.write_table(conform(result.boxes, BOXES), tmp)
        n = result.n_frames
        payload = {"row": {**row, "fps": float(FPS), "frames": n, "duration": n / FPS,
                           "checksum": file_sha256(video),
                           "video_path": f"clips/{clip_id}.mp4",
                           "audio_path": f"clips/{clip_id}.wav"}}
    except ClipRejected as error:
        payload = {"quarantine": quarantine.record(clip_id, STAGE, error)}
    stamps.mark(clip_id, key, payload)
    return {"resumed": False, **payload}


@flow(name="crop")
def crop(params: dict[str, Any], in_dir: str = "data/ingest", out_dir: str = "data/crop"
         ) -> pd.DataFrame:
    """Crop every ingested clip in parallel, then write boxes, manifest and quarantine."""
    src, out = Path(in_dir), Path(out_dir)
    for sub in ("clips", "boxes"):
        atomic.remove_partials(out / sub)
    manifest = pq.read_table(src / "manifest.parquet", schema=MANIFEST).to_pandas()
    cfg, data = section(params, "crop"), section(params, "data")
    backend = resolve_backend(cfg["detector"], data["source"])
    groundtruth = _groundtruth_landmarks(src) if backend == "groundtruth" else {}
    code = code_digest(*CROP_CODE)
    items = []
    for row in manifest.to_dict("records"):
        gt = groundtruth.get(row["clip_id"])
        key = fingerprint(STAGE, code, row["checksum"], cfg, backend,
                          data["require_audio"], None if gt is None else array_digest(gt))
        items.append({"row": row, "groundtruth": gt, "key": key})
    results = fan_out(crop_one, items, desc=STAGE, in_dir=str(src), out_dir=str(out),
                      backend=backend, crop=cfg, require_audio=bool(data["require_audio"]))
    rows = [r["row"] for r in results if "row" in r]
    rejected = [r["quarantine"] for r in results if "quarantine" in r]
    cropped = pd.DataFrame(rows, columns=MANIFEST.names).sort_values("clip_id").reset_index(drop=True)
    boxes = [pq.read_table(out / "boxes" / f"{c}.parquet", schema=BOXES).to_pandas()
             for c in cropped["clip_id"]]
    table = pd.concat(boxes, ignore_index=True) if boxes else pd.DataFrame(columns=BOXES.names)
    with atomic.atomic_path(out / "boxes.parquet") as tmp:
        pq.write_table(conform(table, BOXES), tmp)
    with atomic.atomic_path(out / "manifest.parquet") as tmp:
        pq.write_table(conform(cropped, MANIFEST), tmp)
    quarantine.write(out / "quarantine.parquet", rejected)
    _prune(out, set(cropped["clip_id"]), set(manifest["clip_id"]))
    log_summary(STAGE, sum(not r["resumed"] for r in results), sum(r["resumed"] for r in results),
                len(rejected))
    publish_quarantine(STAGE, results)
    return cropped


def _groundtruth_landmarks(src: Path) -> dict[str, np.ndarray]:
    """Per-clip (T, 68, 2) ground-truth landmarks in source pixels (synthetic source)."""
    gt = pq.read_table(src / "groundtruth.parquet", schema=GROUNDTRUTH).to_pandas()
    return {clip_id: groundtruth_array(part) for clip_id, part in gt.groupby("clip_id", sort=False)}


def _prune(out: Path, keep: set[str], listed: set[str]) -> None:
    """Remove per-clip files of clips that are no longer cropped."""
    for sub in ("clips", "boxes"):
        prune_clip_files(out / sub, keep)
    StampDir(out).prune(listed)


def main() -> None:
    main_with_params(crop, __doc__, task_runner=True)


if __name__ == "__main__":
    main()
