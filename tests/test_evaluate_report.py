"""The evaluate and report stages: baselines scored by the suite, Table 1, DVC metrics."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from edtalk.data import atomic
from edtalk.evaluation import baselines
from metrics import reporting
from tests.pipeline_params import tiny_params

SYNC = "lse_c[syncnet:trained-here:w0.125-s64-d64@ab12cd34]"


def _records() -> list[dict]:
    def rec(method: str, psnr: float, ssim: float, lmd: float, fd: float, lse: float, acc: float):
        return {"method": method, "dataset": "synthetic",
                "metrics": {"psnr": psnr, "ssim": ssim, "m_lmd": lmd, "f_lmd": 2 * lmd,
                            "fd[emotion-net:trained-here@ab12cd34]": fd, SYNC: lse,
                            "lse_d[syncnet:trained-here:w0.125-s64-d64@ab12cd34]": 1 - lse,
                            "acc_emo[emotion:trained-here@99aa00bb]": acc}}
    return [rec("Still", 20.0, 0.70, 3.0, 9.0, 0.01, 0.125),
            rec("GT", math.inf, 1.0, 0.0, 0.0, 0.40, 0.25),
            rec("EDTalk-V", 25.0, 0.80, 1.5, 4.0, 0.30, 0.125)]


def test_metrics_json_keys_are_stable_across_retrained_evaluators_and_finite():
    out = reporting.metrics_json(_records())
    assert "psnr" not in out["GT"] and out["GT"]["ssim"] == 1.0          # inf left out
    assert out["EDTalk-V"]["lse_c[syncnet:trained-here:w0.125-s64-d64]"] == 0.30
    assert "fd[emotion-net:trained-here]" in out["Still"]
    json.dumps(out, allow_nan=False)


def test_records_order_puts_gt_then_still_first():
    assert [r["method"] for r in reporting.order_records(_records())] == ["GT", "Still", "EDTalk-V"]


def test_discover_lists_generated_methods_and_user_folders(tmp_path):
    (tmp_path / "gen" / "EDTalk-A").mkdir(parents=True)
    (tmp_path / "gen" / "EDTalk-A" / "c1.mp4").write_bytes(b"")
    (tmp_path / "gen" / "empty").mkdir()
    (tmp_path / "mine").mkdir()
    found = baselines.discover(tmp_path / "gen", {"Mine": str(tmp_path / "mine")})
    assert list(found) == ["EDTalk-A", "Mine"]
    assert baselines.discover(tmp_path / "missing") == {}
    with pytest.raises(ValueError, match="not a folder"):
        baselines.discover(None, {"X": str(tmp_path / "nope")})
    with pytest.raises(ValueError, match="already taken"):
        baselines.discover(None, {"GT": str(tmp_path / "mine")})


def test_report_writes_table1_metrics_plots_readable_by_dvc(tmp_path, prefect_harness, capsys):
    from pipeline.report import report

    for r in _records():
        atomic.write_json(tmp_path / "eval" / r["method"] / "summary.json", r)
    md = report(tiny_params(), str(tmp_path / "eval"), str(tmp_path / "out"))
    out = tmp_path / "out"
    assert md in capsys.readouterr().out
    lines = md.splitlines()
    assert lines[0].startswith("| Method | PSNR↑ | SSIM↑ | M-LMD↓ | F-LMD↓ | FD[emotion-net:")
    assert "Sync_conf↑" in lines[0] and "Acc_emo↑" in lines[0] and "FID" not in lines[0]
    assert lines[2].startswith("| GT | inf | 1.000 | 0.000")                    # reference row
    assert "| EDTalk-V | **25.000** | **0.800** | **1.500**" in md          # best, GT excluded
    assert "Backends:" in md and "syncnet:trained-here:w0.125-s64-d64@ab12cd34" in md
    tex = (out / "table1.tex").read_text()
    assert r"$\uparrow$" in tex and r"\textbf{25.000}" in tex
    csv = pd.read_csv(out / "table1.csv")
    assert list(csv["Method"]) == ["GT", "Still", "EDTalk-V"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["EDTalk-V"]["psnr"] == 25.0 and metrics["Still"]["m_lmd"] == 3.0
    plot = pd.read_csv(out / "methods.csv")
    assert list(plot.columns[:3]) == ["method", "psnr", "ssim"] and np.isnan(plot.psnr[0])
    assert (out / "plots" / "methods.png").stat().st_size > 1000
    # dvc reads it as metrics: flattened method.metric keys
    shutil.copy(out / "metrics.json", tmp_path / "metrics.json")
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    shown = subprocess.run([sys.executable, "-m", "dvc", "metrics", "show", "metrics.json", "--json"],
                           cwd=tmp_path, check=True, capture_output=True, text=True).stdout
    assert "EDTalk-V" in shown and "25.0" in shown


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, prefect_harness):
    """Tiny corpus at 64 px -> evaluators (a few steps) -> evaluate -> report."""
    from pipeline.evaluate import evaluate
    from pipeline.report import report
    from pipeline.train_emotion import train_emotion
    from pipeline.train_landmarks import train_landmarks
    from pipeline.train_syncnet import train_syncnet
    from tests.test_pipeline_flows import _run_chain

    root = tmp_path_factory.mktemp("eval")
    params = tiny_params(crop__size=64)
    params["evaluators"].update(heldout_splits=["test"], sync_shifts=[0, 2])
    params["evaluators"]["syncnet"]["steps"] = 3
    params["evaluators"]["emotion"].update(steps=3, landmark_steps=3)
    params["evaluators"]["landmarks"]["steps"] = 20
    _run_chain(params, root)
    feats, crop, models, rep = (str(root / p) for p in ("features", "crop", "models", "reports"))
    train_syncnet(params, feats, crop, f"{models}/syncnet.pt", f"{rep}/evaluators/syncnet.json",
                  f"{models}/checkpoints/syncnet")
    train_emotion(params, feats, f"{models}/emotion.pt", f"{rep}/evaluators/emotion.json",
                  f"{models}/checkpoints/emotion")
    train_landmarks(params, feats, f"{models}/landmarks.pt", f"{rep}/evaluators/landmarks.json",
                    f"{models}/checkpoints/landmarks")
    evaluate(params, feats, crop, models, str(root / "generate"), str(root / "evaluate"),
             f"{rep}/eval")
    report(params, f"{rep}/eval", rep)
    return root


@pytest.mark.slow
def test_evaluate_scores_gt_as_perfect_and_the_still_baseline_worse(evaluated):
    rep = evaluated / "reports"
    gt = json.loads((rep / "eval" / "GT" / "summary.json").read_text())
    still = json.loads((rep / "eval" / "Still" / "summary.json").read_text())
    assert gt["clips"] == still["clips"] == 1                                  # the test split
    assert math.isinf(gt["metrics"]["psnr"]) and gt["metrics"]["ssim"] == pytest.approx(1.0)
    assert gt["metrics"]["m_lmd"] == 0.0 and gt["metrics"]["f_lmd"] == 0.0
    assert still["metrics"]["psnr"] < 40 and still["metrics"]["ssim"] < 1.0
    assert still["metrics"]["m_lmd"] > 0.0
    assert gt["backends"]["lmd"].startswith("heatmap-landmarks:emotion:trained-here@")   # evaluate.landmarks
    assert gt["backends"]["sync"].startswith("syncnet:trained-here:w0.125-s64-d64@")
    assert any(k.startswith("fd[emotion-net:trained-here@") for k in gt["metrics"])
    assert any(k.startswith("acc_emo[emotion:trained-here@") for k in gt["metrics"])
    clips = pd.read_parquet(rep / "eval" / "Still" / "clips.parquet")
    assert {"psnr", "ssim", "m_lmd", "lse_c", "emotion_pred"} <= set(clips.columns)
    for name in ("syncnet", "emotion", "landmarks"):
        assert json.loads((rep / "evaluators" / f"{name}.json").read_text())["train"]["seconds"] > 0
    # both landmark instruments say how they read the inner-lip gap against the true points
    emotion = json.loads((rep / "evaluators" / "emotion.json").read_text())["test"]
    regressor = json.loads((rep / "evaluators" / "landmarks.json").read_text())["heldout"]
    for r, spread in ((emotion["landmark_opening_r"], emotion["landmark_opening_spread_ratio"]),
                      (regressor["opening_r"], regressor["opening_spread_ratio"])):
        assert -1.0 <= r <= 1.0 and spread > 0
    table = (rep / "table1.md").read_text()
    assert "| GT | inf | 1.000 | 0.000 | 0.000" in table and "| Still |" in table
    assert "M-LMD↓: heatmap-landmarks:emotion:trained-here@" in table      # every backend shown
    assert set(json.loads((rep / "metrics.json").read_text())) == {"GT", "Still"}
