"""A parameter change shows up in `dvc params diff` and `dvc metrics diff`, and in our own
`python -m metrics diff` of the two versions of the same summary file.

A temporary git repo holds one tiny stage whose command writes a summary JSON in the
suite's format (``{"method": ..., "metrics": {...}}``, declared as DVC metrics) from a
params.yaml value; it is committed, the value changed and the stage reproduced.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

DVC = [sys.executable, "-m", "dvc"]

SCORE = '''\
import json, yaml
scale = yaml.safe_load(open("params.yaml"))["toy"]["scale"]
summary = {"method": "EDTalk-V", "metrics": {"psnr": 20.0 * scale, "m_lmd": 3.0 / scale, "ssim": 0.5}}
open("summary.json", "w").write(json.dumps(summary, indent=1, sort_keys=True))
'''


def _run(cmd: list[str], repo: Path, env: dict[str, str]) -> str:
    result = subprocess.run(cmd, cwd=repo, env=env, text=True, capture_output=True, timeout=120)
    assert result.returncode == 0, (cmd, result.stdout[-2000:], result.stderr[-2000:])
    return result.stdout


def test_param_change_shows_in_dvc_metrics_diff_and_in_metrics_diff(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "score.py").write_text(SCORE)
    (repo / "params.yaml").write_text(yaml.safe_dump({"toy": {"scale": 1.0}}))
    stage = {"cmd": f"{shlex.quote(sys.executable)} score.py", "deps": ["score.py"],
             "params": ["toy.scale"], "metrics": [{"summary.json": {"cache": False}}]}
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"score": stage}}))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@example.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.invalid"}
    for cmd in (["git", "init", "-q"], [*DVC, "init", "-q"], [*DVC, "repro", "-q"],
                ["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        _run(cmd, repo, env)
    assert json.loads(_run([*DVC, "metrics", "diff", "--json"], repo, env) or "{}") == {}

    (repo / "params.yaml").write_text(yaml.safe_dump({"toy": {"scale": 1.5}}))
    _run([*DVC, "repro", "-q"], repo, env)

    params = json.loads(_run([*DVC, "params", "diff", "--json"], repo, env))
    assert params["params.yaml"]["toy.scale"] == {"old": 1.0, "new": 1.5, "diff": 0.5}
    metrics = json.loads(_run([*DVC, "metrics", "diff", "--json"], repo, env))["summary.json"]
    assert metrics["metrics.psnr"] == {"old": 20.0, "new": 30.0, "diff": 10.0}
    assert metrics["metrics.m_lmd"]["old"] == 3.0 and metrics["metrics.m_lmd"]["new"] == 2.0
    assert "metrics.ssim" not in metrics                   # unchanged metrics are left out

    # Ours, on the committed and the reproduced version of the same file: direction-aware.
    (tmp_path / "baseline.json").write_text(_run(["git", "show", "HEAD:summary.json"], repo, env))
    ours = subprocess.run([sys.executable, "-m", "metrics", "diff", str(tmp_path / "baseline.json"),
                           str(repo / "summary.json")], cwd=Path(__file__).resolve().parents[1],
                          text=True, capture_output=True, timeout=120, check=True).stdout
    rows = {line.split()[0]: line.split() for line in ours.splitlines()[1:]}
    assert rows["psnr"][1:] == ["20.0000", "30.0000", "10.0000", "better"]
    assert rows["m_lmd"][-1] == "better" and rows["ssim"][-1] == "same"
