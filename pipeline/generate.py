"""DVC stage `generate`: EDTalk-V (and EDTalk-A when the audio models exist) on the test split.

For each clip of ``generate.split``: the identity image is the first frame of another
clip of the same identity (the clip's own first frame if the identity has no other;
the same rule as the evaluate stage's Still baseline), and

* ``EDTalk-V``: mouth, pose and expression are all driven by the clip's own frames
  (one encoder pass per frame);
* ``EDTalk-A``: mouth from the clip's audio, pose sampled from the flow
  (``generate.pose_seed``, ``generate.temperature``), expression from audio + transcript;
  needs ``generate.audio_models`` (skipped with a warning when that folder is missing).

Writes ``data/generate/<method>/<clip_id>.mp4`` (with the clip's audio) and the
driving ``<clip_id>.wav`` next to it (the layout ``evaluate`` reads), plus
``data/generate/run.json`` (frames, seconds, frames/s per method).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from tqdm.auto import tqdm

from edtalk import generate as gen
from edtalk.audio2motion.driver import load_audio_driver
from edtalk.data import atomic, media
from edtalk.evaluation.baselines import identity_source
from edtalk.params import section
from pipeline.artifacts import publish_summary
from pipeline.common import announce, main_with_params

METHODS = ("EDTalk-V", "EDTalk-A")


@task(cache_policy=NO_CACHE, task_run_name="generate {method}")
def run_method(method: str, model: Any, driver: Any, manifest: pd.DataFrame, clip_ids: list[str],
               clips_dir: Path, out_dir: Path, cfg: dict[str, Any]) -> dict[str, float]:
    """Every clip of one method; returns frames and seconds (generation only, no I/O)."""
    frames_done, seconds = 0, 0.0
    transcripts = dict(zip(manifest["clip_id"], manifest.get("transcript", pd.Series(dtype=str))))
    for cid in tqdm(clip_ids, desc=method, unit="clip"):
        identity = media.read_frames(clips_dir / f"{identity_source(manifest, cid)}.mp4", max_frames=1)[0][0]
        audio = media.read_audio(clips_dir / f"{cid}.wav")
        t0 = time.perf_counter()
        if method == "EDTalk-V":
            video, _ = media.read_frames(clips_dir / f"{cid}.mp4")
            t0 = time.perf_counter()
            out = gen.generate(model, identity, mouth=video, pose=video, exp=video,
                               n_frames=len(video), fit=cfg["fit"], batch_size=cfg["batch_size"])
        else:
            n = gen.frames_for_audio(len(audio))
            sources = gen.audio_sources(driver, audio, n, transcript=transcripts.get(cid) or None,
                                        pose_seed=cfg["pose_seed"], temperature=cfg["temperature"],
                                        factors=gen.model_factors(model))
            out = gen.generate(model, identity, n_frames=n, fit=cfg["fit"], batch_size=cfg["batch_size"],
                               **sources)
        seconds += time.perf_counter() - t0
        frames_done += len(out.frames)
        gen.write(out_dir / method / f"{cid}.mp4", out.frames, audio)
        media.write_wav(out_dir / method / f"{cid}.wav", media.fit_audio(audio, len(out.frames)))
    return {"clips": len(clip_ids), "frames": frames_done, "seconds": seconds,
            "frames_per_s": frames_done / seconds if seconds else 0.0}


@flow(name="generate")
def generate(params: dict[str, Any], features_dir: str = "data/features", crop_dir: str = "data/crop",
             out_dir: str = "data/generate") -> dict[str, Any]:
    logger = get_run_logger()
    cfg = section(params, "generate")
    torch.set_num_threads(int(cfg["threads"]))
    torch.manual_seed(int(params["base"]["seed"]))
    unknown = set(cfg["methods"]) - set(METHODS)
    if unknown:
        raise ValueError(f"generate.methods: unknown {sorted(unknown)}; choose from {METHODS}")
    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet")
    clip_ids = sorted(manifest.loc[manifest["split"] == cfg["split"], "clip_id"])
    if not clip_ids:
        raise ValueError(f"no clip in split {cfg['split']!r}")
    model = gen.load_model(cfg["checkpoint"])
    methods = list(cfg["methods"])
    driver = None
    if "EDTalk-A" in methods:
        if Path(cfg["audio_models"]).is_dir():
            driver = load_audio_driver(cfg["audio_models"])
        else:
            logger.warning("EDTalk-A skipped: %s does not exist (run the audio2motion stages)",
                           cfg["audio_models"])
            methods.remove("EDTalk-A")
    out = Path(out_dir)
    shutil.rmtree(out, ignore_errors=True)
    run: dict[str, Any] = {"split": cfg["split"], "checkpoint": cfg["checkpoint"], "methods": {}}
    for method in methods:
        stats = run_method(method, model, driver, manifest, clip_ids, Path(crop_dir) / "clips", out, cfg)
        run["methods"][method] = stats
        message = (f"generate {method}: {stats['clips']} clips, {stats['frames']} frames, "
                   f"{stats['frames_per_s']:.1f} frames/s")
        announce(message)
    with atomic.atomic_path(out / "run.json") as tmp:
        Path(tmp).write_text(json.dumps(run, indent=2))
    publish_summary("generate", run)
    return run


def main() -> None:
    main_with_params(generate, __doc__)


if __name__ == "__main__":
    main()
