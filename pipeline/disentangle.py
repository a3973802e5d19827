"""DVC stage `disentangle`: swap one driving source, measure every factor (synthetic corpus).

The trained model (``train_expression``'s) against an untrained one of the same
configuration on ``disentangle.pairs`` pairs of ``disentangle.split`` clips of different
identities (``edtalk.evaluation.disentangle_report``). Landmarks come from the emotion
evaluator's heatmap head (``--landmarks``; a landmark regressor file works too) and the
expression reading from the emotion evaluator (``--emotion``). Writes
``reports/disentangle.md`` and the per-pair ``reports/disentangle.csv``,
``reports/disentangle_pixels.csv``, ``reports/disentangle_emotion.csv`` and
``reports/disentangle_carriers.csv``.
"""

from __future__ import annotations

from typing import Any

import torch
from prefect import flow

from edtalk.evaluation import disentangle_report as report
from edtalk.params import section
from pipeline.artifacts import publish_summary
from pipeline.common import announce, main_with_params


@flow(name="disentangle")
def disentangle(params: dict[str, Any], checkpoint: str = "models/train_expression/model.pt",
                landmarks: str = "models/evaluators/emotion.pt", emotion: str = "models/evaluators/emotion.pt",
                features_dir: str = "data/features", groundtruth: str = "data/ingest/groundtruth.parquet",
                out: str = "reports/disentangle") -> dict[str, Any]:
    cfg, crop = section(params, "disentangle"), section(params, "crop")
    torch.set_num_threads(int(cfg["threads"]))
    setup = report.SwapSetup(split=cfg["split"], pairs=int(cfg["pairs"]), max_frames=int(cfg["max_frames"]),
                             untrained_seed=int(cfg["untrained_seed"]))
    render = report.RenderSetup(render_size=int(section(params, "data")["synthetic"]["render_size"]),
                                increase=float(crop["increase"]), smooth_window=int(crop["smooth_window"]))
    result = report.measure(checkpoint, landmarks, emotion, features_dir, groundtruth, setup, render)
    report.write(result, out)
    print(result.text)
    publish_summary("disentangle", result.text)
    pairs = result.results[["identity_clip", "source_clip"]].drop_duplicates()
    announce(f"disentangle: {len(pairs)} pairs -> {out}.md")
    return {"pairs": len(pairs), "report": f"{out}.md"}


def main() -> None:
    main_with_params(disentangle, __doc__)


if __name__ == "__main__":
    main()
