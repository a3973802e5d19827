"""DVC stage `evaluate`: the metric suite over every method on the test split.

Methods: the baselines that need no model (``GT``: the test clips themselves; ``Still``:
the identity frame repeated, with the clip's audio; both written to ``data/evaluate``),
every subfolder of ``data/generate`` (``<method>/<clip_id>.mp4``, written by the
generation stages when they exist) and the user's folders in ``evaluate.extra_methods``.
Networks: released weights when present (``edtalk.weights``), else the evaluators the
``train_*`` stages trained; FD on the trained emotion net's features unless Inception's
file is present (``metrics.backends``). Writes
``reports/eval/<method>/{clips.parquet,summary.json}`` and ``reports/eval/run.json``
(wall time, peak memory, backends).
"""

from __future__ import annotations

import resource
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from edtalk.data import atomic
from edtalk.evaluation import baselines
from edtalk.experts import emotion_net, landmark_net
from edtalk.params import section
from metrics import backends
from metrics.suite import Suite, SuiteConfig
from pipeline.artifacts import publish_summary
from pipeline.common import announce, main_with_params


@task(cache_policy=NO_CACHE)
def prepare_baselines(crop_dir: str, features_dir: str, work_dir: str, split: str
                      ) -> tuple[dict[str, Path], dict[str, str]]:
    """Write GT and Still for the split; return the folders and clip id -> emotion labels."""
    manifest = pd.read_parquet(Path(features_dir) / "clips.parquet")
    ids = sorted(manifest.loc[manifest["split"] == split, "clip_id"])
    if not ids:
        raise ValueError(f"no clip in split {split!r}")
    clips, work = Path(crop_dir) / "clips", Path(work_dir)
    shutil.rmtree(work, ignore_errors=True)
    folders = {"GT": baselines.write_gt(clips, ids, work / "GT"),
               "Still": baselines.write_still(clips, manifest, ids, work / "Still")}
    return folders, dict(zip(manifest["clip_id"], manifest["emotion"]))


@task(cache_policy=NO_CACHE, task_run_name="evaluate {method}")
def score_method(suite: Suite, gt_dir: Path, pred_dir: Path, method: str, out_dir: str) -> dict:
    return suite.run(gt_dir, pred_dir, method, Path(out_dir) / method, progress=True)


@flow(name="evaluate")
def evaluate(params: dict[str, Any], features_dir: str = "data/features", crop_dir: str = "data/crop",
             models_dir: str = "models/evaluators", generate_dir: str = "data/generate",
             work_dir: str = "data/evaluate", out_dir: str = "reports/eval") -> list[dict]:
    ev = section(params, "evaluate")
    torch.set_num_threads(int(ev["threads"]))
    t0 = time.perf_counter()
    folders, labels = prepare_baselines(crop_dir, features_dir, work_dir, ev["split"])
    methods = {**folders, **baselines.discover(generate_dir, ev.get("extra_methods") or {})}
    choice = backends.choose(models_dir, ev["fid"], ev.get("weights_cache"))
    landmarker: Any = "dlib68"
    if ev["landmarks"] == "trained":
        if choice.landmark_weights is None:
            raise ValueError(f"evaluate.landmarks is 'trained' but {models_dir}/landmarks.pt is missing")
        landmarker = landmark_net.load(choice.landmark_weights)
    elif ev["landmarks"] == "heatmaps":
        emotion = Path(models_dir) / "emotion.pt"
        if not emotion.is_file():
            raise ValueError(f"evaluate.landmarks is 'heatmaps' but {emotion} is missing (dvc repro train_emotion)")
        landmarker = emotion_net.load_heatmap_landmarker(emotion)
    elif ev["landmarks"] != "dlib68":
        raise ValueError(f"evaluate.landmarks must be heatmaps, trained or dlib68, got {ev['landmarks']!r}")
    suite = Suite(SuiteConfig(sync_weights=choice.sync_weights, emotion_weights=choice.emotion_weights,
                              fid_backend=choice.fid_backend, landmarker=landmarker, labels=labels,
                              dataset=section(params, "data")["source"],
                              emotion_max_frames=ev["emotion_max_frames"],
                              weights_cache=ev.get("weights_cache")))
    shutil.rmtree(out_dir, ignore_errors=True)
    summaries = [score_method(suite, folders["GT"], folder, name, out_dir)
                 for name, folder in methods.items()]
    run = {"methods": list(methods), "backends": suite.backends, "notes": suite.notes,
           "clips": summaries[0]["clips"], "seconds": time.perf_counter() - t0,
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    atomic.write_json(Path(out_dir) / "run.json", run)
    message = (f"evaluate: {len(methods)} methods ({', '.join(methods)}) x {run['clips']} "
               f"{ev['split']} clips in {run['seconds']:.1f} s, peak RSS {run['peak_rss_mib']:.0f} MiB")
    announce(message)
    publish_summary("evaluate", {**run, "metrics": {s["method"]: s["metrics"] for s in summaries}},
                    title=message)
    return summaries


def main() -> None:
    main_with_params(evaluate, __doc__)


if __name__ == "__main__":
    main()
