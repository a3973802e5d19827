"""DVC stage `ingest`: materialise every clip of the configured source + manifest.parquet.

Outputs (``data/ingest``): ``clips/<clip_id>.mp4`` (+ ``.wav`` where the source has exact
16 kHz audio), ``manifest.parquet``, ``groundtruth.parquet`` (synthetic source: per-frame
factors; empty otherwise), ``quarantine.parquet``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

import edtalk.data
from edtalk.data import atomic, quarantine
from edtalk.data.quarantine import ClipRejected
from edtalk.data.resume import StampDir, code_digest, fingerprint, prune_clip_files
from edtalk.data.schema import GROUNDTRUTH, MANIFEST, conform
from edtalk.data.sources.base import ClipSpec, Source, validate_clip
from edtalk.data.sources.registry import make_source
from edtalk.data.splits import split_identities
from edtalk.params import section
from pipeline.artifacts import publish_quarantine
from pipeline.common import fan_out, log_summary, main_with_params

STAGE = "ingest"
_DATA = Path(edtalk.data.__file__).parent
INGEST_CODE = (_DATA / "sources", _DATA / "synthetic", _DATA / "media.py")


@task(name="ingest-clip", task_run_name="ingest {spec.clip_id}", cache_policy=NO_CACHE)
def ingest_clip(spec: ClipSpec, source: Source, out_dir: str, split: str, key: str,
                min_seconds: float, require_audio: bool) -> dict[str, Any]:
    """Materialise and validate one clip; bad input comes back as a quarantine record."""
    out = Path(out_dir)
    stamps = StampDir(out)
    if stamps.is_done(spec.clip_id, key):
        payload = stamps.load(spec.clip_id)
        video = payload.get("row", {}).get("video_path")
        if video is None or (out / video).exists():
            return {"resumed": True, **payload}
    try:
        written = source.materialise(spec, out / "clips")
        payload = {"row": validate_clip(spec, written, out, split, min_seconds, require_audio)}
    except ClipRejected as error:
        payload = {"quarantine": quarantine.record(spec.clip_id, STAGE, error)}
    stamps.mark(spec.clip_id, key, payload)
    return {"resumed": False, **payload}


@flow(name="ingest", log_prints=False)
def ingest(params: dict[str, Any], out_dir: str = "data/ingest") -> pd.DataFrame:
    """List the source's clips, materialise each in parallel, write the tables."""
    data, seed = section(params, "data"), int(params["base"]["seed"])
    out = Path(out_dir)
    atomic.remove_partials(out / "clips")
    source = make_source(params, seed)
    specs = source.list_clips()
    splits = split_identities((s.identity for s in specs), data["split"]["val"],
                              data["split"]["test"], seed)
    code = code_digest(*INGEST_CODE)
    source_params = data.get(data["source"], {})
    items = [
        {"spec": spec, "split": splits[spec.identity],
         "key": fingerprint(STAGE, code, dataclasses.asdict(spec), source_params,
                            splits[spec.identity], data["min_seconds"], data["require_audio"])}
        for spec in specs
    ]
    results = fan_out(ingest_clip, items, desc=STAGE, source=source, out_dir=str(out),
                      min_seconds=float(data["min_seconds"]),
                      require_audio=bool(data["require_audio"]))
    rows = [r["row"] for r in results if "row" in r]
    rejected = [r["quarantine"] for r in results if "quarantine" in r]
    manifest = pd.DataFrame(rows, columns=MANIFEST.names).sort_values("clip_id").reset_index(drop=True)
    with atomic.atomic_path(out / "manifest.parquet") as tmp:
        pq.write_table(conform(manifest, MANIFEST), tmp)
    quarantine.write(out / "quarantine.parquet", rejected)
    _write_groundtruth(out, manifest)
    _prune(out, manifest, {s.clip_id for s in specs})
    log_summary(STAGE, sum(not r["resumed"] for r in results), sum(r["resumed"] for r in results),
                len(rejected))
    publish_quarantine(STAGE, results)
    return manifest


def _write_groundtruth(out: Path, manifest: pd.DataFrame) -> None:
    """Concatenate the per-clip ground truth a source wrote (synthetic only)."""
    parts = [out / "clips" / f"{cid}.gt.parquet" for cid in manifest["clip_id"]]
    frames = [pq.read_table(p).to_pandas() for p in parts if p.exists()]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=GROUNDTRUTH.names)
    with atomic.atomic_path(out / "groundtruth.parquet") as tmp:
        pq.write_table(conform(table, GROUNDTRUTH), tmp)


def _prune(out: Path, manifest: pd.DataFrame, listed: set[str]) -> None:
    """Remove clip files and stamps that no longer belong to the manifest."""
    prune_clip_files(out / "clips", set(manifest["clip_id"]))
    StampDir(out).prune(listed)


def main() -> None:
    main_with_params(ingest, __doc__, task_runner=True)


if __name__ == "__main__":
    main()
